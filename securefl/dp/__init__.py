"""Differential privacy at each site: events, accountants, the budget ledger, Opacus.

* :class:`DPEvent` records what was done to a site's data; :class:`SkellamEvent`
  records a round of distributed DP (a share of Skellam noise per site),
  accounted with :mod:`securefl.dp.skellam_accounting`.
* :func:`epsilon` / :func:`calibrate_noise` turn events into ε and back;
  :func:`check_delta` refuses a δ that protects no one (δ >= 1/n).
* :class:`PrivacyLedger` persists events and refuses a round before training
  if it would pass the site's budget, also after a restart.
* :func:`make_private` wraps a user's model, optimizer and loader in Opacus
  DP-SGD with Poisson sampling, with noise and sampling from a CSPRNG
  (:mod:`securefl.dp.noise`). It (and torch) is imported on first use:
  the events, accountants and ledger import without torch.
"""

from securefl.dp.accounting import ACCOUNTANTS, check_delta, epsilon, supports
from securefl.dp.calibration import calibrate_noise
from securefl.dp.calibration_many import calibrate_noise_many
from securefl.dp.events import DPEvent, SkellamEvent
from securefl.dp.ledger import LedgerEntry, PrivacyLedger, Reservation

TYPE_CHECKING = False
if TYPE_CHECKING:  # imported on first use: they need torch, which a server never loads
    from securefl.dp.privatize import PrivateTraining, make_private, planned_event

_TORCH_NAMES = frozenset({"PrivateTraining", "make_private", "planned_event"})


def __getattr__(name: str) -> object:
    """The Opacus integration, imported with torch on first use."""
    if name in _TORCH_NAMES:
        from securefl.dp import privatize

        return getattr(privatize, name)
    raise AttributeError(f"module 'securefl.dp' has no attribute {name!r}")


__all__ = [
    "ACCOUNTANTS",
    "DPEvent",
    "LedgerEntry",
    "PrivacyLedger",
    "PrivateTraining",
    "Reservation",
    "SkellamEvent",
    "calibrate_noise",
    "calibrate_noise_many",
    "check_delta",
    "epsilon",
    "make_private",
    "planned_event",
    "supports",
]
