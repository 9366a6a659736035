"""The ``[distributed]`` table: the public numbers of distributed DP every party agrees on.

Why a table of its own: with ``privacy = "distributed"`` a round is one DP-SGD
step over the union of the sites' Poisson samples, and the server divides the
unmasked integer sum by a *public* expected batch size. Per-site batch sizes
stay private (the integer path has no weight slot), so the divisor cannot be
measured; it is declared here, once, and every party (the server and each
site) reads the same file. Each site derives its sample rate, its noise share
and its ring from its own copy and refuses a server announcing anything else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from securefl.errors import ConfigError

__all__ = ["PRIVACY_MODELS", "DistributedConfig", "check_privacy"]

#: ``local``: each site runs DP-SGD with all its noise; ``distributed``: shares of one noise.
PRIVACY_MODELS = ("local", "distributed")


@dataclass(frozen=True, kw_only=True)
class DistributedConfig:
    """Public settings of distributed DP (read only with ``privacy = "distributed"``).

    ``sample_rate`` is q, the Poisson rate at which every site samples its
    records each round. ``records`` is the federation's declared total of
    training records: the expected batch of a round is q × records, the
    number the server divides the sum by (the normalisation central DP-SGD
    uses). ``scale_bits`` sets the integer scale γ = 2^scale_bits per unit
    of gradient; choose it so that γ × dp.max_grad_norm is large against
    √(number of parameters), the rounding's share of the sensitivity.
    """

    sample_rate: float | None = None
    records: int | None = None
    scale_bits: int = 12

    def __post_init__(self) -> None:
        q = self.sample_rate
        if q is not None and (
            isinstance(q, bool)
            or not isinstance(q, int | float)
            or not math.isfinite(q)
            or not 0 < q <= 1
        ):
            raise ConfigError(f"distributed.sample_rate must be in (0, 1], got {q!r}")
        r = self.records
        if r is not None and (isinstance(r, bool) or not isinstance(r, int) or r < 1):
            raise ConfigError(f"distributed.records must be an integer >= 1, got {r!r}")
        b = self.scale_bits
        if isinstance(b, bool) or not isinstance(b, int) or not 0 <= b <= 24:
            raise ConfigError(f"distributed.scale_bits must be an integer in 0..24, got {b!r}")

    @property
    def scale(self) -> float:
        """γ, integers per unit of gradient (a power of two, so scaling is exact)."""
        return float(2**self.scale_bits)

    @property
    def expected_batch_size(self) -> float:
        """q × records: the public divisor of every round's sum."""
        if self.sample_rate is None or self.records is None:
            raise ConfigError(
                'privacy = "distributed" needs distributed.sample_rate and distributed.records'
            )
        return self.sample_rate * self.records


def check_privacy(
    privacy: str,
    secure: str,
    distributed: DistributedConfig,
    local_epochs: int,
    strategy: str = "fedavg",
) -> None:
    """``privacy = "distributed"`` needs masking, its public numbers and one step a round.

    FedProx is refused with it: its proximal pull acts on a site's local
    steps, and a distributed round takes none (the server takes the step).
    """
    if privacy not in PRIVACY_MODELS:
        raise ConfigError(f"federation.privacy must be one of {PRIVACY_MODELS}, got {privacy!r}")
    if privacy == "local":
        return
    if secure != "mask":
        raise ConfigError(
            'federation.privacy = "distributed" needs secure = "mask" (the sum is unmasked '
            f"in the integers), got secure = {secure!r}"
        )
    distributed.expected_batch_size  # noqa: B018 (raises without q and records)
    if local_epochs != 1:
        raise ConfigError(
            'federation.privacy = "distributed" runs one DP-SGD step per round; set '
            f"train.local_epochs = 1 (got {local_epochs})"
        )
    if strategy == "fedprox":
        raise ConfigError(
            'strategy.name = "fedprox" has no effect with federation.privacy = "distributed" '
            "(a site takes no local steps to pull); use fedavg, fedavgm or fedadam"
        )
