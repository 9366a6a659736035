"""Each secure-aggregation mode's two halves, built from configuration and identity.

Why one place: ``simulate``, ``securefl server`` and ``securefl client`` must
build exactly the same mode from the same settings, and each party only ever
holds its own keys. So the server builds its half from public material (the
roster's identity keys, and in ``he`` mode the maker-signed *public* context),
and a site builds its half from its own name, signing key and state folder
(and in ``he`` mode its secret context). Neither side can ask for the other's
half: that is a configuration error in the mode classes themselves.

A mode needs four things: the site half, the server half, how the server
holds the global model, and how a site reads it. ``plain`` and ``mask`` hold
plaintext parameters on the server (the mask server learns only the sum,
which *is* the next model); ``he`` holds only ciphertexts, so sites decrypt
and replay the strategy.

Nothing here imports torch: the coordinator machine needs no GPU stack.
TenSEAL (``he``) and the mask code are imported only for their mode.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from securefl.aggregation.base import AggregationMode
from securefl.aggregation.plain import PlainMode
from securefl.config import SECURE_MODES, StrategyConfig
from securefl.errors import ConfigError, ProtocolError
from securefl.hazmat.sign import SigningKey
from securefl.runtime.global_model import (
    GlobalModel,
    ModelDecoder,
    PlainGlobalModel,
    decode_plain_model,
)
from securefl.wire import SERVER

if TYPE_CHECKING:
    from securefl.hazmat.keys import KeyPair
    from securefl.he import HEPreset, SecretContext, SiteKeys
    from securefl.runtime.keys import PreRoundKeys
    from securefl.secagg import MaskConfig
    from securefl.wire import Envelope

__all__ = [
    "HE_MIN_SUMMANDS",
    "HESiteKeys",
    "ServerHalf",
    "SiteHalf",
    "choose_keymaker",
    "he_site_keys",
    "mask_config",
    "server_half",
    "site_half",
    "site_keys",
    "site_setup",
]

#: ``securefl.he.MIN_SUMMANDS``, kept here without importing TenSEAL (a test
#: checks the two agree): an he sum of two reveals each update to the other.
HE_MIN_SUMMANDS = 3


@dataclass(frozen=True)
class ServerHalf:
    """What the server runs: the mode's server half and how it holds the global model.

    In ``he`` mode before the keymaker's keys arrived, ``mode`` is ``None`` and
    ``keys`` (the relay) and ``build_mode`` go to the round driver, which
    builds the mode from the signed public context before round 1.
    """

    mode: AggregationMode | None
    global_model: Callable[[npt.NDArray[np.float32]], GlobalModel]
    keys: PreRoundKeys | None = None
    build_mode: Callable[[bytes], AggregationMode] | None = None


@dataclass(frozen=True)
class SiteHalf:
    """What one site runs: the mode's site half and how it reads the server's model bytes."""

    mode: AggregationMode
    decoder: ModelDecoder


def mask_config() -> MaskConfig:
    """The masking settings of a federation file without a [mask] table.

    One definition: :func:`securefl._deploy_config.default_mask`, which the
    federation file loader uses too.
    """
    from securefl._deploy_config import default_mask

    return default_mask()


def site_keys(identity_keys: Mapping[str, bytes]) -> dict[str, bytes]:
    """The sites' identity keys of a roster (the server's own key left out).

    The server is never a cohort member, a context maker nor an upload's
    sender; the modes are given only the sites, as before the server had a key.
    """
    return {name: key for name, key in identity_keys.items() if name != SERVER}


def choose_keymaker(identity_keys: Mapping[str, bytes], configured: str | None = None) -> str:
    """The site that makes the federation's HE keys: the one configured, or the first by name."""
    sites = sorted(site_keys(identity_keys))
    if configured is None:
        if not sites:
            raise ConfigError("he.keymaker: the roster lists no site to make the HE keys")
        return sites[0]
    if configured not in sites:
        raise ConfigError(
            f"he.keymaker = {configured!r} is not a site on the roster; "
            f"name one of {', '.join(sites) or '(none)'}"
        )
    return configured


def _check_secure(secure: str) -> None:
    if secure not in SECURE_MODES:
        raise ConfigError(f"unknown secure mode {secure!r}; use one of {', '.join(SECURE_MODES)}")


def server_half(
    secure: str,
    *,
    identity_keys: Mapping[str, bytes],
    federation: str,
    strategy: StrategyConfig,
    max_weight: float | None,
    min_sites: int,
    mask: MaskConfig | None = None,
    he_public_context: bytes | None = None,
    he_keymaker: str | None = None,
    bls_roster: Mapping[str, tuple[bytes, bytes]] | None = None,
) -> ServerHalf:
    """The server's half of ``secure`` from public material only.

    ``mask`` is the federation's masking settings (default :func:`mask_config`).
    In ``he`` mode ``he_public_context`` is the keymaker-signed public context
    (checked against the roster, with the keymaker pinned: ``he_keymaker`` or
    the first site by name). It arrives from the keymaker site before round 1
    (:mod:`securefl.he._relay`): without it the half holds the relay that
    waits for it, and the driver builds the mode when it comes. ``max_weight`` and
    ``min_sites`` reach the halves through each round's context; ``he``
    refuses to start without a ``max_weight``, which its sites pin.
    ``bls_roster`` (each site's BLS key and proof of possession,
    :func:`securefl.secagg.bls_entry`) is needed by the neighbourhood round.
    """
    _check_secure(secure)
    sites = site_keys(identity_keys)
    if secure == "plain":
        return ServerHalf(PlainMode(), PlainGlobalModel)
    if secure == "mask":
        from securefl.secagg import MaskServerMode

        return ServerHalf(
            MaskServerMode(roster=sites, config=mask or mask_config(), bls_roster=bls_roster),
            PlainGlobalModel,
        )
    if max_weight is None:
        raise ConfigError("he mode needs the federation's max_weight (rounds.max_weight)")
    from securefl.he import HEServerMode, KeyRelay
    from securefl.runtime.encrypted_model import EncryptedAggregatesModel

    maker = choose_keymaker(sites, he_keymaker)

    def build(public: bytes) -> AggregationMode:
        return HEServerMode(public, roster=sites, federation=federation, maker=maker)

    def holder(theta0: npt.NDArray[np.float32]) -> GlobalModel:
        return EncryptedAggregatesModel(theta0, strategy)

    if he_public_context is not None:
        return ServerHalf(build(he_public_context), holder)
    relay = KeyRelay(federation=federation, identity_keys=sites, keymaker=maker)
    return ServerHalf(None, holder, keys=relay, build_mode=build)


def site_half(
    secure: str,
    *,
    name: str,
    signing_key: SigningKey,
    identity_keys: Mapping[str, bytes],
    state_dir: str | Path,
    federation: str,
    strategy: StrategyConfig,
    max_weight: float | None,
    min_sites: int,
    mask: MaskConfig | None = None,
    he_secret_context: SecretContext | None = None,
    bls_roster: Mapping[str, tuple[bytes, bytes]] | None = None,
) -> SiteHalf:
    """One site's half of ``secure`` from its own name, key and state folder.

    ``state_dir`` is the site's state folder (the mask round log lives there as
    ``mask.json``). ``max_weight`` and ``min_sites`` are the federation's own
    settings, which ``he`` sites pin (they refuse a round or an aggregate
    announcing others); ``he_secret_context`` is the federation's secret
    context, made here (the keymaker) or opened from the keymaker's sealed
    bundle (:func:`securefl.he._delivery.open_bundle`).
    """
    _check_secure(secure)
    sites = site_keys(identity_keys)
    if not isinstance(signing_key, SigningKey):
        raise ConfigError("signing_key must be the site's securefl.hazmat.sign.SigningKey")
    if sites.get(name) != signing_key.public_bytes():
        raise ConfigError(f"the roster's identity key of {name!r} does not match its signing key")
    if secure == "plain":
        return SiteHalf(PlainMode(), decode_plain_model)
    if secure == "mask":
        from securefl.secagg import MaskSiteMode

        mode = MaskSiteMode(
            site_id=name,
            signing_key=signing_key,
            roster=sites,
            state_path=Path(state_dir) / "mask.json",
            config=mask or mask_config(),
            bls_roster=bls_roster,
        )
        return SiteHalf(mode, decode_plain_model)
    if max_weight is None:
        raise ConfigError("he mode needs the federation's max_weight (rounds.max_weight)")
    if he_secret_context is None:
        raise ConfigError("he mode: a site's half needs the federation's secret HE context")
    from securefl.he import HESiteMode
    from securefl.runtime.encrypted_model import EncryptedModelDecoder

    he_mode = HESiteMode(
        he_secret_context, site_id=name, signing_key=signing_key, max_weight=max_weight
    )
    decoder = EncryptedModelDecoder(
        he_mode, roster=sites, federation=federation, strategy=strategy, min_sites=min_sites
    )
    return SiteHalf(he_mode, decoder)


class HESiteKeys:
    """A site's he key step (:class:`securefl.runtime.PreRoundSiteKeys`): keys -> its half.

    The keymaker makes the keys at hello and builds its half at once; every
    other site builds its half from the bundle the server relays.

    The half is built once: it holds the history the site applied (the
    decoder's hash chain) and the rounds it took part in. A server that
    re-sends the bundle mid-run gets the same half back, so it cannot reset
    what the site compares a rewritten history against; a bundle of another
    key set once the site holds one is refused.
    """

    def __init__(self, keys: SiteKeys, build: Callable[[SecretContext], SiteHalf]) -> None:
        self._keys = keys
        self._build = build
        self.stages = keys.stages
        self._half: SiteHalf | None = None
        self._key_id = b""

    def hello(self) -> tuple[list[Envelope], SiteHalf | None]:
        out, secret = self._keys.hello()
        return out, self._half_for(secret) if secret is not None else None

    def handle(self, env: Envelope) -> SiteHalf:
        return self._half_for(self._keys.handle(env))

    def _half_for(self, secret: SecretContext) -> SiteHalf:
        if self._half is None:
            self._half, self._key_id = self._build(secret), secret.key_id
        elif secret.key_id != self._key_id:
            raise ProtocolError(
                "the server sent other he keys than the ones this site holds; refusing them"
            )
        return self._half


def he_site_keys(
    *,
    name: str,
    signing_key: SigningKey,
    exchange_key: KeyPair,
    identity_keys: Mapping[str, bytes],
    exchange_keys: Mapping[str, bytes],
    state_dir: str | Path,
    federation: str,
    strategy: StrategyConfig,
    max_weight: float,
    min_sites: int,
    keymaker: str | None = None,
    preset: HEPreset | None = None,
) -> HESiteKeys:
    """One site's he key step, from its own keys and the pinned roster's identity and exchange keys.

    ``keymaker`` is the federation file's ``[he] keymaker`` (default: the
    first site by name); ``preset`` is what the keymaker makes (others take
    the maker's, checked against its signed public context).
    """
    from securefl.he import DEFAULT_PRESET, SiteKeys
    from securefl.he._keymaker_store import KEYMAKER_FILE

    keys = SiteKeys(
        name=name,
        federation=federation,
        keymaker=choose_keymaker(identity_keys, keymaker),
        identity_keys=site_keys(identity_keys),
        exchange_keys=exchange_keys,
        signing_key=signing_key,
        exchange_key=exchange_key,
        preset=preset or DEFAULT_PRESET,
        state_path=Path(state_dir) / KEYMAKER_FILE,
    )

    def build(secret: SecretContext) -> SiteHalf:
        return site_half(
            "he",
            name=name,
            signing_key=signing_key,
            identity_keys=identity_keys,
            state_dir=state_dir,
            federation=federation,
            strategy=strategy,
            max_weight=max_weight,
            min_sites=min_sites,
            he_secret_context=secret,
        )

    return HESiteKeys(keys, build)


def site_setup(
    secure: str,
    *,
    name: str,
    signing_key: SigningKey,
    identity_keys: Mapping[str, bytes],
    state_dir: str | Path,
    federation: str,
    strategy: StrategyConfig,
    max_weight: float | None,
    min_sites: int,
    mask: MaskConfig | None = None,
    exchange_key: KeyPair | None = None,
    exchange_keys: Mapping[str, bytes] | None = None,
    he_keymaker: str | None = None,
    he_preset: HEPreset | None = None,
    bls_roster: Mapping[str, tuple[bytes, bytes]] | None = None,
) -> tuple[SiteHalf | None, HESiteKeys | None]:
    """What a deployed site passes to :meth:`securefl.runtime.Site.for_federation`.

    ``plain`` and ``mask``: its half now, no key step (the neighbourhood round
    needs ``bls_roster``). ``he``: no half yet and the key step
    (:func:`he_site_keys`), which needs the site's exchange key and the pinned
    roster's exchange keys.
    """
    if secure != "he":
        half = site_half(
            secure,
            name=name,
            signing_key=signing_key,
            identity_keys=identity_keys,
            state_dir=state_dir,
            federation=federation,
            strategy=strategy,
            max_weight=max_weight,
            min_sites=min_sites,
            mask=mask,
            bls_roster=bls_roster,
        )
        return half, None
    if exchange_key is None or exchange_keys is None:
        raise ConfigError("he mode: a site needs its exchange key and the roster's exchange keys")
    if max_weight is None:
        raise ConfigError("he mode needs the federation's max_weight (rounds.max_weight)")
    keys = he_site_keys(
        name=name,
        signing_key=signing_key,
        exchange_key=exchange_key,
        identity_keys=identity_keys,
        exchange_keys=exchange_keys,
        state_dir=state_dir,
        federation=federation,
        strategy=strategy,
        max_weight=max_weight,
        min_sites=min_sites,
        keymaker=he_keymaker,
        preset=he_preset,
    )
    return None, keys
