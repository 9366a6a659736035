"""Mixin for objects that hold secret key material.

.. warning::

   This is hazmat: an easy-to-misuse primitive. Protocol code should use the
   safe APIs in :mod:`securefl.secagg` and :mod:`securefl.reports`.

A secret that can be pickled ends up in a checkpoint, a multiprocessing queue
or a crash dump without anyone deciding it should. Objects using this mixin
refuse pickling, copying and deep-copying; the only way out is an explicit
``export_private(i_understand_this_exports_a_secret=True)``.
"""

from __future__ import annotations

from typing import Any, NoReturn

from securefl.errors import ConfigError

__all__ = ["NoPickle", "require_export_flag"]


class NoPickle:
    """Refuse every pickle and copy protocol entry point."""

    __slots__ = ()

    def _refuse(self) -> NoReturn:
        raise TypeError(
            f"{type(self).__name__} holds a secret key and refuses pickling and copying; "
            "use export_private(i_understand_this_exports_a_secret=True) deliberately"
        )

    def __getstate__(self) -> NoReturn:
        self._refuse()

    def __reduce__(self) -> NoReturn:
        self._refuse()

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        self._refuse()

    def __copy__(self) -> NoReturn:
        self._refuse()

    def __deepcopy__(self, memo: Any) -> NoReturn:
        self._refuse()


def require_export_flag(flag: object) -> None:
    """Raise unless the caller passed exactly ``True`` to acknowledge a secret export."""
    if flag is not True:
        raise ConfigError("exporting a private key needs i_understand_this_exports_a_secret=True")
