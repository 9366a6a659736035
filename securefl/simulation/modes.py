"""Wiring each secure-aggregation mode into an in-process federation.

A mode needs four things: the site half, the server half, how the server
holds the global model, and how a site reads it. ``plain`` and ``mask``
hold plaintext parameters on the server (the mask server learns only the
sum, which *is* the next model); ``he`` holds only ciphertexts, so sites
decrypt and replay the strategy. ``--dropout SITE@STAGE`` is rehearsed by
wrapping a site's half so that it vanishes when it would send that stage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from securefl.aggregation.base import AggregationMode, RoundContext, SiteAggregator
from securefl.aggregation.plain import PlainMode
from securefl.config import StrategyConfig
from securefl.errors import ConfigError, SecureFLError
from securefl.runtime.global_model import GlobalModel, PlainGlobalModel, decode_plain_model
from securefl.runtime.site import ModelDecoder
from securefl.wire import Envelope

#: ``securefl.he.MIN_SUMMANDS``, kept here without importing TenSEAL (a test
#: checks the two agree): an he sum of two reveals each update to the other.
HE_MIN_SUMMANDS = 3

if TYPE_CHECKING:
    from securefl.secagg import MaskConfig

__all__ = [
    "STAGES",
    "SecureSetup",
    "SiteVanished",
    "check_dropouts",
    "make_setup",
    "mask_config",
    "parse_dropouts",
]

#: The stages a site sends in, in order, per mode (what ``--dropout`` may name).
STAGES: dict[str, tuple[str, ...]] = {
    "plain": ("update",),
    "mask": ("advertise", "share", "masked-input", "consistency", "unmask"),
    "he": ("update",),
}


class SiteVanished(SecureFLError):
    """A rehearsed dropout: the site disappears without a word (simulation only)."""


@dataclass(frozen=True)
class SecureSetup:
    site_mode: Callable[[str], AggregationMode]
    server_mode: AggregationMode
    global_model: Callable[[npt.NDArray[np.float32]], GlobalModel]
    decoder: Callable[[str], ModelDecoder]


class _Vanishing(SiteAggregator):
    def __init__(self, inner: SiteAggregator, stages: tuple[str, ...], at: str) -> None:
        self._inner = inner
        self._banned = set(stages[stages.index(at) :])

    def _filter(self, out: list[Envelope]) -> list[Envelope]:
        for env in out:
            if env.stage.split("/", 1)[-1] in self._banned:
                raise SiteVanished(f"vanished at stage {env.stage!r} of round {env.round}")
        return out

    def submit(self, vector: npt.NDArray[np.float32], weight: float) -> list[Envelope]:
        return self._filter(self._inner.submit(vector, weight))

    def handle(self, envelope: Envelope) -> list[Envelope]:
        return self._filter(self._inner.handle(envelope))


class _VanishingMode(AggregationMode):
    hides_updates = True

    def __init__(self, inner: AggregationMode, stages: tuple[str, ...], at: str) -> None:
        self._inner, self._stages, self._at = inner, stages, at
        self.name = inner.name  # type: ignore[misc]

    def site(self, ctx: RoundContext, site_id: str) -> SiteAggregator:
        return _Vanishing(self._inner.site(ctx, site_id), self._stages, self._at)

    def server(self, ctx: RoundContext) -> Any:
        return self._inner.server(ctx)


def parse_dropouts(values: tuple[str, ...], secure: str, sites: list[str]) -> dict[str, str]:
    """``SITE@STAGE`` options, checked against the mode's stages and the site names."""
    out: dict[str, str] = {}
    for value in values:
        site, sep, stage = value.partition("@")
        if not sep or site not in sites:
            raise ConfigError(
                f"--dropout {value!r}: expected SITE@STAGE with SITE one of {', '.join(sites)}"
            )
        if stage not in STAGES[secure]:
            raise ConfigError(
                f"--dropout {value!r}: stage must be one of "
                f"{', '.join(STAGES[secure])} in {secure!r} mode"
            )
        out[site] = stage
    return out


def check_dropouts(
    secure: str, sites: list[str], dropouts: Mapping[str, str], min_sites: int
) -> None:
    """Refuse a federation, or a rehearsal, that cannot complete its rounds, saying why.

    Every rehearsed site vanishes in round 1 and never returns, so the round
    it vanishes in must still reach the mode's threshold, and the next round's
    smaller cohort must still be one the mode (and ``min_sites``) accepts.
    The numbers come from the mode itself (``MaskConfig.plan``), not a copy.
    """
    cohort = tuple(sorted(sites))
    config = mask_config() if secure == "mask" else None
    if config is not None:
        try:
            need = config.plan(
                federation="check", round_id=1, cohort=cohort, federation_size=len(cohort)
            ).threshold
        except ConfigError as exc:
            raise ConfigError(
                f"--secure mask cannot run {len(sites)} sites ({exc}); add sites or use --secure he"
            ) from None
    if secure == "he" and len(sites) < max(min_sites, HE_MIN_SUMMANDS):
        raise ConfigError(
            f"--secure he needs at least {max(min_sites, HE_MIN_SUMMANDS)} sites: a sum of two "
            "reveals each update to the other site; add sites"
        )
    if not dropouts:
        return
    survivors = tuple(s for s in cohort if s not in dropouts)
    lost = f"{len(dropouts)} of {len(sites)} sites vanishing leaves {len(survivors)}"
    if len(survivors) < min_sites:
        raise ConfigError(f"--dropout: {lost}, below min_sites={min_sites}; use more --sites")
    if secure == "he" and len(survivors) < HE_MIN_SUMMANDS:
        raise ConfigError(
            f"--dropout: {lost}, below the {HE_MIN_SUMMANDS} uploads an he sum needs (a sum of "
            "two reveals each update to the other site); use more --sites"
        )
    if config is None:
        return
    if len(survivors) < need:
        raise ConfigError(
            f"--dropout: {lost}, but masking {len(sites)} sites needs {need} to survive "
            f"(threshold t = {need}); use more --sites or fewer dropouts"
        )
    try:
        config.plan(federation="check", round_id=2, cohort=survivors, federation_size=len(cohort))
    except ConfigError as exc:
        raise ConfigError(f"--dropout: {lost}, and the next round cannot open: {exc}") from None


def mask_config() -> MaskConfig:
    """The masking settings of an in-process federation."""
    from securefl.secagg import MaskConfig

    return MaskConfig(clip=1.0)


def _with_dropouts(
    base: Callable[[str], AggregationMode], secure: str, dropouts: Mapping[str, str]
) -> Callable[[str], AggregationMode]:
    def site_mode(name: str) -> AggregationMode:
        mode = base(name)
        return _VanishingMode(mode, STAGES[secure], dropouts[name]) if name in dropouts else mode

    return site_mode


def make_setup(
    secure: str,
    *,
    signing_keys: Mapping[str, bytes],
    roster: Mapping[str, bytes],
    workdir: Path,
    strategy: StrategyConfig,
    dropouts: Mapping[str, str],
    he_preset: str | None = None,
    federation: str = "securefl-sim",
    max_weight: float | None = None,
    min_sites: int = 2,
) -> SecureSetup:
    """Both halves and the model holders for ``secure`` in an in-process federation.

    ``max_weight`` and ``min_sites`` are the federation's own settings, which
    ``he`` sites pin (they refuse a round or an aggregate announcing others).
    """
    if secure == "plain":
        plain = PlainMode()
        base: Callable[[str], AggregationMode] = lambda _name: plain  # noqa: E731
        setup = SecureSetup(base, plain, PlainGlobalModel, lambda _n: decode_plain_model)
    elif secure == "mask":
        setup = _mask_setup(signing_keys, roster, workdir)
    elif secure == "he":
        if max_weight is None:
            raise ConfigError("he mode needs the federation's max_weight for its sites")
        setup = _he_setup(
            strategy, he_preset, signing_keys, roster, federation, max_weight, min_sites
        )
    else:
        raise ConfigError(f"unknown secure mode {secure!r}")
    if dropouts:
        setup = SecureSetup(
            _with_dropouts(setup.site_mode, secure, dropouts),
            setup.server_mode,
            setup.global_model,
            setup.decoder,
        )
    return setup


def _mask_setup(
    signing_keys: Mapping[str, bytes], roster: Mapping[str, bytes], workdir: Path
) -> SecureSetup:
    from securefl.hazmat.sign import SigningKey
    from securefl.secagg import MaskServerMode, MaskSiteMode

    config = mask_config()
    modes = {
        name: MaskSiteMode(
            site_id=name,
            signing_key=SigningKey.from_private_bytes(raw),
            roster=dict(roster),
            state_path=workdir / "state" / name / "mask.json",
            config=config,
        )
        for name, raw in signing_keys.items()
    }
    server = MaskServerMode(roster=dict(roster), config=config)
    return SecureSetup(modes.__getitem__, server, PlainGlobalModel, lambda _n: decode_plain_model)


def _he_setup(
    strategy: StrategyConfig,
    preset_name: str | None,
    signing_keys: Mapping[str, bytes],
    roster: Mapping[str, bytes],
    federation: str,
    max_weight: float,
    min_sites: int,
) -> SecureSetup:
    """One site (the first by name) makes the keys and signs both contexts.

    The secret context goes from that site to the others in this process,
    never through the server; each site, and the server, checks the maker's
    signature against the roster before using a context. In a real
    federation provisioning carries the signed secret context to each site
    encrypted to it.
    """
    from securefl.hazmat.sign import SigningKey
    from securefl.he import (
        DEFAULT_PRESET,
        HEServerMode,
        HESiteMode,
        SecretContext,
        preset_by_name,
    )
    from securefl.runtime.encrypted_model import EncryptedAggregatesModel, EncryptedModelDecoder
    from securefl.wire import SERVER

    preset = preset_by_name(preset_name) if preset_name else DEFAULT_PRESET
    sites = sorted(name for name in signing_keys if name != SERVER)
    maker = sites[0]
    maker_key = SigningKey.from_private_bytes(signing_keys[maker])
    made = SecretContext.generate(preset)
    signed_secret = made.signed_secret_context(
        federation=federation, maker=maker, signing_key=maker_key, include_secret_key=True
    )
    signed_public = made.signed_public_context(
        federation=federation, maker=maker, signing_key=maker_key
    )
    secrets = {
        name: made
        if name == maker
        else SecretContext.from_signed(
            signed_secret, roster=roster, federation=federation, maker=maker
        )
        for name in sites
    }
    modes = {
        name: HESiteMode(
            secrets[name],
            site_id=name,
            signing_key=SigningKey.from_private_bytes(signing_keys[name]),
            max_weight=max_weight,
        )
        for name in sites
    }
    server_mode = HEServerMode(signed_public, roster=roster, federation=federation, maker=maker)
    return SecureSetup(
        modes.__getitem__,
        server_mode,
        lambda theta0: EncryptedAggregatesModel(theta0, strategy),
        lambda name: EncryptedModelDecoder(
            modes[name],
            roster=roster,
            federation=federation,
            strategy=strategy,
            min_sites=min_sites,
        ),
    )
