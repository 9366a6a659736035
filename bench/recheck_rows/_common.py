"""What a removal entry is made of, and the source files the entries patch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Removal:
    """Replace ``old`` (which must occur exactly once) by ``new`` in ``path``."""

    path: str
    old: str
    new: str


#: One way of removing a protection: one edit, or several applied together.
Patch = Removal | tuple[Removal, ...]


@dataclass(frozen=True)
class Row:
    """One claim row: its page, the start of its claim text, and what removes its protection."""

    key: str
    page: str
    claim: str
    removals: tuple[Patch, ...]


def _off(path: str, condition: str) -> Removal:
    """The check ``if <condition>:`` never fires."""
    return Removal(path, f"if {condition}:", "if False:")


_HE_DEC = "securefl/he/_decrypt.py"
_HE_SRV = "securefl/he/_server.py"
_ENC = "securefl/runtime/encrypted_model.py"
_SA = "securefl/secagg/_site.py"
_LEDGER = "securefl/dp/ledger.py"
_PRIV = "securefl/dp/privatize.py"
_CHAIN = "securefl/reports/chain.py"
_WIRE = "securefl/wire.py"
_ROSTER = "securefl/provision/roster.py"
_ROSTER_VERIFY = (
    "            key.verify(signature, canonical_bytes(body), ec.ECDSA(hashes.SHA256()))\n"
)
_KIT = "securefl/provision/kit.py"
_HTTPS = "securefl/transport/https_server.py"
_SA_SRV = "securefl/secagg/_server.py"
_HE_CTX = "securefl/he/_context.py"
_HE_FRAME = "securefl/he/_frame.py"
_ACC = "securefl/dp/accounting.py"
_STATE = "securefl/runtime/server_state.py"
_XCHECK = "securefl/reports/crosscheck.py"
_PKI = "securefl/provision/pki.py"
_TLS = "securefl/transport/_tls.py"
_SL = "securefl/secagg/_site_lists.py"  # a site's list checks (moved out of _site.py)
_SITE_BELOW_T = "len(ids) < self.need or len(self.holders & set(ids)) < self.plan.threshold"
