"""What each site process of ``simulate --transport https`` trains: the built-in trainer.

Started as ``securefl client --kit KIT --train securefl.simulation.site_process:train``
(the path a hospital's own training function takes) with the site's CSV file
named by :data:`DATA_ENV`. It trains exactly as ``securefl client --data CSV
--label diagnosis`` does (:func:`securefl.deploy.client.train_on_csv`), then
writes the federation's final model into the site's state folder as
safetensors, so that the simulation can report what joining was worth
without the server ever holding the model (it cannot in ``he`` mode).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from securefl.errors import ConfigError

if TYPE_CHECKING:
    from securefl.runtime.site import Site

__all__ = ["DATA_ENV", "FINAL_MODEL", "LABEL", "train"]

#: The environment variable naming this site's CSV file.
DATA_ENV = "SECUREFL_SIMULATE_DATA"
#: The label column of the CSV files ``simulate --transport https`` writes.
LABEL = "diagnosis"
#: Where, in the site's state folder, the final model is written.
FINAL_MODEL = "final_model.safetensors"


def train(site: Site) -> None:
    """Train on the CSV named by ``$SECUREFL_SIMULATE_DATA``; keep the final model."""
    from securefl.deploy.client import train_on_csv
    from securefl.params import save_params
    from securefl.provision.kit import Kit

    data = os.environ.get(DATA_ENV)
    if not data:
        raise ConfigError(f"{DATA_ENV} must name this site's CSV file")
    kit = Kit.load(Path(site.state_dir).parent)  # the state folder lives in the kit
    train_on_csv(site, kit, Path(data), LABEL)
    if site.final_params is not None:
        save_params(site.state_dir / FINAL_MODEL, site.final_params, kit.spec)
