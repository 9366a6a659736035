"""The server's half of the ``he`` mode: check each signed update, add it in place.

The server adds what arrives and, once every cohort site answered or the
deadline passed, releases the encrypted sum with the signed header of every
upload in it, if at least ``max(min_sites, 3)`` went in
(:data:`MIN_SUMMANDS`: a sum of two reveals each summand to the other). It
never forwards one site's ciphertexts to another: every site holds the
secret key. Each update must carry its sender's signature (checked against
the roster) over its ciphertext bytes before anything is loaded; each chunk
is then checked structurally (:mod:`securefl.he._codec`), so a bad one
drops its sender here rather than aborting the round at every site. Bad
input from one site, of any kind, is recorded in :attr:`HEServer.rejected`
and that site is simply left out: one site can never stop the server.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NoReturn

from securefl.aggregation.base import (
    AggregateResult,
    AggregationMode,
    RoundContext,
    ServerAggregator,
)
from securefl.errors import AbortError, ConfigError, ProtocolError, SecureFLError, WireError
from securefl.hazmat.sign import verify
from securefl.he._codec import ChunkSum, load_chunks, num_chunks
from securefl.he._context import PublicContext
from securefl.he._messages import STAGE_UPDATE, UploadHeader, encode_aggregate, parse_update
from securefl.he._site import check_cohort
from securefl.he._trust import chunks_digest, roster_key, update_message
from securefl.wire import SERVER, Envelope

__all__ = ["MIN_SUMMANDS", "HEServer", "HEServerMode"]

#: The fewest uploads an he aggregate may hold, whatever ``min_sites`` says:
#: in a sum of two, each site subtracts its own update and reads the other's.
MIN_SUMMANDS = 3

log = logging.getLogger(__name__)


class HEServer(ServerAggregator):
    """The server's half: checks each update, adds it in place, counts survivors."""

    def __init__(
        self, public: PublicContext, ctx: RoundContext, roster: Mapping[str, bytes]
    ) -> None:
        check_cohort(ctx, public.preset.max_sites)
        if ctx.min_sites < 2:
            raise ConfigError(
                "he mode needs min_sites >= 2: one update must never be decrypted alone"
            )
        self._public = public
        self._ctx = ctx
        self._roster = dict(roster)
        self._needed = max(ctx.min_sites, MIN_SUMMANDS)
        self._sum = ChunkSum()
        self._uploads: dict[str, UploadHeader] = {}
        #: Sites left out of the sum, with the reason (always a SecureFLError).
        self.rejected: dict[str, SecureFLError] = {}
        self._closed = False
        self._result: AggregateResult | None = None
        self._abort: AbortError | None = None
        self._departed: set[str] = set()

    @property
    def stage(self) -> str:
        """``he/update`` while collecting, then ``done`` or ``aborted``."""
        if self._abort is not None:
            return "aborted"
        return "done" if self._closed else STAGE_UPDATE

    def _parse(self, envelope: Envelope) -> tuple[UploadHeader, list[Any]]:
        ctx, public = self._ctx, self._public
        if envelope.federation != ctx.federation or envelope.round != ctx.round:
            raise ProtocolError("envelope is for another federation or round")
        if envelope.stage != STAGE_UPDATE or envelope.receiver != SERVER:
            raise ProtocolError(f"unexpected stage {envelope.stage!r} or receiver")
        weight, round_digest, chunks, signature = parse_update(
            envelope.payload,
            preset=public.preset.name,
            key_id=public.key_id,
            dimension=ctx.dimension,
            max_weight=ctx.max_weight,
            chunks=num_chunks(public.preset, ctx.dimension),
        )
        digest = chunks_digest(chunks)
        message = update_message(
            federation=ctx.federation,
            round_id=ctx.round,
            site=envelope.sender,
            key_id=public.key_id,
            preset=public.preset.name,
            dimension=ctx.dimension,
            weight=weight,
            max_weight=float(ctx.max_weight),
            round_digest=round_digest,
            digest=digest,
        )
        verify(roster_key(self._roster, envelope.sender), message, signature)
        vectors = load_chunks(public, chunks, ctx.dimension)
        return UploadHeader(envelope.sender, weight, round_digest, digest, signature), vectors

    def handle(self, envelope: Envelope) -> list[Envelope]:
        """Add one site's update; a bad one is recorded in :attr:`rejected` and left out."""
        sender = envelope.sender
        if self._closed:
            log.warning("he: late update from %r ignored", sender)
            return []
        if sender not in self._ctx.cohort:
            log.warning("he: update from %r, who is not in the cohort, ignored", sender)
            return []
        if sender in self._uploads or sender in self.rejected:
            log.warning("he: second update from %r ignored", sender)
            return []
        try:
            header, vectors = self._parse(envelope)
            self._sum.add(vectors)
        except SecureFLError as exc:
            self._reject(sender, exc)
        except Exception as exc:  # a native library refusing odd input is still that input's fault
            self._reject(sender, WireError(f"update could not be processed ({type(exc).__name__})"))
        else:
            self._uploads[sender] = header
        self._close_if_everyone_answered()
        return []

    def _reject(self, sender: str, exc: SecureFLError) -> None:
        self.rejected[sender] = exc
        log.warning("he: dropping site %r from round %d: %s", sender, self._ctx.round, exc)

    def on_departure(self, site_id: str) -> list[Envelope]:
        """A site said it leaves: it is not waited for (nor summed, if it sent nothing)."""
        if not self._closed and site_id in self._ctx.cohort and site_id not in self._uploads:
            self._departed.add(site_id)
            self._close_if_everyone_answered()
        return []

    def _close_if_everyone_answered(self) -> None:
        answered = set(self._uploads) | set(self.rejected) | self._departed
        if not self._closed and answered >= set(self._ctx.cohort):
            self._close()

    def on_deadline(self) -> list[Envelope]:
        """Sites not heard from are dropped; the round closes with whoever was added."""
        if not self._closed:
            self._close()
        return []

    def _close(self) -> None:
        self._closed = True
        survivors = tuple(sorted(self._uploads))
        if self._sum.broken:
            self._abort = AbortError("the encrypted sum holds part of a refused update")
            return
        if len(survivors) < self._needed:
            self._abort = AbortError(
                f"only {len(survivors)} of {len(self._ctx.cohort)} sites contributed; "
                f"he mode needs at least {self._needed} (max(min_sites, {MIN_SUMMANDS})) so "
                "no update can be read from the sum"
            )
            return
        blob = encode_aggregate(
            preset=self._public.preset.name,
            key_id=self._public.key_id,
            round_id=self._ctx.round,
            weight_scale=float(self._ctx.max_weight),
            dimension=self._ctx.dimension,
            uploads=[self._uploads[s] for s in survivors],
            chunks=self._sum.serialize(),
        )
        self._result = AggregateResult(
            total_weight=float(sum(self._uploads[s].weight for s in survivors)),
            survivors=survivors,
            weighted_sum=None,
            encrypted_sum=blob,
        )

    @property
    def result(self) -> AggregateResult | None:
        """The encrypted aggregate once closed; raises AbortError if too few survived."""
        if self._abort is not None:
            raise self._abort
        return self._result


class HEServerMode(AggregationMode):
    """The ``he`` mode as the server configures it: the signed public context only."""

    name = "he"
    hides_updates = True

    def __init__(
        self,
        signed_public_context: bytes,
        *,
        roster: Mapping[str, bytes],
        federation: str,
        maker: str | None = None,
    ) -> None:
        """Check the context's maker signature against ``roster`` before using it.

        ``maker`` pins the designated key maker (``None``: any roster site).

        One process: deserialization holds the GIL, and a helper process
        measured slower (docs/he.md).
        """
        self.roster = dict(roster)
        self.context = PublicContext.from_signed(
            signed_public_context, roster=self.roster, federation=federation, maker=maker
        )

    def site(self, ctx: RoundContext, site_id: str) -> NoReturn:
        """Refused: a server-side mode cannot encrypt or decrypt."""
        raise ConfigError("the server's HE mode has no secret key; sites use HESiteMode")

    def server(self, ctx: RoundContext) -> HEServer:
        """The server half for this round."""
        return HEServer(self.context, ctx, self.roster)
