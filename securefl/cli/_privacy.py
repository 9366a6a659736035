"""``simulate --privacy``: the privacy model of a simulated federation, filled from its data.

Why apart from the command: with ``privacy = "distributed"`` the public
numbers every party agrees on (``[distributed]`` records and sample rate)
depend on the data, which ``simulate`` loads after the options are read. A
federation file that says ``privacy = "distributed"`` already carries them;
the command-line option fills what the file leaves out from the bundled or
given data: ``records`` is the sites' total training records, and the sample
rate defaults to 1 (every record each round). At a given ε and the same
epochs, a smaller q with proportionally more rounds needs more noise per
epoch (the Skellam charge is closest to the Gaussian's without
subsampling), and on the bundled data no q < 1 measured was a clear
improvement on q = 1 (bench/privacy_utility.py; docs/distributed_dp.md,
"Utility").
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from securefl.config import DistributedConfig, FederationConfig
from securefl.errors import ConfigError

if TYPE_CHECKING:
    from securefl.data.federations import FederatedData

__all__ = ["DEFAULT_SAMPLE_RATE", "with_privacy"]

#: q of ``simulate --privacy distributed`` when neither the option nor the file gives one.
DEFAULT_SAMPLE_RATE = 1.0


def with_privacy(
    config: FederationConfig,
    data: FederatedData,
    *,
    privacy: str | None,
    sample_rate: float | None,
    https: bool = False,
) -> FederationConfig:
    """``config`` under the privacy model asked for (``None``: the file's, or local)."""
    chosen = privacy or config.privacy
    if chosen == "distributed" and https:
        raise ConfigError(
            "--privacy distributed runs in this process for now; use --transport memory"
        )
    if chosen == "local":
        if sample_rate is not None:
            raise ConfigError("--sample-rate only applies with --privacy distributed")
        return replace(config, privacy="local")
    dd = config.distributed
    records = sum(s.num_examples for s in data.sites)
    if dd.records is not None and dd.records != records:
        raise ConfigError(
            f"distributed.records = {dd.records} in the federation file, but the sites hold "
            f"{records} training records; set it to {records}"
        )
    rate = sample_rate if sample_rate is not None else dd.sample_rate or DEFAULT_SAMPLE_RATE
    return replace(
        config,
        privacy="distributed",
        distributed=DistributedConfig(sample_rate=rate, records=records, scale_bits=dd.scale_bits),
    )
