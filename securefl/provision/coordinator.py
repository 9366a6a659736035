"""The coordinator's side of provisioning: kits, signed requests, revocation, renewal.

Why one folder ``ca/`` apart from the kits: it holds the CA private key,
which signs certificates, the roster and the revocation list. It never
enters a kit; a kit holds only its own party's private keys. Provisioning
refuses to write over an existing federation unless asked (``force``): a
replaced CA silently cuts every running party off.

``ca/issued.json`` lists every certificate issued (serial, party, expiry,
fingerprint, revocation time); the CRL is rebuilt from it.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from securefl.config import FederationConfig, load_federation
from securefl.errors import ConfigError
from securefl.hazmat.sign import SigningKey
from securefl.provision._distributed import check_distributed, distributed_note
from securefl.provision._model import write_initial_model
from securefl.provision._readme import kit_readme
from securefl.provision.kit import KIT_VERSION, write_json
from securefl.provision.pki import (
    CertificateAuthority,
    build_crl,
    cert_sha256,
    issue_server_cert,
    issue_site_cert,
    load_cert,
    new_key,
    write_private_key,
    write_public,
)
from securefl.provision.request import SiteRequest
from securefl.provision.roster import RosterServer, RosterSite, SignedRoster
from securefl.reports._canonical import strict_loads
from securefl.reports.roster import SERVER_ENTRY
from securefl.secagg import bls_entry

__all__ = ["CA_DIR", "ProvisionResult", "provision", "renew", "revoke"]

CA_DIR = "ca"
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw
_RESERVED = {CA_DIR, SERVER_ENTRY}
_HE_MIN_SUMMANDS = 3  # securefl.he.MIN_SUMMANDS, without importing TenSEAL (a test checks)


@dataclass(frozen=True)
class ProvisionResult:
    """What a provisioning step wrote: the kit folders by party and the signed roster."""

    out: Path
    kits: dict[str, Path]
    roster: SignedRoster


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _Federation:
    """The coordinator's folder: CA, issued certificates, the current roster."""

    def __init__(self, out: Path, config: FederationConfig, source: Path, ca: CertificateAuthority):
        self.out, self.config, self.source, self.ca = out, config, source, ca
        self.ca_dir = out / CA_DIR
        #: the README's distributed-DP section (public numbers), '' for privacy = "local"
        self.note = distributed_note(config, self.ca_dir, source)
        issued = self.ca_dir / "issued.json"
        self.issued: list[dict[str, Any]] = (
            strict_loads(issued.read_bytes())["certificates"] if issued.exists() else []
        )

    @classmethod
    def open(cls, fed_path: Path, out: Path) -> _Federation:
        """An existing federation; the file must be the one it was provisioned from."""
        config = load_federation(fed_path)
        ca_dir = out / CA_DIR
        if not (ca_dir / "ca.key.pem").is_file():
            raise ConfigError(f"{ca_dir}: no provisioned federation here (run securefl provision)")
        if load_federation(ca_dir / "federation.toml") != config:
            raise ConfigError(
                f"{fed_path} differs from the file {out} was provisioned from "
                f"({ca_dir / 'federation.toml'}); use that file, or re-provision with --force"
            )
        return cls(out, config, ca_dir / "federation.toml", CertificateAuthority.load(ca_dir))

    def roster(self) -> SignedRoster:
        return SignedRoster.load(self.ca_dir / "roster.json", self.ca.cert)

    def record(self, party: str, cert: x509.Certificate) -> None:
        self.issued.append(
            {
                "serial": str(cert.serial_number),
                "party": party,
                "not_after": cert.not_valid_after_utc.isoformat(),
                "sha256": cert_sha256(cert),
                "revoked_at": None,
            }
        )

    def revoke_party(self, party: str) -> list[int]:
        when = _now().isoformat(timespec="seconds")
        serials = []
        for entry in self.issued:
            if entry["party"] == party and entry["revoked_at"] is None:
                entry["revoked_at"] = when
                serials.append(int(entry["serial"]))
        return serials

    def is_revoked(self, cert: x509.Certificate) -> bool:
        serial = str(cert.serial_number)
        return any(e["serial"] == serial and e["revoked_at"] for e in self.issued)

    def save(self, roster: SignedRoster | None) -> None:
        write_json(self.ca_dir / "issued.json", {"version": 1, "certificates": self.issued})
        revoked = [
            (int(e["serial"]), dt.datetime.fromisoformat(e["revoked_at"]))
            for e in self.issued
            if e["revoked_at"] is not None
        ]
        crl = build_crl(self.ca, revoked, days=self.config.pki.cert_days)
        pem = crl.public_bytes(serialization.Encoding.PEM)
        write_public(self.ca_dir / "crl.pem", pem)
        if (self.out / SERVER_ENTRY).is_dir():
            write_public(self.out / SERVER_ENTRY / "crl.pem", pem)
        if roster is not None:
            roster.save(self.ca_dir / "roster.json")
            for party in [SERVER_ENTRY, *roster.site_names]:
                if (self.out / party / "kit.json").is_file():
                    roster.save(self.out / party / "roster.json")

    def server_cert(self, key: ec.EllipticCurvePublicKey) -> x509.Certificate:
        cert = issue_server_cert(
            self.ca, key, hosts=self.config.server.hosts, days=self.config.pki.cert_days
        )
        self.record(SERVER_ENTRY, cert)
        return cert

    def site_cert(self, site: str, key: ec.EllipticCurvePublicKey) -> x509.Certificate:
        cert = issue_site_cert(self.ca, key, site=site, days=self.config.pki.cert_days)
        self.record(site, cert)
        return cert

    def write_public_part(self, party: str, cert: x509.Certificate, *, public_only: bool) -> Path:
        """Everything of a kit but its private keys (and the roster, written by save)."""
        folder = self.out / party
        folder.mkdir(parents=True, exist_ok=True)
        kind = "server" if party == SERVER_ENTRY else "site"
        server = self.config.server
        write_json(
            folder / "kit.json",
            {
                "version": KIT_VERSION,
                "kind": kind,
                "party": party,
                "federation": self.config.name,
                "server_url": server.url,
                "server_name": server.hosts[0],
            },
        )
        shutil.copyfile(self.source, folder / "federation.toml")
        write_public(folder / "ca.cert.pem", self.ca.cert.public_bytes(serialization.Encoding.PEM))
        write_public(folder / "tls.cert.pem", cert.public_bytes(serialization.Encoding.PEM))
        for name in ("model.safetensors", "spec.json"):
            shutil.copyfile(self.ca_dir / name, folder / name)
        readme = (
            kit_readme(
                kind=kind,
                party=party,
                federation=self.config.name,
                url=server.url,
                hosts=", ".join(server.hosts),
                path=f"{party}/",
                public_only=public_only,
            )
            + self.note
        )
        (folder / "README.md").write_text(readme, encoding="utf-8")
        return folder


def _kit_folders(out: Path) -> list[Path]:
    return [p.parent for p in out.glob("*/kit.json")] if out.is_dir() else []


def provision(
    fed_path: str | Path,
    out: str | Path,
    *,
    requests: Sequence[SiteRequest] = (),
    force: bool = False,
) -> ProvisionResult:
    """Write one kit per party into ``out``, or sign site requests into an existing one.

    Fresh ``out``: a new CA in ``out/ca``, a server kit, and a kit per
    ``[[sites]]`` entry (a site with a request gets only the public part of
    its kit: its keys stay at the site). Existing federation in ``out`` and
    ``requests`` given: each requesting site's certificate is issued from its
    request, its earlier certificates are revoked, and every kit gets the new
    signed roster. Anything else in an existing ``out`` is refused unless
    ``force`` (which replaces the CA and every kit).
    """
    fed_path, out = Path(fed_path), Path(out)
    config = load_federation(fed_path)
    names = [s.name for s in config.sites]
    if not names:
        raise ConfigError(f"{fed_path}: no [[sites]]: a federation needs sites to provision")
    for name in names:
        if name in _RESERVED:
            raise ConfigError(f"{fed_path}: a site may not be named {name!r} (a kit folder name)")
    _check_runnable(config, fed_path)
    check_distributed(config, fed_path)  # before any CA or kit is written
    by_site = {r.site: r for r in requests}
    if len(by_site) != len(requests):
        raise ConfigError("two requests name the same site")
    for site in by_site:
        if site not in names:
            raise ConfigError(f"the request for {site!r} names no [[sites]] entry of {fed_path}")
    existing = (out / CA_DIR).exists() or bool(_kit_folders(out))
    if existing and requests and not force:
        return _sign_into(_Federation.open(fed_path, out), by_site)
    if existing and not force:
        raise ConfigError(
            f"{out} already holds a provisioned federation; refusing to replace its CA "
            "(use another --out, or --force to replace the CA and every kit)"
        )
    for folder in [out / CA_DIR, *_kit_folders(out)]:
        shutil.rmtree(folder, ignore_errors=True)
    ca_dir = out / CA_DIR
    ca_dir.mkdir(parents=True, mode=0o700)
    ca = CertificateAuthority.create(config.name, days=config.pki.ca_days)
    write_private_key(ca_dir / "ca.key.pem", ca.key)
    write_public(ca_dir / "ca.cert.pem", ca.cert.public_bytes(serialization.Encoding.PEM))
    shutil.copyfile(fed_path, ca_dir / "federation.toml")
    write_initial_model(config.model, ca_dir)
    fed = _Federation(out, config, ca_dir / "federation.toml", ca)

    tls = new_key()
    identity = Ed25519PrivateKey.generate()
    cert = fed.server_cert(tls.public_key())
    folder = fed.write_public_part(SERVER_ENTRY, cert, public_only=False)
    write_private_key(folder / "tls.key.pem", tls)
    write_private_key(folder / "identity.key.pem", identity)
    _write_token(folder / "status.token")
    server = RosterServer(
        public_key=identity.public_key().public_bytes(*_RAW),
        cert_sha256=cert_sha256(cert),
        hosts=config.server.hosts,
        port=config.server.port,
    )
    entries = [_new_site(fed, name, by_site.get(name)) for name in names]
    roster = SignedRoster.sign(ca, federation=config.name, server=server, sites=entries)
    fed.save(roster)
    return ProvisionResult(out, {p: out / p for p in [SERVER_ENTRY, *names]}, roster)


def _check_runnable(config: FederationConfig, fed_path: Path) -> None:
    """Refuse kits for a federation that could never complete a round, saying why."""
    names = tuple(sorted(s.name for s in config.sites))
    if len(names) < config.rounds.min_sites:
        raise ConfigError(
            f"{fed_path}: {len(names)} site(s) listed, below rounds.min_sites = "
            f"{config.rounds.min_sites}; add [[sites]]"
        )
    if config.secure == "he" and len(names) < _HE_MIN_SUMMANDS:
        raise ConfigError(
            f"{fed_path}: he mode needs at least {_HE_MIN_SUMMANDS} sites (a sum of two reveals "
            "each update to the other); add [[sites]]"
        )
    if config.secure == "mask":
        try:
            config.mask.plan(
                federation=config.name, round_id=1, cohort=names, federation_size=len(names)
            )
        except ConfigError as exc:
            raise ConfigError(f"{fed_path}: mask mode cannot run these sites ({exc})") from None
    if config.rounds.max_weight is None:
        raise ConfigError(
            f"{fed_path}: rounds.max_weight must be set for a deployment: the largest weight "
            "(number of examples) one site may submit, which every party pins"
        )


def _write_token(path: Path) -> None:
    """The status bearer token, owner-only from the moment it exists."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")


def _new_site(fed: _Federation, name: str, request: SiteRequest | None) -> RosterSite:
    if request is not None:
        cert = fed.site_cert(name, request.tls_public_key)
        shutil.rmtree(fed.out / name, ignore_errors=True)  # no stale private keys next to it
        fed.write_public_part(name, cert, public_only=True)
        return RosterSite(
            name=name,
            public_key=request.identity_key,
            exchange_key=request.exchange_key,
            cert_sha256=cert_sha256(cert),
            bls_key=request.bls_key,  # proof and binding checked when the request loaded
            bls_proof=request.bls_proof,
        )
    tls = new_key()
    identity = Ed25519PrivateKey.generate()
    exchange = X25519PrivateKey.generate()
    cert = fed.site_cert(name, tls.public_key())
    folder = fed.write_public_part(name, cert, public_only=False)
    write_private_key(folder / "tls.key.pem", tls)
    write_private_key(folder / "identity.key.pem", identity)
    write_private_key(folder / "exchange.key.pem", exchange)
    bls_key, bls_proof = bls_entry(SigningKey(identity))  # derived from the identity seed
    return RosterSite(
        name=name,
        public_key=identity.public_key().public_bytes(*_RAW),
        exchange_key=exchange.public_key().public_bytes(*_RAW),
        cert_sha256=cert_sha256(cert),
        bls_key=bls_key,
        bls_proof=bls_proof,
    )


def _sign_into(fed: _Federation, requests: dict[str, SiteRequest]) -> ProvisionResult:
    current = fed.roster()
    sites = {s.name: s for s in current.sites}
    for name, request in sorted(requests.items()):
        fed.revoke_party(name)  # its earlier keys may have been made here: no longer trusted
        sites[name] = _new_site(fed, name, request)
    roster = SignedRoster.sign(
        fed.ca, federation=fed.config.name, server=current.server, sites=list(sites.values())
    )
    fed.save(roster)
    return ProvisionResult(fed.out, {n: fed.out / n for n in requests}, roster)


def revoke(fed_path: str | Path, site: str, out: str | Path) -> list[int]:
    """Revoke every certificate issued to ``site``; rewrite ``ca/crl.pem`` and the server's copy.

    Returns the revoked serial numbers. The site stays on the roster (its
    records remain auditable); the server refuses its certificate from the
    next request on, once it has the new ``crl.pem``.
    """
    fed = _Federation.open(Path(fed_path), Path(out))
    if site not in fed.roster().site_names:
        raise ConfigError(f"{site!r} is not a site of the federation in {out}")
    serials = fed.revoke_party(site)
    if not serials:
        raise ConfigError(f"{site!r} holds no unrevoked certificate; nothing to revoke")
    fed.save(None)
    return serials


def renew(fed_path: str | Path, out: str | Path, *, parties: Sequence[str] = ()) -> ProvisionResult:
    """Issue fresh certificates (same TLS keys) to ``parties`` (default: every party).

    Each party's current ``tls.cert.pem`` in ``out`` names the key to
    re-certify, so a site that made its own keys keeps them. The old
    certificates stay valid until they expire but are no longer pinned: every
    kit gets a new signed roster with the new fingerprints. A revoked party
    is never renewed (left out by default, refused when named).
    """
    fed = _Federation.open(Path(fed_path), Path(out))
    current = fed.roster()
    olds = {p: load_cert(fed.out / p / "tls.cert.pem") for p in [SERVER_ENTRY, *current.site_names]}
    chosen = list(parties) or [p for p, c in olds.items() if not fed.is_revoked(c)]
    for party in chosen:
        if party not in olds:
            raise ConfigError(f"{party!r} is not a party of the federation in {out}")
        if fed.is_revoked(olds[party]):
            raise ConfigError(f"{party!r} is revoked; a revoked party is not renewed")
    server, sites = current.server, {s.name: s for s in current.sites}
    for party in chosen:
        key = olds[party].public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ConfigError(f"{fed.out / party / 'tls.cert.pem'}: not an ECDSA certificate")
        if party == SERVER_ENTRY:
            cert = fed.server_cert(key)
            server = RosterServer(
                public_key=server.public_key,
                cert_sha256=cert_sha256(cert),
                hosts=fed.config.server.hosts,
                port=fed.config.server.port,
            )
        else:
            cert = fed.site_cert(party, key)
            sites[party] = replace(sites[party], cert_sha256=cert_sha256(cert))
        write_public(
            fed.out / party / "tls.cert.pem", cert.public_bytes(serialization.Encoding.PEM)
        )
    roster = SignedRoster.sign(
        fed.ca, federation=fed.config.name, server=server, sites=list(sites.values())
    )
    fed.save(roster)
    return ProvisionResult(fed.out, {p: fed.out / p for p in chosen}, roster)
