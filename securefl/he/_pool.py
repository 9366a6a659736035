"""Encrypt on every core: helper processes that each hold the site's secret context.

Why processes: TenSEAL's encryption calls hold the GIL, so a second thread
gains little (docs/he.md: 0.29 s vs 0.23 s for d = 1e6); a second process
halves the time. Why the secret context crosses a pipe: a helper process must
hold the key to encrypt. The serialized secret context is handed to each
helper once, at start-up, through the ``spawn`` start method's pipe to its
child; it is never written to disk, never sent anywhere but a child process
of this site (same user, same machine, same trust boundary as the parent),
and it never exists on the server side: the server's classes only ever see
:class:`PublicContext`. No securefl object holding a key is pickled: only
the context's bytes (inside ``multiprocessing``'s own start-up message), the
quantized values and the ciphertext bytes cross the pipe. ``spawn`` and not
``fork``: forking a process that already runs threads (PyTorch, TenSEAL's
pool) can deadlock the child.

Each update is cut into contiguous ranges of chunks, one per core; this
process encrypts the first range while the helpers encrypt the others, one
task per helper per update so the pipe carries few, large messages.
"""

from __future__ import annotations

import multiprocessing
import weakref
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt
import tenseal as ts

from securefl.errors import ConfigError
from securefl.he._context import SecretContext

__all__ = ["MIN_CHUNKS_PER_CORE", "EncryptPool", "encrypt_range"]

#: Below this many chunks per core the pipe round trip costs more than it saves.
MIN_CHUNKS_PER_CORE = 32

_WORKER: dict[str, Any] = {}  # in a helper process only: "context", its TenSEAL context


def _init(context_bytes: bytes) -> None:
    """Helper start-up: load the secret context once, keep it in this process only."""
    _WORKER["context"] = SecretContext.from_bytes(context_bytes).tenseal.data


def encrypt_range(
    cpp_context: Any, scheme: str, values: npt.NDArray[Any], slots: int
) -> list[bytes]:
    """Encrypt ``values`` in ``slots``-sized chunks through TenSEAL's C++ constructors.

    The C++ constructors are called directly: the Python wrappers first build
    a ``PlainTensor``, which measured about 2.5 times slower than encrypting.
    """
    ctor = ts._ts_cpp.BFVVector if scheme == "bfv" else ts._ts_cpp.CKKSVector
    return [
        bytes(ctor(cpp_context, values[i : i + slots].tolist()).serialize())
        for i in range(0, len(values), slots)
    ]


def _encrypt_task(scheme: str, dtype: str, raw: bytes, slots: int) -> list[bytes]:
    values = np.frombuffer(raw, dtype=dtype)
    return encrypt_range(_WORKER["context"], scheme, values, slots)


def _shutdown(pool: ProcessPoolExecutor) -> None:
    pool.shutdown(wait=True, cancel_futures=True)


class EncryptPool:
    """``helpers`` extra processes that encrypt alongside the calling one.

    Each helper receives the *serialized* secret context (see the module
    docstring for why that may cross a pipe to a child process and nowhere
    else). Refuses pickling; shuts its processes down on :meth:`close` or when
    collected.
    """

    def __init__(self, secret: SecretContext, helpers: int) -> None:
        if not isinstance(secret, SecretContext):
            raise ConfigError("an encryption pool needs the site's SecretContext")
        if helpers < 1:
            raise ConfigError("an encryption pool needs at least one helper process")
        self.helpers = helpers
        self._pool = ProcessPoolExecutor(
            max_workers=helpers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init,
            initargs=(secret.to_bytes(include_secret_key=True),),
        )
        self._finalizer = weakref.finalize(self, _shutdown, self._pool)

    def warm_up(self) -> None:
        """Start every helper now (and load its context) instead of on the first update."""
        futures = [self._pool.submit(_ping) for _ in range(self.helpers)]
        for f in futures:
            f.result()

    def encrypt(
        self, cpp_context: Any, scheme: str, values: npt.NDArray[Any], slots: int
    ) -> list[bytes]:
        """Encrypt ``values`` split over this process and the helpers, in chunk order."""
        chunks = -(-len(values) // slots)
        cores = self.helpers + 1
        per = -(-chunks // cores)
        bounds = [min(len(values), k * per * slots) for k in range(cores + 1)]
        futures: list[Future[list[bytes]]] = [
            self._pool.submit(
                _encrypt_task,
                scheme,
                values.dtype.str,
                np.ascontiguousarray(values[bounds[k] : bounds[k + 1]]).tobytes(),
                slots,
            )
            for k in range(1, cores)
            if bounds[k] < bounds[k + 1]
        ]
        out = encrypt_range(cpp_context, scheme, values[bounds[0] : bounds[1]], slots)
        for f in futures:
            out.extend(f.result())
        return out

    def close(self) -> None:
        """Stop the helper processes (their copies of the key go with them)."""
        self._finalizer()

    def __reduce__(self) -> Any:
        raise TypeError("EncryptPool serves a secret key and cannot be pickled")


def _ping() -> bool:
    return "context" in _WORKER
