"""Differential privacy at each site: events, accountants, the budget ledger, Opacus.

* :class:`DPEvent` records what was done to a site's data.
* :func:`epsilon` / :func:`calibrate_noise` turn events into ε and back;
  :func:`check_delta` refuses a δ that protects no one (δ >= 1/n).
* :class:`PrivacyLedger` persists events and refuses a round before training
  if it would pass the site's budget, also after a restart.
* :func:`make_private` wraps a user's model, optimizer and loader in Opacus
  DP-SGD with Poisson sampling, with noise and sampling from a CSPRNG
  (:mod:`securefl.dp.noise`).
"""

from securefl.dp.accounting import ACCOUNTANTS, check_delta, epsilon, supports
from securefl.dp.calibration import calibrate_noise
from securefl.dp.events import DPEvent
from securefl.dp.ledger import LedgerEntry, PrivacyLedger, Reservation
from securefl.dp.privatize import PrivateTraining, make_private, planned_event

__all__ = [
    "ACCOUNTANTS",
    "DPEvent",
    "LedgerEntry",
    "PrivacyLedger",
    "PrivateTraining",
    "Reservation",
    "calibrate_noise",
    "check_delta",
    "epsilon",
    "make_private",
    "planned_event",
    "supports",
]
