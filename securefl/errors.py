"""Every error securefl raises, under one base class.

Callers catch :class:`SecureFLError` to handle anything of ours; the CLI maps
each class to an exit code, so a user sees one clear line instead of a
traceback. Cryptographic failures are deliberately opaque
(:class:`IntegrityError` raised ``from None``): telling an attacker *which*
check failed helps the attacker, not the user.

::

    SecureFLError
    ├── ConfigError               a setting is invalid or unsafe (refused, never warned)
    ├── DataError                 input data is missing, malformed or non-numeric
    ├── UnsupportedModelError     Opacus cannot make this model private as it is
    ├── BudgetExhaustedError      this round would pass the site's privacy budget
    ├── ProtocolError             a message arrived out of order, or a peer misbehaved
    │   └── AbortError            a site refuses to continue (cheating server, too few survivors)
    ├── IntegrityError            a signature, MAC or hash did not verify (opaque)
    ├── OverflowRefusedError      a quantized sum could wrap around the ring
    ├── WireError                 bytes that are not a valid message (size, version, type)
    └── TransportError            a message could not be delivered in time
"""

from __future__ import annotations

__all__ = [
    "AbortError",
    "BudgetExhaustedError",
    "ConfigError",
    "DataError",
    "IntegrityError",
    "OverflowRefusedError",
    "ProtocolError",
    "SecureFLError",
    "TransportError",
    "UnsupportedModelError",
    "WireError",
]


class SecureFLError(Exception):
    """Base of every securefl error. ``exit_code`` is what the CLI exits with."""

    exit_code: int = 1


class ConfigError(SecureFLError, ValueError):
    """A configuration value is invalid or unsafe; the message names the key."""

    exit_code = 2


class DataError(SecureFLError, ValueError):
    """Input data cannot be used; the message names the file and line when known."""

    exit_code = 3


class UnsupportedModelError(SecureFLError, TypeError):
    """Opacus cannot compute per-sample gradients for this model as it is."""

    exit_code = 2


class BudgetExhaustedError(SecureFLError):
    """Training this round would spend more privacy than the site allows.

    Raised *before* any training starts, and again after a restart: the ledger
    is on disk, so the refusal survives the process.
    """

    exit_code = 4


class ProtocolError(SecureFLError):
    """A message arrived at the wrong stage, or a peer deviated from the protocol."""

    exit_code = 5


class AbortError(ProtocolError):
    """A site stops taking part in a round to protect its own update."""


class IntegrityError(SecureFLError):
    """A signature, authentication tag or hash did not verify.

    Deliberately says nothing more: the detail would help an attacker.
    """

    exit_code = 6


class OverflowRefusedError(SecureFLError, ValueError):
    """A quantized sum could wrap around the ring; the configuration is refused."""

    exit_code = 2


class WireError(SecureFLError, ValueError):
    """Bytes that do not decode to a valid message of a known version and size."""

    exit_code = 5


class TransportError(SecureFLError):
    """A message could not be sent or was not received in time."""

    exit_code = 7
