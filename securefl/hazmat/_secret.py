"""Base classes for objects that hold secret key material.

.. warning::

   This is hazmat: an easy-to-misuse primitive. Protocol code should use the
   safe APIs in :mod:`securefl.secagg` and :mod:`securefl.reports`.

A secret that can be pickled ends up in a checkpoint, a multiprocessing queue
or a crash dump without anyone deciding it should. Objects using this mixin
refuse pickling, copying and deep-copying; the only way out is an explicit
``export_private(i_understand_this_exports_a_secret=True)``.

:class:`RawPrivateKey` is the one wrapper around a pyca private key that
:class:`~securefl.hazmat.keys.KeyPair` (X25519) and
:class:`~securefl.hazmat.sign.SigningKey` (Ed25519) share, so the type check,
the raw-length check, the export gate and the secret-free ``repr`` are written
(and reviewed) once.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, NoReturn, Self, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from securefl.errors import ConfigError

__all__ = ["NoPickle", "RawPrivateKey", "require_export_flag"]

_K = TypeVar("_K", X25519PrivateKey, Ed25519PrivateKey)


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


class RawPrivateKey(NoPickle, Generic[_K]):
    """A pyca private key whose raw form is a fixed number of bytes. Refuses pickling.

    A subclass names the pyca class it wraps (``_key_type``), the algorithm for
    error messages (``_algorithm``) and the raw private length
    (``_private_len``); it adds only what is specific to its algorithm.
    """

    __slots__ = ("_private",)

    _key_type: type[_K]
    _algorithm: ClassVar[str]
    _private_len: ClassVar[int]

    def __init__(self, private: _K) -> None:
        if not isinstance(private, self._key_type):
            raise ConfigError(f"{type(self).__name__} wraps an {self._algorithm}PrivateKey")
        self._private: _K = private

    @classmethod
    def generate(cls) -> Self:
        """A fresh key from the OS CSPRNG (through OpenSSL)."""
        return cls(cls._key_type.generate())

    @classmethod
    def from_private_bytes(cls, data: bytes) -> Self:
        """Rebuild the key from its raw private bytes; a wrong length raises ``ConfigError``."""
        if not isinstance(data, bytes) or len(data) != cls._private_len:
            raise ConfigError(f"an {cls._algorithm} private key is {cls._private_len} bytes")
        return cls(cls._key_type.from_private_bytes(data))

    def public_bytes(self) -> bytes:
        """The raw public key (safe to publish, e.g. in a signed advert)."""
        return self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def export_private(self, *, i_understand_this_exports_a_secret: bool) -> bytes:
        """The raw private bytes. Needs the explicit flag, so no export is accidental."""
        require_export_flag(i_understand_this_exports_a_secret)
        return self._private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def __repr__(self) -> str:
        # Only the public half: a repr ends up in logs and tracebacks.
        return f"{type(self).__name__}(public={self.public_bytes().hex()})"
