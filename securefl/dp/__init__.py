"""Differential privacy at each site: events, accountants, the budget ledger, Opacus.

* :class:`DPEvent` records what was done to a site's data.
* :func:`epsilon` / :func:`calibrate_noise` turn events into ε and back.
* :class:`PrivacyLedger` persists events and refuses a round before training
  if it would pass the site's budget, also after a restart.
* :func:`make_private` wraps a user's model, optimizer and loader in Opacus
  DP-SGD with Poisson sampling.
"""

from securefl.dp.accounting import ACCOUNTANTS, calibrate_noise, epsilon, supports
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
    "epsilon",
    "make_private",
    "planned_event",
    "supports",
]
