"""A party's kit: the folder ``securefl server`` or ``securefl client`` runs from.

Why plain files: a hospital's IT reviewer must be able to see what was
installed (PEM, TOML, JSON, safetensors, nothing pickled), and a kit must
load without torch, since the coordinator machine has no GPU stack.
:meth:`Kit.load` checks the kit before anything runs: the roster is signed
by the kit's CA, names this party with the identity and exchange keys the
kit holds and the certificate it presents, no private key is readable by
other users, and neither the folder nor any kit file is writable by all
(whoever could swap ``ca.cert.pem`` and ``roster.json`` would decide whom
the party trusts). A site's BLS key on the roster must be the one its
identity key derives (the roster loader has checked every BLS proof).
Errors name the kit folder and the file.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from securefl.config import FederationConfig, load_federation
from securefl.errors import ConfigError, DataError, SecureFLError
from securefl.hazmat.bls import BlsKey
from securefl.hazmat.keys import KeyPair
from securefl.hazmat.sign import SigningKey
from securefl.provision.pki import cert_sha256, load_cert, load_private_key
from securefl.provision.roster import SignedRoster
from securefl.reports._canonical import strict_loads
from securefl.reports.roster import SERVER_ENTRY

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from securefl.params import ParamSpec

__all__ = ["KIT_FILES", "KIT_VERSION", "PRIVATE_FILES", "Kit"]

KIT_VERSION = 1
#: Files with private keys or secrets: mode 0600, never in another party's kit.
PRIVATE_FILES = ("tls.key.pem", "identity.key.pem", "exchange.key.pem", "status.token")
#: What each kind of kit holds (README.md aside).
KIT_FILES: dict[str, tuple[str, ...]] = {
    "server": (
        "kit.json", "federation.toml", "ca.cert.pem", "roster.json", "crl.pem",
        "tls.cert.pem", "tls.key.pem", "identity.key.pem", "status.token",
        "model.safetensors", "spec.json",
    ),
    "site": (
        "kit.json", "federation.toml", "ca.cert.pem", "roster.json",
        "tls.cert.pem", "tls.key.pem", "identity.key.pem", "exchange.key.pem",
        "model.safetensors", "spec.json",
    ),
}  # fmt: skip


def _fail(path: Path, what: str) -> ConfigError:
    return ConfigError(f"kit {path.parent}: {path.name}: {what}")


def _check_private_mode(path: Path) -> None:
    if not path.is_file():
        raise _fail(path, "missing")
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise _fail(path, f"readable by other users; run: chmod 600 {path}")


def _check_not_writable_by_others(path: Path) -> None:
    """Refuse a kit file or folder any user may change (they would choose whom we trust).

    Group write is left alone: with per-user groups (umask 002) it is the norm.
    """
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o002:
        where = f"kit {path}" if path.is_dir() else f"kit {path.parent}: {path.name}"
        raise ConfigError(f"{where}: writable by other users; run: chmod o-w {path}")


@dataclass(frozen=True, kw_only=True)
class Kit:
    """One party's verified kit. Load with :meth:`Kit.load`.

    ``kind`` is ``"server"`` or ``"site"``; ``party`` is the site's name or
    ``"server"``. ``server_url`` and ``server_name`` say where the server is
    and which name its certificate must carry.
    """

    path: Path
    kind: str
    party: str
    federation: FederationConfig
    roster: SignedRoster
    server_url: str
    server_name: str
    _spec: dict[str, Any] = field(repr=False)

    # paths --------------------------------------------------------------------------------
    @property
    def ca_cert_path(self) -> Path:
        """The federation CA certificate (the only trust anchor)."""
        return self.path / "ca.cert.pem"

    @property
    def cert_path(self) -> Path:
        """This party's TLS certificate."""
        return self.path / "tls.cert.pem"

    @property
    def key_path(self) -> Path:
        """This party's TLS private key (0600)."""
        return self.path / "tls.key.pem"

    @property
    def crl_path(self) -> Path:
        """The revocation list (server kits only; the server reloads it when it changes)."""
        return self.path / "crl.pem"

    @property
    def status_token_path(self) -> Path:
        """The read-only status token (server kits only, 0600)."""
        return self.path / "status.token"

    @property
    def model_path(self) -> Path:
        """The initial model as safetensors."""
        return self.path / "model.safetensors"

    @property
    def state_dir(self) -> Path:
        """Where a run keeps its state (ledger, records, logs); created by the run."""
        return self.path / "state"

    # contents -----------------------------------------------------------------------------
    def ca_cert(self) -> x509.Certificate:
        """The federation CA certificate."""
        return load_cert(self.ca_cert_path)

    def signing_key(self) -> SigningKey:
        """This party's Ed25519 identity key."""
        key = load_private_key(self.path / "identity.key.pem")
        if not isinstance(key, Ed25519PrivateKey):
            raise _fail(self.path / "identity.key.pem", "not an Ed25519 key")
        return SigningKey(key)

    def exchange_key(self) -> KeyPair:
        """This site's X25519 exchange key (sites only)."""
        if self.kind != "site":
            raise ConfigError(f"kit {self.path}: a {self.kind} kit has no exchange key")
        key = load_private_key(self.path / "exchange.key.pem")
        if not isinstance(key, X25519PrivateKey):
            raise _fail(self.path / "exchange.key.pem", "not an X25519 key")
        return KeyPair(key)

    def status_token(self) -> str:
        """The bearer token that opens ``/status`` read-only (server kits only)."""
        _check_private_mode(self.status_token_path)
        return self.status_token_path.read_text(encoding="ascii").strip()

    @property
    def spec(self) -> ParamSpec:
        """The model's parameter spec (names, shapes, dtypes)."""
        from securefl.params import ParamSpec

        try:
            return ParamSpec.from_dict(self._spec)
        except DataError as exc:
            raise _fail(self.path / "spec.json", str(exc)) from None

    def initial_params(self) -> npt.NDArray[np.float32]:
        """The initial model as a flat float32 vector (numpy, from safetensors)."""
        from securefl.params import load_params

        try:
            return load_params(self.model_path, self.spec)
        except (DataError, OSError, ValueError) as exc:
            raise _fail(self.model_path, str(exc)) from None

    # loading ------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, *, kind: str | None = None) -> Kit:
        """Read and check a kit folder; errors name the folder and the file.

        ``kind`` (``"server"`` or ``"site"``): refuse the other kind of kit,
        saying which command needs which.
        """
        root = Path(path)
        expected = kind
        if not (root / "kit.json").is_file():
            raise ConfigError(f"kit {root}: no kit.json here; is this a kit folder?")
        meta = _read_json(root / "kit.json")
        kind, party = meta.get("kind"), meta.get("party")
        if meta.get("version") != KIT_VERSION or kind not in KIT_FILES:
            raise _fail(root / "kit.json", f"unsupported kit version or kind {kind!r}")
        _check_not_writable_by_others(root)
        for name in KIT_FILES[kind]:
            if not (root / name).is_file():
                raise _fail(root / name, "missing")
            _check_not_writable_by_others(root / name)
        for name in PRIVATE_FILES:
            if name in KIT_FILES[kind]:
                _check_private_mode(root / name)
        try:
            federation = load_federation(root / "federation.toml")
        except ConfigError as exc:
            raise ConfigError(f"kit {root}: {exc}") from None
        if meta.get("federation") != federation.name:
            raise _fail(root / "kit.json", "names another federation than federation.toml")
        _check_deployable(root, kind, expected, federation)
        ca_cert = load_cert(root / "ca.cert.pem")
        try:
            roster = SignedRoster.load(root / "roster.json", ca_cert)
        except SecureFLError as exc:
            raise type(exc)(f"kit {root}: {exc}") from None
        if roster.federation != federation.name:
            raise _fail(root / "roster.json", "is for another federation")
        if (kind == "server") != (party == SERVER_ENTRY) or not isinstance(party, str):
            raise _fail(root / "kit.json", f"party {party!r} does not fit a {kind} kit")
        kit = cls(
            path=root,
            kind=kind,
            party=party,
            federation=federation,
            roster=roster,
            server_url=str(meta.get("server_url", "")),
            server_name=str(meta.get("server_name", "")),
            _spec=_read_json(root / "spec.json"),
        )
        kit._check_keys(ca_cert)
        return kit

    def bls_roster(self) -> dict[str, tuple[bytes, bytes]] | None:
        """Each site's BLS key and proof when the federation runs the neighbourhood round.

        ``None`` otherwise (no other round uses them). A roster provisioned
        before BLS keys existed is refused here, in one line naming the fix,
        before the party starts.
        """
        cfg = self.federation
        if cfg.secure != "mask" or not cfg.mask.neighbourhood:
            return None
        try:
            return self.roster.bls_roster()
        except ConfigError as exc:
            raise ConfigError(f"kit {self.path}: {exc}") from None

    @property
    def max_weight(self) -> float:
        """The bound on one site's weight every party pins (a kit always sets it)."""
        weight = self.federation.rounds.max_weight
        if weight is None:  # load() refuses such a kit; only a hand-made Kit gets here
            raise ConfigError(f"kit {self.path}: rounds.max_weight is not set")
        return weight

    def _check_keys(self, ca_cert: x509.Certificate) -> None:
        """The kit's keys and certificate are the ones the signed roster names."""
        identity = self.roster.identity_keys().get(self.party)
        if identity is None:
            raise _fail(self.path / "roster.json", f"does not name {self.party!r}")
        if self.signing_key().public_bytes() != identity:
            raise _fail(self.path / "identity.key.pem", "is not the key the roster names")
        if self.kind == "site":
            entry = self.roster.site(self.party)
            if self.exchange_key().public_bytes() != entry.exchange_key:
                raise _fail(self.path / "exchange.key.pem", "is not the key the roster names")
            # the BLS key is derived from the identity seed: the roster's must be that one
            own = BlsKey.from_identity(self.signing_key()).public_bytes()
            if entry.bls is not None and own != entry.bls[0]:
                raise _fail(
                    self.path / "roster.json",
                    f"names another BLS key for {self.party!r} than identity.key.pem derives",
                )
        cert = load_cert(self.cert_path)
        if cert_sha256(cert) != self.roster.cert_sha256(self.party):
            raise _fail(self.cert_path, "is not the certificate the roster pins; use the new kit")
        if cert.issuer != ca_cert.subject:
            raise _fail(self.cert_path, "is not issued by the kit's CA")
        key = load_private_key(self.key_path)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
            raise _fail(self.key_path, "does not belong to tls.cert.pem")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = strict_loads(path.read_bytes())
    except FileNotFoundError:
        raise _fail(path, "missing") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise _fail(path, f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _fail(path, "must hold a JSON object")
    return data


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Indented JSON, the way every kit file is written."""
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _check_deployable(
    root: Path, kind: str, expected: str | None, federation: FederationConfig
) -> None:
    """The kit is the kind the command needs, and carries what every party pins."""
    if expected is not None and kind != expected:
        need = {"server": "securefl server needs the server kit"}.get(
            expected, "securefl client needs a site kit"
        )
        raise ConfigError(f"kit {root}: this is a {kind} kit; {need}")
    if federation.rounds.max_weight is None:
        raise ConfigError(
            f"kit {root}: federation.toml: rounds.max_weight must be set for a deployment "
            "(the bound on one site's weight that every party pins)"
        )
