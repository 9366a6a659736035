"""Removal entries for the claim rows of ``threat_models/provisioning.md``."""

from __future__ import annotations

from ._common import (
    _KIT,
    _PKI,
    _ROSTER,
    _ROSTER_VERIFY,
    Removal,
    Row,
    _off,
)

ROWS: tuple[Row, ...] = (
    Row(
        "prov-roster-tamper",
        "provisioning.md",
        "A roster with a tampered identity or exchange key",
        (Removal(_ROSTER, _ROSTER_VERIFY, "            pass\n"),),
    ),
    Row(
        "prov-roster-other-ca",
        "provisioning.md",
        "A roster signed by another CA",
        (Removal(_ROSTER, _ROSTER_VERIFY, "            pass\n"),),
    ),
    Row(
        "prov-private-key-mode",
        "provisioning.md",
        "Private keys and the status token are created mode 0600",
        (_off(_KIT, 'os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077'),),
    ),
    Row(
        "prov-kit-others-write",
        "provisioning.md",
        "A kit that every user may change is refused",
        (_off(_KIT, 'os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o002'),),
    ),
    Row(
        "prov-roster-version",
        "provisioning.md",
        "A roster of another format version is refused",
        (
            _off(
                _ROSTER,
                'body.get("version") != SIGNED_ROSTER_VERSION '
                'or isinstance(body.get("version"), bool)',
            ),
        ),
    ),
    Row(
        "prov-kit-keys",
        "provisioning.md",
        "A party refuses to start from a kit whose roster was edited",
        (
            Removal(_ROSTER, _ROSTER_VERIFY, "            pass\n"),
            _off(_KIT, "self.signing_key().public_bytes() != identity"),
            _off(_KIT, "cert_sha256(cert) != self.roster.cert_sha256(self.party)"),
        ),
    ),
    Row(
        "prov-ca-not-replaced",
        "provisioning.md",
        "Provisioning never silently replaces a CA.",
        (_off("securefl/provision/coordinator.py", "existing and not force"),),
    ),
    Row(
        "prov-cert-profile",
        "provisioning.md",
        "The CA certificate may only sign certificates and CRLs",
        (  # each restriction of the profile lifted in turn
            Removal(
                _PKI,
                "x509.BasicConstraints(ca=True, path_length=0)",
                "x509.BasicConstraints(ca=True, path_length=None)",
            ),
            Removal(
                _PKI,
                "x509.BasicConstraints(ca=False, path_length=None)",
                "x509.BasicConstraints(ca=True, path_length=None)",
            ),
            Removal(
                _PKI,
                "x509.ExtendedKeyUsage([usage])",
                "x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, "
                "ExtendedKeyUsageOID.CLIENT_AUTH])",
            ),
        ),
    ),
)
