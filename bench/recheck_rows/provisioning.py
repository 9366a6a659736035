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

_COORD = "securefl/provision/coordinator.py"

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
    Row(
        "prov-no-ca-key-in-kits",
        "provisioning.md",
        "No kit contains the CA private key",
        (  # by construction no kit gets them: each removal puts one in
            Removal(
                _COORD,
                '        write_public(folder / "tls.cert.pem", '
                "cert.public_bytes(serialization.Encoding.PEM))\n",
                '        write_public(folder / "tls.cert.pem", '
                "cert.public_bytes(serialization.Encoding.PEM))\n"
                '        shutil.copyfile(self.ca_dir / "ca.key.pem", folder / "backup.pem")\n',
            ),
            Removal(
                _COORD,
                '    write_private_key(folder / "exchange.key.pem", exchange)\n',
                '    write_private_key(folder / "exchange.key.pem", exchange)\n'
                "    if (fed.out / SERVER_ENTRY).is_dir():\n"
                '        write_private_key(fed.out / SERVER_ENTRY / f"{name}.pem", identity)\n',
            ),
        ),
    ),
    Row(
        "prov-request-flow",
        "provisioning.md",
        "In the request flow the site's private keys never reach the coordinator",
        (
            Removal(
                "securefl/provision/request.py",
                "verify(identity, _message(site, der, identity, exchange), signature)",
                "None",
            ),
            _off(_PKI, "names != [site]"),
        ),
    ),
    Row(
        "prov-revocation",
        "provisioning.md",
        "Revoking a site puts every certificate issued to it in the CA-signed",
        (
            Removal(  # only the first certificate of the site revoked
                _COORD,
                '                serials.append(int(entry["serial"]))\n',
                '                serials.append(int(entry["serial"]))\n                break\n',
            ),
            Removal(  # every party's certificates revoked
                _COORD,
                'if entry["party"] == party and entry["revoked_at"] is None:',
                'if entry["revoked_at"] is None:',
            ),
            Removal(  # the server's kit keeps its old list
                _COORD,
                '            write_public(self.out / SERVER_ENTRY / "crl.pem", pem)\n',
                "            pass\n",
            ),
            Removal(  # a site replacing its keys by a request keeps its old certificate
                _COORD,
                "        fed.revoke_party(name)  # its earlier keys",
                "        # its earlier keys",
            ),
        ),
    ),
)
