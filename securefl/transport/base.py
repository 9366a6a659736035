"""The transport seam: move envelopes, know nothing of their payloads.

Every transport (in-memory for tests and ``simulate``, HTTPS for real
parties) passes the same contract tests. A transport serialises envelopes
with :meth:`Envelope.to_bytes` even in memory, so the simulation exercises
exactly the bytes a network would carry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from securefl.wire import Envelope

__all__ = ["Transport"]


class Transport(ABC):
    """One party's endpoint."""

    name: str

    @abstractmethod
    def send(self, envelope: Envelope) -> None:
        """Deliver ``envelope`` to ``envelope.receiver``; raises TransportError if it cannot."""

    @abstractmethod
    def receive(self, timeout: float | None = None) -> Envelope | None:
        """The next envelope addressed to this party, or ``None`` after ``timeout`` seconds."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; further sends raise TransportError."""
