"""What a deployed site needs besides its mode: its signed privacy records in its state folder."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from securefl.hazmat.sign import SigningKey
from securefl.reports import RecordWriter

__all__ = ["record_writer"]


def record_writer(
    site: str, federation: str, signing_key: SigningKey, state_dir: Path
) -> RecordWriter:
    """The site's record writer: ``state_dir/records/SITE.jsonl``, signed with its identity key.

    ``securefl audit`` reads that folder next to the roster; the records are
    signed with the same Ed25519 key the roster lists for the site.
    """
    (state_dir / "records").mkdir(parents=True, exist_ok=True)
    seed = signing_key.export_private(i_understand_this_exports_a_secret=True)
    return RecordWriter(
        state_dir / "records" / f"{site}.jsonl",
        federation=federation,
        site=site,
        signing_key=Ed25519PrivateKey.from_private_bytes(seed),
    )
