"""The signed deployment roster: who is in the federation, with which keys and certificates.

Why signed by the CA: each site pins this file from its kit and refuses any
key advert, signature or cohort member that is not on it. If the coordinator
could edit it freely, a cheating coordinator could add sites of its own to
a round and isolate one hospital's update. The CA key that signs it stays in
the coordinator's provisioning folder, and every kit carries the CA
certificate it is checked against; a changed roster reaches a site only as a
new file signed by that CA.

Format (version 4, canonical JSON as :mod:`securefl.reports._canonical`)::

    {"version": 4, "federation": NAME,
     "server": {"name": "server", "public_key": HEX, "cert_sha256": HEX,
                "hosts": [...], "port": N},
     "sites": [{"name", "public_key", "exchange_key", "cert_sha256",
                "bls_key", "bls_proof"}, ...],
     "issued_at": ISO8601,
     "signature": HEX}   # ECDSA P-256 / SHA-256 by the CA over canonical JSON of the rest

``public_key`` is the party's Ed25519 identity key, ``exchange_key`` a site's
X25519 key (HE secret context delivery), ``cert_sha256`` the SHA-256 of the
party's TLS certificate (DER). ``bls_key`` (48 bytes) and ``bls_proof`` (96
bytes) are the site's BLS12-381 key, derived from its identity seed, and its
proof of possession (:func:`securefl.secagg.bls_entry`): the neighbourhood
mask round checks the cohort's one aggregate consistency signature against
the sum of the signers' BLS keys, so every key must be the one its site
holds, and the proof stops a site from choosing its key to cancel others'
(the rogue-key attack). Every reader checks every proof, and that no two
sites share a BLS key, when it loads the roster (and the coordinator before
it signs one).

Version 3 (before BLS keys) still loads and is written back unchanged; its
sites have no BLS key, which only the neighbourhood round needs
(:meth:`SignedRoster.bls_roster` refuses it in one line). Re-signed (a
renewal, a new request), such a roster becomes version 4 whose older sites
lack both BLS fields, never one.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from securefl.errors import ConfigError, DataError, IntegrityError
from securefl.hazmat.bls import BLS_PUBLIC_KEY_LEN, BLS_SIGNATURE_LEN
from securefl.provision.pki import CertificateAuthority
from securefl.reports._canonical import DuplicateKeyError, canonical_bytes, strict_loads
from securefl.reports.roster import SERVER_ENTRY, Roster
from securefl.secagg._multisig import checked_bls_roster

__all__ = ["SIGNED_ROSTER_VERSION", "RosterServer", "RosterSite", "SignedRoster"]

SIGNED_ROSTER_VERSION = 4
#: Versions a reader accepts: 3 has no BLS keys (made before the neighbourhood round had them).
_READABLE = (3, SIGNED_ROSTER_VERSION)
_TOP = {"version", "federation", "server", "sites", "issued_at", "signature"}
_SERVER = {"name", "public_key", "cert_sha256", "hosts", "port"}
_SITE = {"name", "public_key", "exchange_key", "cert_sha256"}
_BLS = frozenset({"bls_key", "bls_proof"})


def _hex32(value: object, what: str) -> bytes:
    return _hex(value, 32, what)


def _hex(value: object, size: int, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size:
        raise DataError(f"{what} must be {2 * size} hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise DataError(f"{what} is not hex") from None


@dataclass(frozen=True, kw_only=True)
class RosterServer:
    """The server's entry: identity key, TLS certificate fingerprint, address."""

    public_key: bytes
    cert_sha256: str
    hosts: tuple[str, ...]
    port: int


@dataclass(frozen=True, kw_only=True)
class RosterSite:
    """One site's entry: identity key, exchange key, TLS certificate fingerprint, BLS key.

    ``bls_key`` and ``bls_proof`` (its proof of possession) are ``None`` only
    for a site provisioned by an older securefl (see the module docstring).
    """

    name: str
    public_key: bytes
    exchange_key: bytes
    cert_sha256: str
    bls_key: bytes | None = None
    bls_proof: bytes | None = None

    def __post_init__(self) -> None:
        if (self.bls_key is None) != (self.bls_proof is None):
            raise DataError(f"the BLS key of {self.name!r} needs its proof of possession")

    @property
    def bls(self) -> tuple[bytes, bytes] | None:
        """``(bls_key, bls_proof)``, or ``None`` when the roster holds no BLS key for the site."""
        if self.bls_key is None or self.bls_proof is None:
            return None
        return self.bls_key, self.bls_proof


@dataclass(frozen=True, kw_only=True)
class SignedRoster:
    """A roster whose signature by the federation CA has been checked (or just made).

    Build one with :meth:`sign` (coordinator) or :meth:`load` (every party);
    there is no way to get one whose signature was not verified or made here.
    """

    federation: str
    server: RosterServer
    sites: tuple[RosterSite, ...]
    issued_at: str
    signature: bytes
    version: int = SIGNED_ROSTER_VERSION

    # -- making ---------------------------------------------------------------------------

    @classmethod
    def sign(
        cls,
        ca: CertificateAuthority,
        *,
        federation: str,
        server: RosterServer,
        sites: Sequence[RosterSite],
        issued_at: dt.datetime | None = None,
    ) -> SignedRoster:
        """Sign a roster with the CA key (sites are sorted by name), in the current version.

        Refuses, as every reader would, a BLS key without a valid proof of
        possession or one that two sites share.
        """
        when = (issued_at or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
        ordered = tuple(sorted(sites, key=lambda s: s.name))
        body = _body(federation, server, ordered, when, SIGNED_ROSTER_VERSION)
        _parse_body(body)  # the same checks a reader makes: never sign what nobody can load
        signature = ca.key.sign(canonical_bytes(body), ec.ECDSA(hashes.SHA256()))
        return cls(
            federation=federation,
            server=server,
            sites=ordered,
            issued_at=when,
            signature=signature,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, signature included."""
        body = _body(self.federation, self.server, self.sites, self.issued_at, self.version)
        return {**body, "signature": self.signature.hex()}

    def save(self, path: Path) -> None:
        """Write the roster as indented JSON (the signature covers the canonical form)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    # -- reading --------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: object, ca_cert: x509.Certificate) -> SignedRoster:
        """Check the CA's signature over ``data`` and its shape; anything else is refused."""
        if not isinstance(data, dict):
            raise DataError("a signed roster must be a JSON object")
        unknown = sorted(set(data) - _TOP)
        missing = sorted(_TOP - set(data))
        if unknown or missing:
            raise DataError(
                f"signed roster field {(unknown or missing)[0]!r} is unknown or missing"
            )
        body = {k: v for k, v in data.items() if k != "signature"}
        sig_hex = data["signature"]
        try:
            signature = bytes.fromhex(sig_hex) if isinstance(sig_hex, str) else b""
        except ValueError:
            signature = b""
        key = ca_cert.public_key()
        try:
            if not signature or not isinstance(key, ec.EllipticCurvePublicKey):
                raise InvalidSignature
            key.verify(signature, canonical_bytes(body), ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError, TypeError):
            raise IntegrityError("the roster is not signed by this federation's CA") from None
        federation, server, sites, issued_at = _parse_body(body)
        return cls(
            federation=federation,
            server=server,
            sites=sites,
            issued_at=issued_at,
            signature=signature,
            version=body["version"],
        )

    @classmethod
    def load(cls, path: Path, ca_cert: x509.Certificate) -> SignedRoster:
        """Read ``roster.json`` and verify it against the kit's CA certificate."""
        path = Path(path)
        try:
            data = strict_loads(path.read_bytes())
        except FileNotFoundError:
            raise DataError(f"{path}: no such roster file") from None
        except (DuplicateKeyError, OSError, ValueError, RecursionError) as exc:
            raise DataError(f"{path}: not a roster ({exc})") from None
        try:
            return cls.from_dict(data, ca_cert)
        except IntegrityError as exc:  # not signed by the CA, or a BLS key refused
            raise IntegrityError(f"{path}: {exc}") from None
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None

    # -- what others ask ------------------------------------------------------------------

    @property
    def site_names(self) -> tuple[str, ...]:
        """The sites, sorted by name."""
        return tuple(s.name for s in self.sites)

    def site(self, name: str) -> RosterSite:
        """One site's entry; a name not on the roster raises :class:`DataError`."""
        for entry in self.sites:
            if entry.name == name:
                return entry
        raise DataError(f"{name!r} is not on the federation's signed roster")

    def identity_keys(self) -> dict[str, bytes]:
        """Raw Ed25519 public keys of every site and of ``"server"``."""
        keys = {s.name: s.public_key for s in self.sites}
        keys[SERVER_ENTRY] = self.server.public_key
        return keys

    def exchange_keys(self) -> dict[str, bytes]:
        """Raw X25519 public keys of every site."""
        return {s.name: s.exchange_key for s in self.sites}

    def bls_roster(self) -> dict[str, tuple[bytes, bytes]]:
        """Each site's BLS key and proof of possession (proofs checked when the roster loaded).

        What the neighbourhood mask round needs of every site; a roster that
        lacks one (provisioned by an older securefl) is refused in one line.
        """
        missing = [s.name for s in self.sites if s.bls is None]
        if missing:
            raise ConfigError(
                f"the signed roster holds no BLS key for {', '.join(missing)} (provisioned by an "
                "older securefl), which mask.neighbourhood = true needs: re-provision the "
                "federation (securefl provision --force, or a new securefl provision request "
                "from each of those sites), or set mask.neighbourhood = false"
            )
        return {s.name: bls for s in self.sites if (bls := s.bls) is not None}

    def cert_sha256(self, name: str) -> str:
        """The pinned TLS certificate fingerprint of ``name`` (a site or ``"server"``)."""
        if name == SERVER_ENTRY:
            return self.server.cert_sha256
        return self.site(name).cert_sha256

    def audit_roster(self) -> Roster:
        """The identity keys as records and audit use them (a :class:`Roster`)."""
        return Roster(
            federation=self.federation,
            sites={s.name: s.public_key for s in self.sites},
            server=self.server.public_key,
        )


def _site_body(site: RosterSite, version: int) -> dict[str, Any]:
    entry = {
        "name": site.name,
        "public_key": site.public_key.hex(),
        "exchange_key": site.exchange_key.hex(),
        "cert_sha256": site.cert_sha256,
    }
    bls = site.bls
    if bls is not None:
        if version < 4:
            raise DataError(f"a version {version} roster cannot hold the BLS key of {site.name!r}")
        entry["bls_key"], entry["bls_proof"] = bls[0].hex(), bls[1].hex()
    return entry


def _body(
    federation: str,
    server: RosterServer,
    sites: Sequence[RosterSite],
    issued_at: str,
    version: int,
) -> dict[str, Any]:
    return {
        "version": version,
        "federation": federation,
        "server": {
            "name": SERVER_ENTRY,
            "public_key": server.public_key.hex(),
            "cert_sha256": server.cert_sha256,
            "hosts": list(server.hosts),
            "port": server.port,
        },
        "sites": [_site_body(s, version) for s in sites],
        "issued_at": issued_at,
    }


def _entry(
    raw: object, allowed: set[str], what: str, *, also: frozenset[str] = frozenset()
) -> Mapping[str, Any]:
    """``raw`` with exactly the fields ``allowed``, or exactly ``allowed | also``."""
    if not isinstance(raw, dict) or set(raw) not in ({*allowed}, allowed | also):
        raise DataError(f"{what} must have exactly the fields {sorted(allowed | also)}")
    return raw


def _parse_site(raw: object, version: int) -> RosterSite:
    entry = _entry(raw, _SITE, "a site entry", also=_BLS)
    name = entry["name"]
    if not isinstance(name, str) or not name or name == SERVER_ENTRY:
        raise DataError(f"site name {name!r} is invalid")
    has_bls = "bls_key" in entry
    if has_bls and version < 4:
        raise DataError(f"a version {version} roster has no BLS fields (site {name!r})")
    return RosterSite(
        name=name,
        public_key=_hex32(entry["public_key"], f"{name}.public_key"),
        exchange_key=_hex32(entry["exchange_key"], f"{name}.exchange_key"),
        cert_sha256=_hex32(entry["cert_sha256"], f"{name}.cert_sha256").hex(),
        bls_key=_hex(entry["bls_key"], BLS_PUBLIC_KEY_LEN, f"{name}.bls_key") if has_bls else None,
        bls_proof=_hex(entry["bls_proof"], BLS_SIGNATURE_LEN, f"{name}.bls_proof")
        if has_bls
        else None,
    )


def _check_bls(sites: Sequence[RosterSite]) -> None:
    """Every BLS key on the roster has a valid proof of possession, and no two sites share one.

    Why here, at every load: a key without a proof could be chosen to cancel
    the others' in an aggregate (the rogue-key attack), and a copied key
    would let one site's signature count for two signers. The check is
    cached per process, so the modes checking the same keys again cost nothing.
    """
    entries = {s.name: bls for s in sites if (bls := s.bls) is not None}
    try:
        checked_bls_roster(entries, entries)
    except ConfigError as exc:
        raise IntegrityError(f"the roster's BLS keys are refused: {exc}") from None


def _parse_server(value: object) -> RosterServer:
    raw = _entry(value, _SERVER, "server")
    if raw["name"] != SERVER_ENTRY:
        raise DataError(f"the server entry must be named {SERVER_ENTRY!r}")
    hosts, port = raw["hosts"], raw["port"]
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) for h in hosts):
        raise DataError("server.hosts must be a non-empty list of strings")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise DataError("server.port must be an integer in 1..65535")
    return RosterServer(
        public_key=_hex32(raw["public_key"], "server.public_key"),
        cert_sha256=_hex32(raw["cert_sha256"], "server.cert_sha256").hex(),
        hosts=tuple(hosts),
        port=port,
    )


def _parse_body(body: Mapping[str, Any]) -> tuple[str, RosterServer, tuple[RosterSite, ...], str]:
    version = body.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version not in _READABLE:
        raise DataError(f"unsupported signed roster version {version!r}")
    federation = body.get("federation")
    if not isinstance(federation, str) or not federation:
        raise DataError("federation must be a non-empty string")
    server = _parse_server(body.get("server"))
    entries = body.get("sites")
    if not isinstance(entries, list):
        raise DataError("sites must be a list")
    sites = [_parse_site(item, version) for item in entries]
    names = [s.name for s in sites]
    if names != sorted(set(names)):
        raise DataError("sites must be sorted by name, each once")
    keys = [s.public_key for s in sites] + [server.public_key]
    certs = [s.cert_sha256 for s in sites] + [server.cert_sha256]
    exchange = [s.exchange_key for s in sites]
    if len(set(keys)) != len(keys) or len(set(certs)) != len(certs):
        raise DataError("two parties share an identity key or a certificate")
    if len(set(exchange)) != len(exchange):
        raise DataError("two sites share an exchange key")
    _check_bls(sites)
    issued_at = body.get("issued_at")
    try:
        if not isinstance(issued_at, str):
            raise ValueError
        dt.datetime.fromisoformat(issued_at)
    except ValueError:
        raise DataError("issued_at must be an ISO 8601 time") from None
    return federation, server, tuple(sites), issued_at
