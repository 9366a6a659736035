"""Configuration: frozen, keyword-only dataclasses validated on construction.

Why: a federation's settings are agreed on by several hospitals, so a value
that is unsafe (a budget of zero, δ ≥ 1, an unknown mode) must be refused
when it is written down, not discovered halfway through training. Every
field has one meaning; ``None`` is used only where it says "calibrate this
for me". TOML files load through :func:`load_federation`, and every error
names the key and the file.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from securefl._deploy_config import (
    DataConfig,
    HEConfig,
    ModelConfig,
    PKIConfig,
    ServerConfig,
    build_mask,
    default_mask,
)
from securefl._privacy_config import DistributedConfig, check_privacy
from securefl.errors import ConfigError

if TYPE_CHECKING:
    from securefl.secagg import MaskConfig

__all__ = [
    "ACCOUNTANTS",
    "SECURE_MODES",
    "STRATEGIES",
    "DPConfig",
    "DistributedConfig",
    "FederationConfig",
    "HEConfig",
    "ModelConfig",
    "PKIConfig",
    "RoundConfig",
    "ServerConfig",
    "SiteSpec",
    "StrategyConfig",
    "TrainConfig",
    "check_delta",
    "check_site_names",
    "load_federation",
]

SECURE_MODES = ("plain", "mask", "he")
STRATEGIES = ("fedavg", "fedavgm", "fedprox", "fedadam")
ACCOUNTANTS = ("prv", "rdp", "pld")


def _positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")


def _fraction(name: str, value: float) -> None:
    """A number in [0, 1): booleans and strings are refused, not coerced."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}")


def _flag(name: str, value: bool) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")


def _positive_int(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be an integer ≥ 1, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class DPConfig:
    """A site's DP-SGD settings and privacy budget.

    ``epsilon`` and ``delta`` are the *total* budget over all rounds; the noise
    multiplier is calibrated from them unless given explicitly.
    ``batch_size`` is the expected Poisson batch (sample rate = batch / n).
    """

    epsilon: float = 1.0
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    noise_multiplier: float | None = None
    batch_size: int = 64
    accountant: str = "prv"
    secure_rng: bool = True

    def __post_init__(self) -> None:
        _positive("dp.epsilon", self.epsilon)
        _flag("dp.secure_rng", self.secure_rng)
        _positive("dp.delta", self.delta)
        if self.delta >= 1:
            raise ConfigError(f"dp.delta must be < 1, got {self.delta!r}")
        _positive("dp.max_grad_norm", self.max_grad_norm)
        if self.noise_multiplier is not None:
            _positive("dp.noise_multiplier", self.noise_multiplier)
        _positive_int("dp.batch_size", self.batch_size)
        if self.accountant not in ACCOUNTANTS:
            raise ConfigError(
                f"dp.accountant must be one of {ACCOUNTANTS}, got {self.accountant!r}"
            )


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Local training at a site in one round."""

    local_epochs: int = 1
    learning_rate: float = 0.5
    momentum: float = 0.0

    def __post_init__(self) -> None:
        _positive_int("train.local_epochs", self.local_epochs)
        _positive("train.learning_rate", self.learning_rate)
        _fraction("train.momentum", self.momentum)


@dataclass(frozen=True, kw_only=True)
class RoundConfig:
    """When rounds run and when training stops.

    ``patience``: stop when the validation metric has not improved for this
    many rounds (``None`` = run all ``max_rounds``). ``min_sites``: a round
    with fewer surviving sites is abandoned, so no single update is isolated.
    ``max_weight``: the largest weight (example count) a site may claim; when
    set, each site refuses a round announcing another (``he`` sites always
    pin it: it scales what they accept), ``None`` leaves it to the server.
    """

    max_rounds: int = 10
    patience: int | None = None
    min_sites: int = 2
    stage_timeout_seconds: float = 600.0
    max_weight: float | None = None

    def __post_init__(self) -> None:
        _positive_int("rounds.max_rounds", self.max_rounds)
        if self.patience is not None:
            _positive_int("rounds.patience", self.patience)
        _positive_int("rounds.min_sites", self.min_sites)
        if self.min_sites < 2:
            raise ConfigError(
                "rounds.min_sites must be at least 2: a round of one site would release "
                "that site's update alone"
            )
        _positive("rounds.stage_timeout_seconds", self.stage_timeout_seconds)
        if self.max_weight is not None:
            _positive("rounds.max_weight", self.max_weight)


@dataclass(frozen=True, kw_only=True)
class StrategyConfig:
    """How the server turns the average update into the next global model.

    ``server_lr`` is the server's step size (``None``: the strategy's own
    default, 1.0 for FedAvg, FedAvgM and FedProx, 0.1 for FedAdam);
    ``momentum`` is the decay of the first moment (FedAvgM's momentum, FedAdam's
    β₁); ``beta2`` and ``tau`` are FedAdam's second-moment decay and
    adaptivity floor; ``proximal_mu`` is FedProx's client-side proximal weight.
    """

    name: str = "fedavg"
    server_lr: float | None = None
    momentum: float = 0.9
    beta2: float = 0.99
    tau: float = 0.01
    proximal_mu: float = 0.01

    @property
    def effective_server_lr(self) -> float:
        """``server_lr``, or the strategy's default when it is ``None``."""
        if self.server_lr is not None:
            return self.server_lr
        return 0.1 if self.name == "fedadam" else 1.0

    def __post_init__(self) -> None:
        if self.name not in STRATEGIES:
            raise ConfigError(f"strategy.name must be one of {STRATEGIES}, got {self.name!r}")
        if self.server_lr is not None:
            _positive("strategy.server_lr", self.server_lr)
        _fraction("strategy.momentum", self.momentum)
        _fraction("strategy.beta2", self.beta2)
        _positive("strategy.tau", self.tau)
        if (
            isinstance(self.proximal_mu, bool)
            or not isinstance(self.proximal_mu, (int, float))
            or not 0 <= self.proximal_mu < math.inf
        ):
            raise ConfigError(
                f"strategy.proximal_mu must be a finite number ≥ 0, got {self.proximal_mu!r}"
            )


@dataclass(frozen=True, kw_only=True)
class SiteSpec:
    """One site of a federation as the plan knows it (no data here)."""

    name: str
    num_examples: int | None = None
    epsilon: float | None = None

    def __post_init__(self) -> None:
        check_site_names([self.name], where="sites")
        if self.num_examples is not None:
            _positive_int(f"sites.{self.name}.num_examples", self.num_examples)
        if self.epsilon is not None:
            _positive(f"sites.{self.name}.epsilon", self.epsilon)


def check_site_names(names: Sequence[object], *, where: str) -> tuple[str, ...]:
    """One rule for site names wherever they are written (CLI, TOML, Python API).

    A name becomes a file name (``records/<name>.jsonl``) and a roster key, so
    it is letters, digits, '-' and '_' only, at most 64 characters; two names
    that differ only in case are one name (on a case-insensitive disk they
    would share a record file). ``where`` names the setting in the error.
    """
    seen: dict[str, str] = {}
    for name in names:
        if (
            not isinstance(name, str)
            or not 0 < len(name) <= 64
            or not name.replace("-", "").replace("_", "").isalnum()
        ):
            raise ConfigError(
                f"{where}: site name {name!r} must be 1 to 64 letters, digits, '-' or '_'"
            )
        if name.casefold() in seen:
            twin = seen[name.casefold()]
            same = "twice" if twin == name else f"twice ({twin!r} and {name!r} differ only in case)"
            raise ConfigError(f"{where}: site name {twin!r} appears {same}; give each site its own")
        seen[name.casefold()] = name
    return tuple(seen.values())


def check_delta(delta: float, *, num_examples: int | None = None, name: str = "dp.delta") -> float:
    """Refuse a δ that makes (ε, δ)-DP meaningless; return it as a float.

    δ is the probability that the ε guarantee fails. It must be in (0, 1),
    and, for a site with n records, below 1/n: at δ >= 1/n a mechanism that
    publishes one randomly chosen record in full is (0, δ)-DP, so such a δ
    cannot protect anyone. Give ``num_examples`` as the number of records of
    the smallest site (or of this site). ``name`` is the setting named in the
    error.

    Raises:
        ConfigError: δ not a number in (0, 1), or not below 1/``num_examples``.
    """
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0.0 < delta < 1.0:
        raise ConfigError(f"{name} must be a number in (0, 1), got {delta!r}")
    if num_examples is not None:
        if isinstance(num_examples, bool) or not isinstance(num_examples, int) or num_examples < 1:
            raise ConfigError(
                f"the number of records must be an integer >= 1, got {num_examples!r}"
            )
        if delta >= 1.0 / num_examples:
            raise ConfigError(
                f"{name} = {delta:g} is not below 1/n = {1.0 / num_examples:.3g} for a site with "
                f"n = {num_examples} records: at such a δ one record may be published in full; "
                f"set {name} well below 1/n (for example 1e-5)"
            )
    return float(delta)


@dataclass(frozen=True, kw_only=True)
class FederationConfig:
    """Everything the parties of one federation agree on.

    ``secure`` defaults to ``"mask"``: the server learns only the sum unless
    the federation asks for ``"plain"`` (which says loudly that it hides
    nothing). ``dp.delta`` must be below 1/n of every site whose
    ``num_examples`` is known; each site checks its own n again when training
    starts. ``server``, ``pki``, ``mask``, ``he`` and ``model`` are what a
    deployment over the network needs (``securefl provision``); ``simulate``
    reads ``mask``, ``he`` and ``model`` too.
    """

    name: str = "securefl"
    secure: str = "mask"
    privacy: str = "local"
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    dp: DPConfig = field(default_factory=DPConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    rounds: RoundConfig = field(default_factory=RoundConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    sites: tuple[SiteSpec, ...] = ()
    server: ServerConfig = field(default_factory=ServerConfig)
    pki: PKIConfig = field(default_factory=PKIConfig)
    mask: MaskConfig = field(default_factory=default_mask)
    he: HEConfig = field(default_factory=HEConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        if self.secure not in SECURE_MODES:
            raise ConfigError(
                f"federation.secure must be one of {SECURE_MODES}, got {self.secure!r}"
            )
        check_privacy(
            self.privacy,
            self.secure,
            self.distributed,
            self.train.local_epochs,
            strategy=self.strategy.name,
        )
        # privacy = "distributed" with mask.neighbourhood = true is allowed: the
        # neighbourhood round proves the cohort-wide consistency count (one BLS
        # aggregate), so its plan's colluders_tolerated is the cohort-wide one, and
        # every site refuses a round withstanding fewer than the noise shares are
        # sized for (securefl.runtime._distributed.DistributedPlan.share)
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"federation.name must be a non-empty string, got {self.name!r}")
        names = check_site_names([s.name for s in self.sites], where="sites")
        for spec in self.sites:
            if spec.num_examples is not None:  # δ ≥ 1/n: one whole record may be published
                check_delta(
                    self.dp.delta,
                    num_examples=spec.num_examples,
                    name=f"dp.delta of site {spec.name!r}",
                )
        if self.he.keymaker is not None and self.sites and self.he.keymaker not in names:
            raise ConfigError(
                f"he.keymaker {self.he.keymaker!r} is not a site of the federation "
                f"({', '.join(sorted(names))})"
            )

    @property
    def he_keymaker(self) -> str | None:
        """The site that makes the HE secret context: ``he.keymaker``, else the first by name."""
        if self.he.keymaker is not None:
            return self.he.keymaker
        return min((s.name for s in self.sites), default=None)

    def site_dp(self, site: str) -> DPConfig:
        """The DP settings of one site (its own ε if it overrides the default)."""
        for spec in self.sites:
            if spec.name == site and spec.epsilon is not None:
                return replace(self.dp, epsilon=spec.epsilon)
        return self.dp


_T = TypeVar("_T")


def _build(cls: type[_T], table: Any, prefix: str, source: str) -> _T:
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{prefix}] must be a table")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown key '{prefix}.{unknown[0]}'")
    try:
        return cls(**table)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"{source}: [{prefix}] {exc}") from None


def _site(table: Any, source: str) -> SiteSpec:
    if not isinstance(table, dict) or "name" not in table:
        raise ConfigError(f"{source}: every [[sites]] entry needs a 'name'")
    return _build(SiteSpec, table, "sites", source)


def _model(table: Any, source: str) -> ModelConfig:
    if isinstance(table, dict) and "factory" in table and {"features", "classes"} & set(table):
        raise ConfigError(
            f"{source}: model.factory builds the model itself; remove model.features and "
            "model.classes"
        )
    return _build(ModelConfig, table, "model", source)


def _data(table: Any, path: Path) -> DataConfig:
    """[data]; a relative schema path is relative to the federation file, not the cwd."""
    config = _build(DataConfig, table, "data", str(path))
    if config.schema is None or Path(config.schema).is_absolute():
        return config
    return DataConfig(schema=str(path.parent / config.schema))


def load_federation(path: str | Path) -> FederationConfig:
    """Load a federation file; every error names the key and the file."""
    path = Path(path)
    source = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    top = dict(data.pop("federation", {}))
    allowed = {
        *("dp", "train", "rounds", "strategy", "sites"),
        *("server", "pki", "mask", "he", "model", "data", "distributed"),
    }
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{source}: unknown table [{unknown[0]}]")
    extra = sorted(set(top) - {"name", "secure", "privacy"})
    if extra:
        raise ConfigError(f"{source}: unknown key 'federation.{extra[0]}'")
    sites_raw = data.get("sites", [])
    if not isinstance(sites_raw, list):
        raise ConfigError(f"{source}: sites must be an array of tables ([[sites]])")
    try:
        return FederationConfig(
            name=top.get("name", "securefl"),
            secure=top.get("secure", "mask"),
            privacy=top.get("privacy", "local"),
            distributed=_build(
                DistributedConfig, data.get("distributed", {}), "distributed", source
            ),
            dp=_build(DPConfig, data.get("dp", {}), "dp", source),
            train=_build(TrainConfig, data.get("train", {}), "train", source),
            rounds=_build(RoundConfig, data.get("rounds", {}), "rounds", source),
            strategy=_build(StrategyConfig, data.get("strategy", {}), "strategy", source),
            sites=tuple(_site(s, source) for s in sites_raw),
            server=_build(ServerConfig, data.get("server", {}), "server", source),
            pki=_build(PKIConfig, data.get("pki", {}), "pki", source),
            mask=build_mask(data.get("mask", {}), source),
            he=_build(HEConfig, data.get("he", {}), "he", source),
            model=_model(data.get("model", {}), source),
            data=_data(data.get("data", {}), path),
        )
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(source) else f"{source}: {msg}") from None
