"""A cheating server played by hand over real site halves, for attack tests.

The honest :class:`~securefl.secagg.MaskServer` never shows two sites
different lists; an attacker does. :class:`CheatingServer` drives real
:class:`~securefl.secagg.MaskSite` objects stage by stage and lets the test
choose what each site is told. A site that aborts is recorded and hears
nothing more. :meth:`CheatingServer.try_unmask` then does what the attacker
is after: rebuild a site's self-mask seed and masking key from whatever
shares it collected (plus a colluder's) and strip the masks from its input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from secagg_driver import Federation

from securefl.aggregation.base import RoundContext
from securefl.errors import AbortError, IntegrityError, ProtocolError
from securefl.hazmat import bls, prg, shamir
from securefl.hazmat.keys import KeyPair
from securefl.hazmat.quantize import dequantize_sum
from securefl.secagg import MaskPlan, MaskSite
from securefl.secagg import _messages as m
from securefl.secagg._keys import mask_sign, pair_seed
from securefl.wire import SERVER, Envelope

_NO_SIGNATURE = bytes([0xC0]) + bytes(95)
"""The identity of G2 (compressed): what an aggregate of no signature would be."""


class CheatingServer:
    """The server's side of one masked round, with every list chosen by the test."""

    def __init__(self, fed: Federation, ctx: RoundContext, sites: Mapping[str, MaskSite]) -> None:
        self.fed, self.ctx, self.sites = fed, ctx, dict(sites)
        self.plan: MaskPlan = fed.config.plan(  # the sites' plan: c from the whole roster
            federation=ctx.federation,
            round_id=ctx.round,
            cohort=ctx.cohort,
            federation_size=len(fed.roster),
        )
        self.aborted: dict[str, AbortError] = {}
        self.adverts: dict[str, dict[str, bytes]] = {}
        self.shares: dict[str, dict[str, bytes]] = {}  # sender -> receiver -> ciphertext
        self.inputs: dict[str, npt.NDArray[np.uint32]] = {}
        self.sigs: dict[str, bytes] = {}
        self.claims: dict[str, bytes] = {}  # site -> its signed "masked with" claim
        self.released: dict[
            str, dict[str, dict[str, bytes]]
        ] = {}  # holder -> b/s -> owner -> share
        self.colluder = ""
        self.stolen: dict[str, tuple[bytes, bytes]] = {}  # owner -> the colluder's (s, b) shares

    def _ask(self, site: str, stage: str, payload: bytes) -> list[Envelope]:
        if site in self.aborted:
            return []
        env = Envelope(
            federation=self.ctx.federation,
            round=self.ctx.round,
            stage=stage,
            sender=SERVER,
            receiver=site,
            payload=payload,
        )
        try:
            return self.sites[site].handle(env)
        except AbortError as exc:
            self.aborted[site] = exc
            return []

    @staticmethod
    def _body(envs: list[Envelope], stage: str) -> dict[str, Any] | None:
        for env in envs:
            if env.stage == stage:
                return m.decode(stage, env.payload, cohort_size=1 << 10)
        return None

    def advertise(self, updates: Mapping[str, npt.NDArray[np.float32]], weight: float) -> None:
        for s, half in self.sites.items():
            body = self._body(half.submit(updates[s], weight), m.ADVERTISE)
            assert body is not None
            self.adverts[s] = body

    def share(self, u1: Mapping[str, Iterable[str]]) -> None:
        """Show each site in ``u1`` the adverts of the sites listed for it."""
        for s, shown in u1.items():
            payload = m.encode(m.SHARE_REQUEST, adverts={u: self.adverts[u] for u in shown})
            body = self._body(self._ask(s, m.SHARE_REQUEST, payload), m.SHARE)
            if body is not None:
                self.shares[s] = body["shares"]

    def mask(self, u2: Mapping[str, list[str]]) -> None:
        """Tell each site in ``u2`` who shared; forward the ciphertexts addressed to it."""
        for s, senders in u2.items():
            cts = {i: self.shares[i][s] for i in senders if s in self.shares.get(i, {})}
            payload = m.encode(m.MASKED_INPUT_REQUEST, senders=senders, shares=cts)
            body = self._body(self._ask(s, m.MASKED_INPUT_REQUEST, payload), m.MASKED_INPUT)
            if body is not None:
                self.inputs[s] = m.unpack_ring(body["y"], body["n"], body["bits"])
                if "masked_with" in body:  # k-regular graph: the site's signed claim
                    self.claims[s] = body["masked_with"]

    def steal_from(self, colluder: str) -> None:
        """A colluding site hands over every share it holds (its memory is the server's)."""
        held = self.sites[colluder]._held  # the colluder's own memory
        self.colluder = colluder
        self.stolen = {owner: pair for owner, pair in held.items() if owner != colluder}

    def sign(self, lists: Mapping[str, list[str]]) -> None:
        """Show each site its survivor list and keep its signature."""
        for s, survivors in lists.items():
            payload = m.encode(m.CONSISTENCY_REQUEST, survivors=survivors)
            body = self._body(self._ask(s, m.CONSISTENCY_REQUEST, payload), m.CONSISTENCY)
            if body is not None:
                self.sigs[s] = body["sig"]

    def list_message(self, survivors: Iterable[str]) -> bytes:
        """What a site signs over ``survivors``: with the round start in the neighbourhood round."""
        ctx, listed = self.ctx, tuple(sorted(survivors))
        if self.plan.local:
            return m.neighbourhood_list_message(
                ctx.federation, ctx.round, listed, run=ctx.run, round_digest=ctx.round_digest
            )
        return m.consistency_message(ctx.federation, ctx.round, listed, run=ctx.run)

    def sign_as(self, site: str, survivors: Iterable[str]) -> bytes:
        """A consistency signature over ``survivors`` made with ``site``'s key (a colluder's).

        BLS (the key derived from its identity) in the neighbourhood round,
        Ed25519 in the cohort-wide round: what the site itself would send.
        """
        message = self.list_message(survivors)
        if self.plan.local:
            return bls.BlsKey.from_identity(self.fed.keys[site]).sign(message)
        return self.fed.keys[site].sign(message)

    def unmask_fields(self, sigs: Mapping[str, bytes]) -> dict[str, Any]:
        """How ``sigs`` travel to a site: each one, or a signer bitmap and one aggregate."""
        if not self.plan.local:
            return {"signatures": dict(sigs)}
        signers = sorted(sigs)
        return {
            "signers": m.pack_members(self.ctx.cohort, signers),
            "aggregate": bls.aggregate([sigs[u] for u in signers]) if signers else _NO_SIGNATURE,
        }

    def send_unmask(self, site: str, **fields: Any) -> dict[str, Any] | None:
        """One unmask request with the fields given as they are; the shares released, if any."""
        payload = m.encode(m.UNMASK_REQUEST, **fields)
        body = self._body(self._ask(site, m.UNMASK_REQUEST, payload), m.UNMASK)
        if body is not None:
            self.released[site] = body
        return body

    def unmask(
        self,
        requests: Mapping[str, tuple[list[str], list[str], dict[str, bytes]]],
    ) -> None:
        """Send each site (survivors, dropped, signatures) and keep the shares it releases.

        In the neighbourhood round the signatures go as the round sends them:
        a cohort bitmap of the signers and their BLS aggregate.
        """
        for s, (survivors, dropped, sigs) in requests.items():
            self.send_unmask(
                s,
                survivors=survivors,
                dropped=dropped,
                **self.unmask_fields(sigs),
                **self.peer_claims(s, survivors),
            )

    def peer_claims(self, site: str, survivors: Iterable[str]) -> dict[str, Any]:
        """The masked-with claims ``site`` needs (k-regular graph): the real ones, all a
        cheating server has, for the listed peers whose shares ``site`` holds."""
        if self.plan.complete:
            return {}
        wanted = (self.plan.holders(site) - {site}) & set(survivors)
        return {"peers": {p: self.claims[p] for p in wanted if p in self.claims}}

    # -- what the attacker is after ---------------------------------------------

    def _secret(self, owner: str, kind: str) -> bytes | None:
        """Rebuild ``owner``'s b or s_sk from released and stolen shares, if t are at hand."""
        plan = self.plan
        shares = {
            plan.share_id(h): resp[kind][owner]
            for h, resp in self.released.items()
            if owner in resp[kind]
        }
        if owner in self.stolen:
            s_share, b_share = self.stolen[owner]
            shares[plan.share_id(self.colluder)] = b_share if kind == "b" else s_share
        if len(shares) < plan.threshold:
            return None
        try:
            secret = shamir.combine(shares, threshold=plan.threshold)
        except (IntegrityError, ProtocolError):
            return None
        adv = self.adverts[owner]
        if kind == "b":
            ok = m.commit_self_seed(self.ctx.federation, self.ctx.round, owner, secret)
            return secret if ok == adv["commit"] else None
        pk = KeyPair.from_private_bytes(secret).public_bytes()
        return secret if pk == adv["s_pk"] else None

    def both_secrets(self, owner: str) -> bool:
        """Whether the server now holds both the self-mask seed and masking key of ``owner``."""
        return self._secret(owner, "b") is not None and self._secret(owner, "s") is not None

    def read_update(self, owner: str, neighbours: Iterable[str]) -> npt.NDArray[np.float64]:
        """Strip every mask from ``owner``'s input: its (weight, update) vector, dequantized."""
        b, s_sk = self._secret(owner, "b"), self._secret(owner, "s")
        assert b is not None and s_sk is not None
        kp = KeyPair.from_private_bytes(s_sk)
        y = self.inputs[owner].copy()
        masks = [(b, -1)]
        for j in sorted(neighbours):
            seed = pair_seed(kp, self.adverts[j]["s_pk"], self.ctx, owner, j)
            masks.append((seed, -mask_sign(owner, j)))
        prg.add_masks(y, masks, bits=self.plan.quant.bits)
        return dequantize_sum(y, self.plan.quant, summands=1)

    def partial_sum(self, arc: Iterable[str]) -> npt.NDArray[np.float64] | None:
        """Σ of the inputs of ``arc`` with self masks removed, if every b in it is rebuilt."""
        members = list(arc)
        if not members or any(v not in self.inputs for v in members):
            return None
        total = np.zeros_like(self.inputs[members[0]])
        masks = []
        for v in members:
            b = self._secret(v, "b")
            if b is None:
                return None
            np.add(total, self.inputs[v], out=total)
            masks.append((b, -1))
        prg.add_masks(total, masks, bits=self.plan.quant.bits)
        try:
            return dequantize_sum(total, self.plan.quant, summands=len(masks))
        except ProtocolError:
            return None  # pairwise masks with sites outside the arc did not cancel


class Colluders(CheatingServer):
    """A cheating server with many colluding sites: every share they hold is the server's."""

    held: dict[str, dict[str, tuple[bytes, bytes]]]

    def steal(self, colluders: list[str]) -> None:
        self.held = {c: dict(self.sites[c]._held) for c in colluders}

    def _secret(self, owner: str, kind: str) -> bytes | None:
        plan = self.plan
        shares = {
            plan.share_id(h): resp[kind][owner]
            for h, resp in self.released.items()
            if owner in resp[kind]
        }
        for c, held in self.held.items():
            if owner in held and c != owner:
                s_share, b_share = held[owner]
                shares[plan.share_id(c)] = b_share if kind == "b" else s_share
        if len(shares) < plan.threshold:
            return None
        try:
            secret = shamir.combine(shares, threshold=plan.threshold)
        except (IntegrityError, ProtocolError):
            return None
        adv = self.adverts[owner]
        if kind == "b":
            ok = m.commit_self_seed(self.ctx.federation, self.ctx.round, owner, secret)
            return secret if ok == adv["commit"] else None
        pk = KeyPair.from_private_bytes(secret).public_bytes()
        return secret if pk == adv["s_pk"] else None
