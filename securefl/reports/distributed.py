"""What each site's records of distributed DP promise if secure aggregation fails.

Why a finding and not a footnote: distributed DP's central ε holds only while
the masks hide each site's update, that is against the server and up to c
colluding sites. With more colluders the masks come off, and a site's update
is then protected only by the noise share it added itself: variance
``mu_total / shares`` (standard deviation σ/√(t − c)). Every record carries
``mu_total`` and ``shares``, so the audit states that weaker guarantee next
to the central one, computed with the site's own accountant, for each site
that ran distributed rounds.
"""

from __future__ import annotations

from securefl.dp.events import DPEvent, SkellamEvent
from securefl.errors import SecureFLError
from securefl.reports.findings import Finding, record_finding
from securefl.reports.records import LoadedRecord

__all__ = ["check_share_protection", "share_epsilon"]


def share_epsilon(events: list[DPEvent], *, delta: float, accountant: str) -> float:
    """ε of ``events`` with every distributed round reduced to one site's own share."""
    from securefl.dp.accounting import epsilon

    alone = [e.share_event() if isinstance(e, SkellamEvent) else e for e in events]
    return epsilon(alone, delta=delta, accountant=accountant)


def check_share_protection(ordered: list[LoadedRecord]) -> list[Finding]:
    """One informational finding per site with distributed rounds: ε if masking fails."""
    if not any(r.record["event"]["kind"] == "skellam" for r in ordered):
        return []
    last = ordered[-1].record
    try:
        events = [DPEvent.from_dict(r.record["event"]) for r in ordered]
        central = [e for e in events if isinstance(e, SkellamEvent)]
        alone = share_epsilon(events, delta=last["delta"], accountant=last["accountant"])
    except SecureFLError:
        return []  # the claim checks already report an event that cannot be accounted
    shares = sorted({e.shares for e in central})
    return [
        record_finding(
            "masking_failure_exposure",
            ordered[-1],
            f"{len(central)} distributed round(s): ε = {last['epsilon']:.4g} holds against "
            f"the server and up to c colluding sites; with more colluders each update is "
            f"protected only by this site's own share (variance mu_total / shares, "
            f"shares = t − c = {', '.join(map(str, shares))}): ε = {alone:.4g} at "
            f"δ = {last['delta']:g}",
            "secure aggregation holding (at most c colluders)",
        )
    ]
