"""Transports move envelopes between parties."""

from securefl.transport.base import Transport
from securefl.transport.memory import MemoryHub, MemoryTransport

__all__ = ["MemoryHub", "MemoryTransport", "Transport"]
