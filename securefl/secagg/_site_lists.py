"""What a site checks of every id list the server sends it, before it acts on the list.

Why a module of its own: these checks are where a cheating server's lists
are refused (unknown or repeated ids, this site left out, fewer than t of
its holders, more missing than the round allows), the same for every stage,
and they read best together. :class:`ListChecks` holds what they depend on;
every failure is an :class:`~securefl.errors.AbortError`.
"""

from __future__ import annotations

from collections.abc import Collection

from securefl.errors import AbortError
from securefl.secagg._plan import MaskPlan

__all__ = ["ListChecks", "distinct"]


def distinct(ids: list[str], what: str) -> None:
    """Refuse a list naming one site twice."""
    if len(set(ids)) != len(ids):
        raise AbortError(f"the server listed a site twice in {what}")


class ListChecks:
    """One site's checks of the lists of one round (its plan, cohort, id and threshold)."""

    __slots__ = ("cohort", "holders", "me", "need", "plan")

    def __init__(self, plan: MaskPlan, cohort: tuple[str, ...], me: str, need: int) -> None:
        self.plan, self.cohort, self.me, self.need = plan, cohort, me, need
        self.holders = plan.holders(me)

    def members(self, ids: list[str], what: str, within: set[str] | None = None) -> None:
        """A stage's list: the cohort's (cohort-wide round) or this site's holders' part."""
        if self.plan.local:
            self._neighbourhood(ids, what, within)
            return
        distinct(ids, what)
        pool = set(self.cohort) if within is None else within
        unknown = set(ids) - pool
        if unknown:
            raise AbortError(
                f"the server listed unknown or unexpected ids in {what}: {sorted(unknown)}"
            )
        if self.me not in ids:
            raise AbortError(f"the server left this site out of {what}")
        if len(ids) < self.need or len(self.holders & set(ids)) < self.plan.threshold:
            raise AbortError(f"{what} has {len(ids)} sites, below the threshold")
        missing = len(self.cohort) - len(ids)
        if missing > self.plan.missing_allowed:
            raise AbortError(
                f"{what} misses {missing} of {len(self.cohort)} sites; this round "
                f"allows at most {self.plan.missing_allowed} missing"
            )

    def _neighbourhood(self, ids: list[str], what: str, within: set[str] | None) -> None:
        """A neighbourhood list: only this site's holders, t of them, at most ℓ missing."""
        distinct(ids, what)
        pool = self.holders if within is None else self.holders & within
        strangers = set(ids) - pool
        if strangers:
            raise AbortError(
                f"the server listed non-neighbours or unexpected ids in {what}: {sorted(strangers)}"
            )
        self.local_part(set(ids), what)

    def local_part(self, members: Collection[str], what: str) -> None:
        """This site's holders in ``members``: itself, t of them, at most ℓ neighbours missing."""
        if self.me not in members:
            raise AbortError(f"the server left this site out of {what}")
        present = self.holders & set(members)
        if len(present) < self.plan.threshold:
            raise AbortError(f"{what} has {len(present)} of this site's holders, below t")
        missing = len(self.holders) - len(present)
        if missing > self.plan.local_missing:
            raise AbortError(
                f"{what} misses {missing} of this site's {self.plan.k} neighbours; this round "
                f"allows at most {self.plan.local_missing}"
            )

    def cohort_list(self, ids: list[str], what: str) -> None:
        """The cohort-wide list of the neighbourhood round: no unknown id, at most m missing."""
        distinct(ids, what)
        unknown = set(ids) - set(self.cohort)
        if unknown:
            raise AbortError(f"the server listed unknown ids in {what}: {sorted(unknown)}")
        missing = len(self.cohort) - len(ids)
        if len(ids) < self.need or missing > self.plan.missing_allowed:
            raise AbortError(
                f"{what} misses {missing} of {len(self.cohort)} sites; this round "
                f"allows at most {self.plan.missing_allowed} missing"
            )
