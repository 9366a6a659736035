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
_REQUEST = "securefl/provision/request.py"

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
                "not isinstance(version, int) or isinstance(version, bool) "
                "or version not in _READABLE",
            ),
            _off(_ROSTER, "has_bls and version < 4"),
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
                "verify(identity, message, signature)",
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
    Row(
        "prov-roster-bls",
        "provisioning.md",
        "Every BLS key on the roster comes with its proof of possession",
        (Removal(_ROSTER, "    _check_bls(sites)\n", ""),),
    ),
    Row(
        "prov-kit-bls",
        "provisioning.md",
        "A site refuses a CA-signed roster that names another BLS key",
        (_off(_KIT, "entry.bls is not None and own != entry.bls[0]"),),
    ),
    Row(
        "prov-request-bls",
        "provisioning.md",
        "A site's request carries the BLS key its identity derives",
        (
            Removal(  # the identity signature leaves the BLS key and proof out
                _REQUEST,
                "signed_message(REQUEST_DOMAIN, site, csr_der, identity, exchange, "
                "bls_key, bls_proof)",
                "signed_message(REQUEST_DOMAIN, site, csr_der, identity, exchange)",
            ),
            Removal(
                _REQUEST,
                "            bls.check_possession(bls_key, bls_proof)\n",
                "            pass\n",
            ),
            Removal(
                _REQUEST,
                "            bls.verify_one(bls_key, message, bls_signature)\n",
                "            pass\n",
            ),
        ),
    ),
    Row(
        "prov-old-roster",
        "provisioning.md",
        "A roster provisioned before BLS keys (version 3) still loads",
        (_off(_ROSTER, "missing"),),
    ),
    Row(
        "prov-deploy-bls",
        "provisioning.md",
        "The parties of a neighbourhood federation take every site's BLS key",
        (
            Removal(
                "securefl/deploy/site.py",
                "        bls_roster=bls_roster,  "
                "# the neighbourhood round's, checked when the kit loaded\n",
                "\n",
            ),
            Removal(
                "securefl/deploy/server.py",
                "        bls_roster=kit.bls_roster(),  "
                "# the neighbourhood round's BLS keys, or None\n",
                "\n",
            ),
            Removal(
                "securefl/deploy/site.py",
                "        bls_roster=kit.bls_roster(),\n    )\n    return Site.for_federation(",
                "    )\n    return Site.for_federation(",
            ),
            Removal(
                "securefl/deploy/server.py",
                "distributed_server_mode(plan, identity, bls_roster=kit.bls_roster())",
                "distributed_server_mode(plan, identity)",
            ),
        ),
    ),
)
