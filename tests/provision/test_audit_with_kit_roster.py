"""`securefl audit --roster KIT/roster.json`: a hospital audits with the roster it pinned.

The kit's roster is CA-signed (version 3); the audit takes its keys only after
the signature verifies against the kit's own ``ca.cert.pem``, so a swapped
file cannot swap the keys the audit trusts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from securefl.errors import DataError, IntegrityError
from securefl.provision.kit import Kit
from securefl.reports.audit import load_roster


def test_the_audit_takes_the_keys_of_a_kits_signed_roster(federation: Path) -> None:
    kit = Kit.load(federation / "kits" / "site-a")
    roster = load_roster(kit.path / "roster.json")
    assert roster == kit.roster.audit_roster()
    assert roster.sites["site-a"] == kit.signing_key().public_bytes()


def test_a_kit_roster_with_a_swapped_site_key_is_refused(federation: Path, tmp_path: Path) -> None:
    forged = tmp_path / "forged"
    forged.mkdir()
    shutil.copy(federation / "kits" / "site-a" / "ca.cert.pem", forged / "ca.cert.pem")
    data = json.loads((federation / "kits" / "site-a" / "roster.json").read_text(encoding="utf-8"))
    data["sites"][1]["public_key"] = "11" * 32  # the auditor would trust the forger's key
    (forged / "roster.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(IntegrityError):
        load_roster(forged / "roster.json")


def test_a_kit_roster_without_its_ca_certificate_is_refused(
    federation: Path, tmp_path: Path
) -> None:
    shutil.copy(federation / "kits" / "site-a" / "roster.json", tmp_path / "roster.json")
    with pytest.raises(DataError, match=r"ca\.cert\.pem"):
        load_roster(tmp_path / "roster.json")
