"""What a deployed site needs besides its mode: its settings and its signed records.

A deployed site's settings come from the federation's configuration and
its pinned roster; its signed privacy records go to its state folder. Apart
from :mod:`securefl.runtime.site` because a simulation builds its sites
without any of it: only ``Site.for_federation`` (and so ``securefl client``)
reads a configuration file's view of one site and a pinned roster.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from securefl.hazmat.sign import SigningKey
from securefl.reports import RecordWriter
from securefl.runtime.global_model import ModelDecoder, decode_plain_model
from securefl.wire import SERVER

if TYPE_CHECKING:
    from securefl.aggregation.base import AggregationMode
    from securefl.config import DPConfig, FederationConfig, RoundConfig, TrainConfig
    from securefl.modes import SiteHalf

__all__ = ["SiteArguments", "deployed_site_arguments", "record_writer"]


class SiteArguments(TypedDict):
    """The :class:`~securefl.runtime.site.Site` arguments a deployment fixes for one site."""

    name: str
    federation: str
    mode: AggregationMode | None
    dp: DPConfig
    train: TrainConfig
    rounds: RoundConfig
    state_dir: str | Path
    record_writer: RecordWriter
    decode_model: ModelDecoder
    roster: list[str]


def deployed_site_arguments(
    name: str,
    config: FederationConfig,
    identity_keys: Mapping[str, bytes],
    signing_key: SigningKey,
    state_dir: str | Path,
    half: SiteHalf | None,
) -> SiteArguments:
    """Site ``name``'s arguments: its own DP settings, its records, the roster's site names.

    ``identity_keys`` is the pinned roster (the server's key may be listed too;
    it is not a site). ``half`` is ``None`` when the mode's half arrives with
    the key step (he): the site then starts without a mode.
    """
    writer = record_writer(name, config.name, signing_key, Path(state_dir))
    return SiteArguments(
        name=name,
        federation=config.name,
        mode=half.mode if half is not None else None,
        dp=config.site_dp(name),
        train=config.train,
        rounds=config.rounds,
        state_dir=state_dir,
        record_writer=writer,
        decode_model=half.decoder if half is not None else decode_plain_model,
        roster=[n for n in identity_keys if n != SERVER],
    )


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
