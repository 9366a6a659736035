"""The server half of SecAgg+: relays, counts survivors, and unmasks only the sum.

The server is the untrusted party, so this half has little to decide: it
forwards what sites send, moves on when every live site answered a stage (or
the runtime says the deadline passed), aborts when fewer than the threshold
remain, and, at the end, reconstructs the self-mask seeds of the survivors
and the masking keys of the dropped from t shares each. Every reconstructed
secret is checked against what its owner signed (the commitment to b, the
advertised s public key). A site whose message is malformed or fails a check
is dropped from the round (listed in :attr:`MaskServer.rejected`); its masks
are then recovered like any other dropout's. A byte-identical repeat of a
message already taken (a retry after a lost answer, a network duplicate, in
this stage or a later one) is acknowledged and changes nothing; a second,
different message for a stage is a violation like any other. The unmasked
sum must be one honest clipped inputs can produce
(``_unmask.check_feasible``), else the round is rejected. Each stage is one
row of a table (``_Step``): who must answer, who has, how one answer is
taken, and what completing the stage sends.
"""

from __future__ import annotations

import enum
import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from securefl.aggregation.base import AggregateResult, RoundContext, ServerAggregator
from securefl.errors import AbortError, ConfigError, IntegrityError, ProtocolError, WireError
from securefl.hazmat import bls
from securefl.hazmat.keys import KeyPair, derive_key, kdf_info
from securefl.hazmat.quantize import dequantize_sum
from securefl.hazmat.sign import verify
from securefl.secagg import _messages as m
from securefl.secagg._config import MaskConfig
from securefl.secagg._masked_with import check_shown_claim
from securefl.secagg._multisig import split_valid, unmask_requests
from securefl.secagg._unmask import check_feasible, reconstruct, remove_masks
from securefl.wire import SERVER, Envelope

__all__ = ["MaskServer", "ServerStage"]

log = logging.getLogger(__name__)


class ServerStage(enum.Enum):
    ADVERTISE = m.ADVERTISE
    SHARE = m.SHARE
    MASKED_INPUT = m.MASKED_INPUT
    CONSISTENCY = m.CONSISTENCY
    UNMASK = m.UNMASK
    DONE = "done"
    ABORTED = "aborted"


@dataclass(frozen=True)
class _Step:
    """One stage: who must answer, who has, how one answer is taken, what completing it sends."""

    expected: Callable[[], Collection[str]]
    answered: Callable[[], Collection[str]]
    accept: Callable[[str, dict[str, Any]], None]
    complete: Callable[[], list[Envelope]]


class MaskServer(ServerAggregator):
    """The server's half of one masked round."""

    def __init__(
        self,
        *,
        ctx: RoundContext,
        roster: dict[str, bytes],
        config: MaskConfig,
        bls_keys: Mapping[str, bytes] | None = None,
    ) -> None:
        """``bls_keys``: the roster's BLS keys, proofs checked (neighbourhood round only)."""
        self._ctx, self._roster, self._config = ctx, roster, config
        self._plan = config.plan(
            federation=ctx.federation,
            round_id=ctx.round,
            cohort=ctx.cohort,
            federation_size=len(roster),
        )
        self._need = max(self._plan.threshold, config.min_cohort, ctx.min_sites)
        if self._plan.local and bls_keys is None:
            raise ConfigError("the neighbourhood round needs the roster's BLS keys")
        self._bls_keys: Mapping[str, bytes] = bls_keys or {}
        self._stage = ServerStage.ADVERTISE
        self._dropped: set[str] = set()
        self.rejected: dict[str, str] = {}
        """Sites dropped for a malformed or invalid message, with the reason."""
        self._adverts: dict[str, dict[str, bytes]] = {}
        self._shares: dict[str, dict[str, bytes]] = {}
        self._inputs: list[str] = []
        self._total = np.zeros(self._slots(), dtype=np.uint32)
        self._scratch = np.empty(self._slots(), dtype=np.uint32)  # one decoded input
        self._sigs: dict[str, bytes] = {}
        self._claims: dict[str, bytes] = {}  # site -> signed "masked with" claim (k-regular)
        self._unmask: dict[str, dict[str, dict[str, bytes]]] = {}
        self._result: AggregateResult | None = None
        self._u3: tuple[str, ...] = ()
        #: SHA-256 of each message taken, by (stage, sender): what makes a repeat harmless
        self._taken: dict[tuple[str, str], bytes] = {}
        self._steps = {
            ServerStage.ADVERTISE: _Step(
                lambda: ctx.cohort, lambda: self._adverts, self._accept_advert, self._open_share
            ),
            ServerStage.SHARE: _Step(
                lambda: self._adverts,
                lambda: self._shares,
                self._accept_shares,
                self._open_masked_input,
            ),
            ServerStage.MASKED_INPUT: _Step(
                lambda: self._shares,
                lambda: self._inputs,
                self._accept_input,
                self._open_consistency,
            ),
            ServerStage.CONSISTENCY: _Step(
                lambda: self._u3, lambda: self._sigs, self._accept_signature, self._open_unmask
            ),
            ServerStage.UNMASK: _Step(
                lambda: self._sigs, lambda: self._unmask, self._accept_unmask, self._finish
            ),
        }

    def _slots(self) -> int:
        """Ring values per masked input: the weight slot and the update."""
        return self._ctx.dimension + 1

    # -- the seam ---------------------------------------------------------------

    @property
    def stage(self) -> str:
        return str(self._stage.value)

    @property
    def result(self) -> AggregateResult | None:
        return self._result

    def handle(self, envelope: Envelope) -> list[Envelope]:
        ctx, sender = self._ctx, envelope.sender
        if (
            envelope.federation != ctx.federation
            or envelope.round != ctx.round
            or envelope.receiver != SERVER
        ):
            raise ProtocolError("envelope is not for this round's server")
        if sender not in ctx.cohort:
            raise ProtocolError(f"{sender!r} is not in this round's cohort")
        if self._stage in (ServerStage.DONE, ServerStage.ABORTED):
            raise ProtocolError(f"the round is {self._stage.value}")
        if sender in self._dropped:
            log.info("ignoring %s from dropped site %s", envelope.stage, sender)
            return []
        digest = hashlib.sha256(envelope.payload).digest()
        if (envelope.stage, sender) in self._taken:
            return self._repeat(envelope, digest)
        if envelope.stage != self._stage.value or sender not in self._expected():
            return self._reject(sender, f"{envelope.stage!r} out of order")
        if sender in self._answered():
            return self._reject(sender, f"second {envelope.stage!r}")
        try:
            body = m.decode(envelope.stage, envelope.payload, cohort_size=len(ctx.cohort))
            self._accept(sender, body)
        except (WireError, IntegrityError, ProtocolError) as exc:
            return self._reject(sender, str(exc))
        self._taken[(envelope.stage, sender)] = digest
        return self._maybe_advance()

    def _repeat(self, envelope: Envelope, digest: bytes) -> list[Envelope]:
        """A second message of a stage: a retry if byte-identical (acknowledged), else refused."""
        if self._taken[(envelope.stage, envelope.sender)] == digest:
            log.info("repeated %s from %s acknowledged", envelope.stage, envelope.sender)
            return []
        return self._reject(envelope.sender, f"a second, different {envelope.stage!r}")

    def on_deadline(self) -> list[Envelope]:
        if self._stage in (ServerStage.DONE, ServerStage.ABORTED):
            return []
        late = self._expected() - self._answered() - self._dropped
        self._dropped |= late
        return self._advance()

    def on_departure(self, site_id: str) -> list[Envelope]:
        closed = self._stage in (ServerStage.DONE, ServerStage.ABORTED)
        if closed or site_id not in self._ctx.cohort:
            return []
        self._dropped.add(site_id)
        return self._maybe_advance()

    # -- bookkeeping ------------------------------------------------------------

    def _expected(self) -> set[str]:
        step = self._steps.get(self._stage)
        return set(step.expected()) if step else set()

    def _answered(self) -> set[str]:
        step = self._steps.get(self._stage)
        return set(step.answered()) if step else set()

    def _reject(self, sender: str, reason: str) -> list[Envelope]:
        log.warning("dropping %s from the masked round: %s", sender, reason)
        self.rejected[sender] = reason
        self._dropped.add(sender)
        return self._maybe_advance()

    def _maybe_advance(self) -> list[Envelope]:
        if self._expected() - self._dropped <= self._answered():
            return self._advance()
        return []

    def _live(self, ids: Any) -> list[str]:
        return sorted(set(ids) - self._dropped)

    def _require(self, live: list[str], what: str, *, minimum: int) -> None:
        t, allowed = self._plan.threshold, self._plan.missing_allowed
        present = set(live)
        short = [u for u in live if len(self._plan.holders(u) & present) < t]
        if self._plan.local:  # each site refuses more than ℓ of its neighbours missing
            ell = self._plan.local_missing
            short += [u for u in live if len(self._plan.holders(u) - present) > ell]
        missing = len(self._ctx.cohort) - len(live)
        if len(live) < minimum or short or missing > allowed:
            self._stage = ServerStage.ABORTED
            raise AbortError(
                f"only {len(live)} sites {what}; the round needs {minimum} (threshold {t}) "
                f"and allows {allowed} missing; no shares were requested"
            )

    def _send(self, stage: str, receiver: str, payload: bytes) -> Envelope:
        return Envelope(
            federation=self._ctx.federation,
            round=self._ctx.round,
            stage=stage,
            sender=SERVER,
            receiver=receiver,
            payload=payload,
        )

    # -- accepting one site's message -------------------------------------------

    def _accept(self, sender: str, body: dict[str, Any]) -> None:
        self._steps[self._stage].accept(sender, body)

    def _accept_advert(self, sender: str, adv: dict[str, Any]) -> None:
        ctx = self._ctx
        message = m.advert_message(
            ctx.federation,
            ctx.round,
            sender,
            adv["c_pk"],
            adv["s_pk"],
            adv["commit"],
            adv["digest"],
        )
        verify(self._roster[sender], message, adv["sig"])
        if ctx.round_digest and adv["digest"] != ctx.round_digest:
            # a site (colluding, or given another round start) would make its holders abort
            raise ProtocolError("advert signed for another round start than the one sent")
        seen = {k for a in self._adverts.values() for k in (a["c_pk"], a["s_pk"])}
        if adv["c_pk"] == adv["s_pk"] or {adv["c_pk"], adv["s_pk"]} & seen:
            raise ProtocolError("advert reuses a public key")
        probe = KeyPair.generate()  # refuses malformed and low-order keys, opaquely
        for key in (adv["c_pk"], adv["s_pk"]):
            derive_key(probe, key, info=kdf_info("mask/probe", ctx.round, "a", "b", ctx.federation))
        self._adverts[sender] = adv

    def _accept_shares(self, sender: str, body: dict[str, Any]) -> None:
        want = (self._plan.holders(sender) & set(self._adverts)) - {sender}
        if set(body["shares"]) != want:
            raise ProtocolError("shares not addressed to exactly the sender's holders")
        self._shares[sender] = body["shares"]

    def _accept_input(self, sender: str, body: dict[str, Any]) -> None:
        bits, n = self._plan.quant.bits, self._slots()
        if body["bits"] != bits or body["n"] != n:
            raise ProtocolError(f"masked input must be {n} values in Z_2^{bits}")
        if not self._plan.complete:  # it masked with exactly the neighbours it was shown
            claim = body.get("masked_with")
            if claim is None:
                raise ProtocolError("a masked input on the k-regular graph needs its claim")
            check_shown_claim(
                self._plan,
                self._ctx,
                sender,
                claim,
                self._roster[sender],
                self._adverts[sender]["digest"],
                self._shares,
            )
            self._claims[sender] = claim
        # Decoded and range-checked in full before anything touches the total,
        # so a refused input leaves no trace in it.
        y = m.unpack_ring(body["y"], n, bits, out=self._scratch)
        np.add(self._total, y, out=self._total)  # wraps modulo 2**32; 2**bits divides it
        self._inputs.append(sender)

    def _list_message(self) -> bytes:
        ctx = self._ctx
        if self._plan.local:  # BLS over the list and the round start (see _messages)
            # The server's context may not carry the digest of the round start it sent;
            # the sites' signed adverts do (one value, unless a site lied about its own).
            digest = (
                ctx.round_digest
                or Counter(a["digest"] for a in self._adverts.values()).most_common(1)[0][0]
            )
            return m.neighbourhood_list_message(
                ctx.federation, ctx.round, self._u3, run=ctx.run, round_digest=digest
            )
        return m.consistency_message(ctx.federation, ctx.round, self._u3, run=ctx.run)

    def _accept_signature(self, sender: str, body: dict[str, Any]) -> None:
        if self._plan.local:  # BLS: checked together in _open_unmask (one pairing)
            if len(body["sig"]) != bls.BLS_SIGNATURE_LEN:
                raise ProtocolError("the neighbourhood round's consistency signature is BLS")
        else:
            verify(self._roster[sender], self._list_message(), body["sig"])
        self._sigs[sender] = body["sig"]

    def _accept_unmask(self, sender: str, body: dict[str, Any]) -> None:
        holds = self._plan.holders(sender)
        want_b = holds & set(self._u3)
        want_s = holds & (set(self._shares) - set(self._u3))
        if set(body["b"]) != want_b or set(body["s"]) != want_s:
            raise ProtocolError("unmask response names the wrong sites")
        self._unmask[sender] = body

    # -- stage transitions ------------------------------------------------------

    def _advance(self) -> list[Envelope]:
        step = self._steps.get(self._stage)
        return step.complete() if step else []

    def _open_share(self) -> list[Envelope]:
        u1 = self._live(self._adverts)
        self._require(u1, "advertised keys", minimum=self._need)
        self._adverts = {u: self._adverts[u] for u in u1}
        self._stage = ServerStage.SHARE
        if self._plan.local:  # each site gets its holders' adverts only
            mine = {u: {v: self._adverts[v] for v in self._plan.shown_to(u, u1)} for u in u1}
            return [
                self._send(m.SHARE_REQUEST, u, m.encode(m.SHARE_REQUEST, adverts=mine[u]))
                for u in u1
            ]
        payload = m.encode(m.SHARE_REQUEST, adverts=self._adverts)
        return [self._send(m.SHARE_REQUEST, u, payload) for u in u1]

    def _open_masked_input(self) -> list[Envelope]:
        u2 = self._live(self._shares)
        self._require(u2, "shared keys", minimum=self._need)
        self._shares = {u: self._shares[u] for u in u2}
        self._stage = ServerStage.MASKED_INPUT
        out = []
        for j in u2:
            senders = self._plan.shown_to(j, u2)  # all of U2, or j's holders in it
            cts = {i: self._shares[i][j] for i in senders if j in self._shares[i]}
            payload = m.encode(m.MASKED_INPUT_REQUEST, senders=senders, shares=cts)
            out.append(self._send(m.MASKED_INPUT_REQUEST, j, payload))
        return out

    def _open_consistency(self) -> list[Envelope]:
        # A site whose masked input arrived stays in U3 even if it vanishes later.
        self._u3 = tuple(sorted(self._inputs))
        self._require(list(self._u3), "sent masked inputs", minimum=self._need)
        self._stage = ServerStage.CONSISTENCY
        payload = m.encode(m.CONSISTENCY_REQUEST, survivors=self._survivor_field())
        return [self._send(m.CONSISTENCY_REQUEST, u, payload) for u in self._u3]

    def _survivor_field(self) -> list[str] | bytes:
        """U3 as sent: ids (cohort-wide round) or a cohort bitmap (neighbourhood round)."""
        if self._plan.local:
            return m.pack_members(self._ctx.cohort, self._u3)
        return list(self._u3)

    def _open_unmask(self) -> list[Envelope]:
        if self._plan.local:  # drop signers whose BLS signature fails, before counting
            _, bad = split_valid(
                {u: self._sigs[u] for u in self._live(self._sigs)},
                self._bls_keys,
                self._list_message(),
            )
            for site, reason in bad.items():
                log.warning("dropping %s from the masked round: %s", site, reason)
                self.rejected[site] = reason
                self._dropped.add(site)
        u4 = self._live(self._sigs)
        plan, signed, t = self._plan, set(u4), self._plan.threshold
        lacking = [v for v in self._shares if len(plan.holders(v) & signed) < t]
        if len(u4) < max(t, plan.quorum) or lacking:
            self._stage = ServerStage.ABORTED
            raise AbortError(
                f"only {len(u4)} sites signed the survivor list; the threshold "
                f"is {t} and the round needs {plan.quorum}; no shares were requested"
            )
        self._sigs = {u: self._sigs[u] for u in u4}
        self._stage = ServerStage.UNMASK
        dropped = set(self._shares) - set(self._u3)
        peers = self._peer_claims(u4)
        if not plan.local:
            fields = {"survivors": list(self._u3), "dropped": sorted(dropped)}
            return [
                self._send(
                    m.UNMASK_REQUEST,
                    u,
                    m.encode(m.UNMASK_REQUEST, **fields, signatures=self._sigs, **peers.get(u, {})),
                )
                for u in u4
            ]
        bitmap = m.pack_members(self._ctx.cohort, self._u3)
        payloads = unmask_requests(plan, bitmap, sorted(dropped), self._sigs, peers)
        return [self._send(m.UNMASK_REQUEST, u, payloads[u]) for u in u4]

    def _peer_claims(self, u4: list[str]) -> dict[str, dict[str, dict[str, bytes]]]:
        """k-regular graph: each signer gets the masked-with claims of the survivors it
        releases b-shares of (``securefl.secagg._masked_with``); none on the complete graph."""
        if self._plan.complete:
            return {}
        u3 = set(self._u3)
        return {
            u: {"peers": {p: self._claims[p] for p in (self._plan.holders(u) - {u}) & u3}}
            for u in u4
        }

    # -- unmasking --------------------------------------------------------------

    def _reconstruct(
        self, kind: str, owners: list[str], check: Callable[[str, bytes], bool]
    ) -> dict[str, bytes]:
        try:
            return reconstruct(self._plan, self._unmask, kind, owners, check)
        except AbortError:
            self._stage = ServerStage.ABORTED
            raise

    def _finish(self) -> list[Envelope]:
        ctx, plan = self._ctx, self._plan
        u3 = list(self._u3)
        dropped = sorted(set(self._shares) - set(u3))

        def b_ok(v: str, b: bytes) -> bool:
            return m.commit_self_seed(ctx.federation, ctx.round, v, b) == self._adverts[v]["commit"]

        def s_ok(v: str, sk: bytes) -> bool:
            return KeyPair.from_private_bytes(sk).public_bytes() == self._adverts[v]["s_pk"]

        b_seeds = self._reconstruct("b", u3, b_ok)
        s_keys = self._reconstruct("s", dropped, s_ok)
        s_pks = {u: self._adverts[u]["s_pk"] for u in u3}
        remove_masks(self._total, plan, ctx, b_seeds, s_keys, s_pks)
        return self._conclude(self._total, u3)

    def _conclude(self, total: npt.NDArray[np.uint32], u3: list[str]) -> list[Envelope]:
        """Decode the unmasked ring sum, check it is feasible, and publish the result."""
        ctx, quant = self._ctx, self._plan.quant
        try:
            summed: npt.NDArray[np.float64] = dequantize_sum(total, quant, summands=len(u3))
            check_feasible(summed, quant, summands=len(u3))
        except (ProtocolError, AbortError) as exc:
            self._stage = ServerStage.ABORTED
            raise AbortError(str(exc)) from None
        self._stage = ServerStage.DONE
        self._scratch = self._total = np.zeros(0, dtype=np.uint32)  # release the buffers
        total_weight = float(summed[0]) / float(self._config.clip) * ctx.max_weight
        np.multiply(summed, ctx.max_weight, out=summed)  # in place: summed is ours
        self._result = AggregateResult(
            total_weight=total_weight,
            weighted_sum=summed[1:],
            survivors=tuple(u3),
        )
        return []
