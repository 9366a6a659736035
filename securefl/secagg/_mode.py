"""The ``mask`` aggregation mode: one factory per party, since each holds different keys.

A site's factory holds its Ed25519 identity key and its round log; the
server's factory holds only public keys. Asking a site's factory for the
server half (or the reverse) is a configuration error, not a fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from securefl.aggregation.base import (
    AggregationMode,
    RoundContext,
    ServerAggregator,
    SiteAggregator,
)
from securefl.errors import ConfigError
from securefl.hazmat.sign import PUBLIC_KEY_LEN, SigningKey
from securefl.secagg._config import MaskConfig
from securefl.secagg._multisig import BlsRoster, NeighbourhoodSigner, checked_bls_roster
from securefl.secagg._server import MaskServer
from securefl.secagg._site import MaskSite
from securefl.secagg._state import RoundLog

__all__ = ["MaskServerMode", "MaskSiteMode"]


def _check_roster(roster: Mapping[str, bytes]) -> dict[str, bytes]:
    out = dict(roster)
    for site, key in out.items():
        if not isinstance(site, str) or not site:
            raise ConfigError("roster site ids must be non-empty strings")
        if not isinstance(key, bytes) or len(key) != PUBLIC_KEY_LEN:
            raise ConfigError(f"roster key of {site!r} must be {PUBLIC_KEY_LEN} bytes")
    if len(set(out.values())) != len(out):
        raise ConfigError("two roster entries share one public key")
    return out


def _check_cohort(ctx: RoundContext, roster: dict[str, bytes]) -> None:
    missing = set(ctx.cohort) - set(roster)
    if missing:
        raise ConfigError(f"cohort sites without a roster key: {sorted(missing)}")


def _bls_keys(
    config: MaskConfig, bls_roster: BlsRoster | None, roster: dict[str, bytes]
) -> dict[str, bytes] | None:
    """The roster's checked BLS keys when the neighbourhood round may run, else None."""
    if not config.neighbourhood:
        return None
    return checked_bls_roster(bls_roster, roster)


class MaskSiteMode(AggregationMode):
    """A site's side of SecAgg+ masking; see ``docs/mask.md``."""

    name = "mask"
    hides_updates = True

    def __init__(
        self,
        *,
        site_id: str,
        signing_key: SigningKey,
        roster: Mapping[str, bytes],
        state_path: Path,
        config: MaskConfig,
        bls_roster: BlsRoster | None = None,
    ) -> None:
        """``bls_roster``: each site's BLS key and proof of possession; needed (and
        checked here) when ``config.neighbourhood`` is set."""
        if not isinstance(signing_key, SigningKey):
            raise ConfigError("signing_key must be a securefl.hazmat.sign.SigningKey")
        if not isinstance(config, MaskConfig):
            raise ConfigError("config must be a MaskConfig")
        self._roster = _check_roster(roster)
        if self._roster.get(site_id) != signing_key.public_bytes():
            raise ConfigError(f"the roster key of {site_id!r} does not match its signing key")
        self._site_id, self._key, self._config = site_id, signing_key, config
        self._bls = _bls_keys(config, bls_roster, self._roster)
        self._signer = None  # derived once, checked against the roster now, not in a round
        if self._bls is not None:
            self._signer = NeighbourhoodSigner(signing_key, site_id, self._bls)
        self._log = RoundLog(Path(state_path))

    def site(self, ctx: RoundContext, site_id: str) -> SiteAggregator:
        if site_id != self._site_id:
            raise ConfigError(f"this mode holds the keys of {self._site_id!r}, not {site_id!r}")
        _check_cohort(ctx, self._roster)
        if site_id not in ctx.cohort:
            raise ConfigError(f"{site_id!r} is not in this round's cohort")
        return MaskSite(
            ctx=ctx,
            site_id=site_id,
            signing_key=self._key,
            roster=self._roster,
            log=self._log,
            config=self._config,
            bls_keys=self._bls,
            bls_signer=self._signer,
        )

    def server(self, ctx: RoundContext) -> ServerAggregator:
        raise ConfigError("a site's mask mode has no server half; use MaskServerMode")


class MaskServerMode(AggregationMode):
    """The server's side of SecAgg+ masking: public keys only."""

    name = "mask"
    hides_updates = True

    def __init__(
        self,
        *,
        roster: Mapping[str, bytes],
        config: MaskConfig,
        bls_roster: BlsRoster | None = None,
    ) -> None:
        if not isinstance(config, MaskConfig):
            raise ConfigError("config must be a MaskConfig")
        self._roster = _check_roster(roster)
        self._config = config
        self._bls = _bls_keys(config, bls_roster, self._roster)

    def site(self, ctx: RoundContext, site_id: str) -> SiteAggregator:
        raise ConfigError("the server's mask mode has no site half; use MaskSiteMode")

    def server(self, ctx: RoundContext) -> ServerAggregator:
        _check_cohort(ctx, self._roster)
        return MaskServer(ctx=ctx, roster=self._roster, config=self._config, bls_keys=self._bls)
