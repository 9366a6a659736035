"""Wiring each secure-aggregation mode into an in-process federation.

The halves themselves are built by :mod:`securefl.modes`, the same code a
deployment runs; this module only gathers them for one process, makes the
``he`` keys at the first site and hands the secret context to the others in
memory, and rehearses ``--dropout SITE@STAGE`` by wrapping a site's half so
that it vanishes when it would send that stage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from securefl import modes as library
from securefl.aggregation.base import AggregationMode, RoundContext, SiteAggregator
from securefl.config import FederationConfig
from securefl.errors import ConfigError, SecureFLError
from securefl.hazmat.sign import SigningKey
from securefl.modes import HE_MIN_SUMMANDS, mask_config
from securefl.runtime.global_model import GlobalModel, ModelDecoder
from securefl.simulation.run_folder import KEYS_DIR, private_dir, read_private, write_private
from securefl.wire import SERVER, Envelope

if TYPE_CHECKING:
    from securefl.he import SecretContext
    from securefl.runtime._distributed import DistributedPlan
    from securefl.secagg import MaskConfig

__all__ = [
    "HE_MIN_SUMMANDS",
    "STAGES",
    "SecureSetup",
    "SiteVanished",
    "bls_roster",
    "check_dropouts",
    "make_setup",
    "mask_config",
    "needs_bls",
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

    def submit_integers(self, values: npt.NDArray[np.signedinteger]) -> list[Envelope]:
        out: list[Envelope] = self._inner.submit_integers(values)  # type: ignore[attr-defined]
        return self._filter(out)

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
    secure: str,
    sites: list[str],
    dropouts: Mapping[str, str],
    min_sites: int,
    mask: MaskConfig | None = None,
) -> None:
    """Refuse a federation, or a rehearsal, that cannot complete its rounds, saying why.

    Every rehearsed site vanishes in round 1 and never returns, so the round
    it vanishes in must still reach the mode's threshold, and the next round's
    smaller cohort must still be one the mode (and ``min_sites``) accepts.
    The numbers come from the mode itself (``MaskConfig.plan`` of ``mask``,
    the federation's masking settings; default :func:`mask_config`), not a copy.
    """
    cohort = tuple(sorted(sites))
    config = (mask or mask_config()) if secure == "mask" else None
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


def needs_bls(config: FederationConfig) -> bool:
    """Whether the federation's halves need the sites' BLS keys (the neighbourhood round)."""
    return config.secure == "mask" and config.mask.neighbourhood


def bls_roster(signing_keys: Mapping[str, SigningKey]) -> dict[str, tuple[bytes, bytes]]:
    """Each site's BLS public key and proof of possession, as provisioning lists them.

    The neighbourhood round's consistency check is one BLS aggregate over the
    cohort's signatures, checked against these keys; each site derives its
    BLS secret from its own identity key (:func:`securefl.secagg.bls_entry`),
    so only the public pair leaves the party holding the key.
    """
    from securefl.secagg import bls_entry

    return {name: bls_entry(key) for name, key in signing_keys.items() if name != SERVER}


def _with_dropouts(
    base: Callable[[str], AggregationMode], secure: str, dropouts: Mapping[str, str]
) -> Callable[[str], AggregationMode]:
    def site_mode(name: str) -> AggregationMode:
        mode = base(name)
        return _VanishingMode(mode, STAGES[secure], dropouts[name]) if name in dropouts else mode

    return site_mode


def make_setup(
    config: FederationConfig,
    *,
    signing_keys: Mapping[str, bytes],
    roster: Mapping[str, bytes],
    workdir: Path,
    dropouts: Mapping[str, str],
    max_weight: float | None = None,
    distributed: DistributedPlan | None = None,
) -> SecureSetup:
    """Both halves and the model holders for ``config.secure`` in an in-process federation.

    Built by :mod:`securefl.modes`, as a deployment builds them: the server's
    half from public material, each site's from its own key and state folder,
    both from the federation's settings (``config.mask``; ``config.he``'s
    preset and keymaker; ``config.strategy``; ``config.rounds.min_sites``).
    ``max_weight`` is the federation's own, which ``he`` sites pin (they
    refuse a round or an aggregate announcing another). With
    ``mask.neighbourhood`` both halves get the sites' BLS roster
    (:func:`bls_roster`), as a provisioned federation's roster lists it.
    With ``distributed`` (``privacy = "distributed"``, which refuses the
    neighbourhood round) the mask halves are the integer path's.
    """
    secure, federation = config.secure, config.name
    if distributed is not None:
        return _distributed_setup(distributed, signing_keys, roster, workdir, dropouts)
    keys = {name: SigningKey.from_private_bytes(raw) for name, raw in signing_keys.items()}
    if secure == "he" and max_weight is None:
        raise ConfigError("he mode needs the federation's max_weight for its sites")
    common: dict[str, Any] = {
        "identity_keys": roster,
        "federation": federation,
        "strategy": config.strategy,
        "max_weight": max_weight,
        "min_sites": config.rounds.min_sites,
        "mask": config.mask,
        "bls_roster": bls_roster(keys) if needs_bls(config) else None,
    }
    keymaker = library.choose_keymaker(roster, config.he.keymaker) if secure == "he" else None
    secrets, public = (
        _he_keys(config.he.preset, signing_keys, roster, federation, keymaker, workdir / KEYS_DIR)
        if keymaker is not None
        else ({}, None)
    )
    server = library.server_half(secure, he_public_context=public, he_keymaker=keymaker, **common)
    halves = {
        name: library.site_half(
            secure,
            name=name,
            signing_key=key,
            state_dir=workdir / "state" / name,
            he_secret_context=secrets.get(name),
            **common,
        )
        for name, key in keys.items()
        if name != SERVER
    }
    assert server.mode is not None  # he: the public context was given, so no key step
    site_mode: Callable[[str], AggregationMode] = lambda name: halves[name].mode  # noqa: E731
    if dropouts:
        site_mode = _with_dropouts(site_mode, secure, dropouts)
    return SecureSetup(
        site_mode, server.mode, server.global_model, lambda name: halves[name].decoder
    )


def _he_keys(
    preset_name: str,
    signing_keys: Mapping[str, bytes],
    roster: Mapping[str, bytes],
    federation: str,
    maker: str,
    keys: Path,
) -> tuple[dict[str, SecretContext], bytes]:
    """One site (``maker``: the configured keymaker, else the first by name) makes the keys.

    The secret context goes from that site to the others in this process,
    never through the server; each site, and the server, checks the maker's
    signature against the roster before using a context. Between machines the
    keymaker seals it to each site's exchange key instead
    (:mod:`securefl.he._delivery`). Both signed contexts are kept in ``keys``
    (owner-only: the secret one decrypts every aggregate), which is what a
    run continued in the same folder decrypts its history with; keys found
    there are used instead of new ones.
    """
    from securefl.he import SecretContext, preset_by_name

    secret_path, public_path = keys / "he-secret-context.bin", keys / "he-public-context.bin"
    signed_secret, signed_public = read_private(secret_path), read_private(public_path)
    made: SecretContext | None = None
    if signed_secret is None or signed_public is None:
        maker_key = SigningKey.from_private_bytes(signing_keys[maker])
        made = SecretContext.generate(preset_by_name(preset_name))
        signed_secret = made.signed_secret_context(
            federation=federation, maker=maker, signing_key=maker_key, include_secret_key=True
        )
        signed_public = made.signed_public_context(
            federation=federation, maker=maker, signing_key=maker_key
        )
        private_dir(keys)
        write_private(secret_path, signed_secret)
        write_private(public_path, signed_public)
    secrets = {
        name: made
        if name == maker and made is not None
        else SecretContext.from_signed(
            signed_secret, roster=roster, federation=federation, maker=maker
        )
        for name in sorted(library.site_keys(signing_keys))
    }
    return secrets, signed_public


def _distributed_setup(
    plan: DistributedPlan,
    signing_keys: Mapping[str, bytes],
    roster: Mapping[str, bytes],
    workdir: Path,
    dropouts: Mapping[str, str],
) -> SecureSetup:
    """The integer SecAgg+ halves of ``privacy = "distributed"``, in the plan's ring."""
    from securefl.runtime._distributed import distributed_server_mode, distributed_site_mode
    from securefl.runtime.global_model import PlainGlobalModel, decode_plain_model

    halves = {
        name: distributed_site_mode(
            plan,
            name=name,
            signing_key=SigningKey.from_private_bytes(raw),
            identity_keys=roster,
            state_dir=workdir / "state" / name,
        )
        for name, raw in signing_keys.items()
        if name != SERVER
    }
    site_mode: Callable[[str], AggregationMode] = lambda name: halves[name]  # noqa: E731
    if dropouts:
        site_mode = _with_dropouts(site_mode, "mask", dropouts)
    return SecureSetup(
        site_mode,
        distributed_server_mode(plan, roster),
        PlainGlobalModel,
        lambda name: decode_plain_model,
    )
