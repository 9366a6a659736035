"""The site half of SecAgg+: a sans-IO state machine that trusts the server for nothing.

Stages (Bonawitz et al. 2017, with the active-security consistency round):

1. ``submit``: clip, weight and quantize the update; claim the round id on
   disk; make fresh X25519 key pairs (c: share encryption, s: masking) and a
   self-mask seed b; send the signed advert ``mask/advertise``, which also
   signs the digest of the round start this site received.
2. ``mask/share-request`` (all signed adverts): verify every signature against
   the roster, refuse duplicated keys and any advert made for another round
   start (another model or settings); Shamir-share s_sk and b among the
   holders (neighbours + self) with this site's own threshold t; send
   AES-GCM ciphertexts.
3. ``mask/masked-input-request`` (U2 and the shares addressed to us): open
   every share (associated data names round, sender, receiver, stage); send
   y = x + PRG(b) + sum over neighbours j in U2 of +/-PRG(s_ij) mod 2^bits.
4. ``mask/consistency-request`` (U3): sign the survivor list.
5. ``mask/unmask-request`` (U3, dropped, signatures): check t signatures over
   the *same* list among this site's holders and n - m (``plan.quorum``) in
   the whole cohort, so that two honest sites can only release shares under
   two different lists if n - 2m sites sign both; reveal b-shares of
   survivors and s-shares of the dropped, never both for one peer, then finish.

Every list the server sends must name enough sites for this site's own
threshold and miss no more sites than its plan allows (``missing_allowed``:
n - t on the complete graph, floor(dropout_rate * n) on the k-regular graph).
Any deviation by the server raises :class:`AbortError` and wipes the secrets.

The neighbourhood round (``MaskConfig(neighbourhood=True)``, k-regular graph
only) changes what a site is sent, not what it checks: adverts, share
senders and the dropped list cover only its holders (a site refuses any
other id), each may miss at most ℓ = ``plan.local_missing`` of its
neighbours, the survivor list comes whole as a cohort bitmap (at most m
missing, every holder in it a share sender of this site), and the n - m
consistency signatures of the cohort arrive as one BLS aggregate with a
signer bitmap (``securefl.secagg._multisig``) instead of n - m Ed25519
signatures. The count is the cohort-wide round's; ``threat_models/mask.md``
says why that keeps its guarantee.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from securefl.aggregation.base import RoundContext, SiteAggregator
from securefl.errors import AbortError, ConfigError, IntegrityError, ProtocolError, WireError
from securefl.hazmat import aead, prg, shamir
from securefl.hazmat.keys import KeyPair
from securefl.hazmat.quantize import quantize
from securefl.hazmat.sign import SigningKey, verify
from securefl.secagg import _messages as m
from securefl.secagg._config import MaskConfig, MaskPlan
from securefl.secagg._keys import mask_sign, pair_seed, share_key
from securefl.secagg._masked_with import check_peer_claims, claim_masked_with
from securefl.secagg._multisig import NeighbourhoodSigner, check_aggregate
from securefl.secagg._site_lists import ListChecks, distinct
from securefl.secagg._state import RoundLog
from securefl.wire import SERVER, Envelope

__all__ = ["MaskSite"]


class MaskSite(SiteAggregator):
    """One site's half of one masked round."""

    def __init__(
        self,
        *,
        ctx: RoundContext,
        site_id: str,
        signing_key: SigningKey,
        roster: dict[str, bytes],
        log: RoundLog,
        config: MaskConfig,
        bls_keys: Mapping[str, bytes] | None = None,
        bls_signer: NeighbourhoodSigner | None = None,
    ) -> None:
        """``bls_keys``: the roster's BLS keys, proofs checked; ``bls_signer``: this site's
        key, derived once by its mode (neighbourhood round only)."""
        if len(ctx.round_digest) != m.DIGEST_LEN:
            raise ConfigError(
                "a masked round needs the digest of the round start the site received "
                "(RoundContext.round_digest)"
            )
        self._ctx, self._me, self._sk = ctx, site_id, signing_key
        self._roster, self._log, self._config = roster, log, config
        # Colluders assumed come from the whole roster, not the cohort the server chose.
        self._plan: MaskPlan = config.plan(
            federation=ctx.federation,
            round_id=ctx.round,
            cohort=ctx.cohort,
            federation_size=len(roster),
        )
        self._need = max(self._plan.threshold, config.min_cohort, ctx.min_sites)
        self._holders = self._plan.holders(site_id)
        self._lists = ListChecks(self._plan, ctx.cohort, site_id, self._need)
        self._bls_keys: Mapping[str, bytes] = {}
        self._bls: NeighbourhoodSigner | None = None
        if self._plan.local:
            if bls_keys is None:
                raise ConfigError("the neighbourhood round needs the roster's BLS keys")
            self._bls_keys = bls_keys
            self._bls = bls_signer or NeighbourhoodSigner(signing_key, site_id, bls_keys)
        self._stage = "idle"
        self._x: npt.NDArray[np.uint32] | None = None
        self._c: KeyPair | None = None
        self._s: KeyPair | None = None
        self._b = b""
        self._adverts: dict[str, dict[str, bytes]] = {}
        self._u2: list[str] = []
        self._u3: tuple[str, ...] = ()
        self._held: dict[str, tuple[bytes, bytes]] = {}  # peer -> (s-share, b-share)

    # -- stage 1 ----------------------------------------------------------------

    def submit(self, vector: npt.NDArray[np.float32], weight: float) -> list[Envelope]:
        if self._stage != "idle":
            raise ProtocolError("update already submitted this round")
        ctx = self._ctx
        vec = np.asarray(vector)
        if vec.ndim != 1 or vec.shape[0] != ctx.dimension or vec.dtype.kind != "f":
            raise ProtocolError(f"update must be {ctx.dimension} floats")
        # NaN propagates through min and max, and so does an infinity: two
        # reductions instead of a full boolean temporary.
        if vec.size and not (np.isfinite(np.min(vec)) and np.isfinite(np.max(vec))):
            raise ProtocolError("update contains NaN or infinite values")
        if isinstance(weight, bool) or not 0 < float(weight) <= ctx.max_weight:
            raise ProtocolError(f"weight {weight} outside (0, {ctx.max_weight}]")
        clip = float(self._config.clip)
        frac = float(weight) / ctx.max_weight
        z = np.empty(ctx.dimension + 1, dtype=np.float64)
        z[0] = frac * clip  # the weight travels scaled into [0, clip]
        np.clip(vec, -clip, clip, out=z[1:])  # post-processing of DP output; widens in place
        z[1:] *= frac
        self._log.claim(ctx.federation, ctx.round, ctx.run)  # durable before anything leaves
        return self._advertise(np.asarray(quantize(z, self._plan.quant), dtype=np.uint32))

    def _advertise(self, x: npt.NDArray[np.uint32]) -> list[Envelope]:
        """Hold the ring vector ``x``, make this round's keys and send the signed advert.

        Shared by the float path (:meth:`submit`) and the integer path
        (``securefl.secagg._integer``); the round id is already claimed.
        """
        ctx = self._ctx
        self._x = x
        self._c, self._s = KeyPair.generate(), KeyPair.generate()
        self._b = os.urandom(prg.SEED_LEN)
        c_pk, s_pk = self._c.public_bytes(), self._s.public_bytes()
        commit = m.commit_self_seed(ctx.federation, ctx.round, self._me, self._b)
        digest = ctx.round_digest
        sig = self._sk.sign(
            m.advert_message(ctx.federation, ctx.round, self._me, c_pk, s_pk, commit, digest)
        )
        self._stage = "advertised"
        payload = m.encode(m.ADVERTISE, c_pk=c_pk, s_pk=s_pk, commit=commit, digest=digest, sig=sig)
        return [self._env(m.ADVERTISE, payload)]

    # -- dispatch ---------------------------------------------------------------

    def handle(self, envelope: Envelope) -> list[Envelope]:
        ctx = self._ctx
        if (
            envelope.federation != ctx.federation
            or envelope.round != ctx.round
            or envelope.sender != SERVER
            or envelope.receiver != self._me
        ):
            raise ProtocolError("envelope is not from the server to this site in this round")
        steps = {
            (m.SHARE_REQUEST, "advertised"): self._on_share_request,
            (m.MASKED_INPUT_REQUEST, "shared"): self._on_masked_input_request,
            (m.CONSISTENCY_REQUEST, "masked"): self._on_consistency_request,
            (m.UNMASK_REQUEST, "signed"): self._on_unmask_request,
        }
        step = steps.get((envelope.stage, self._stage))
        if step is None:
            raise ProtocolError(f"{envelope.stage!r} is out of order in stage {self._stage!r}")
        try:
            body = m.decode(envelope.stage, envelope.payload, cohort_size=len(ctx.cohort))
            return step(body)
        except (AbortError, WireError, IntegrityError) as exc:
            self._wipe()
            if isinstance(exc, AbortError):
                raise
            raise AbortError(f"the server sent an invalid {envelope.stage}: {exc}") from None

    def _check_signatures(self, signatures: dict[str, bytes]) -> None:
        """Cohort-wide round: Ed25519 signatures over the list this site signed, t from its
        holders and n - m (``plan.quorum``) from the cohort."""
        message = self._list_message()
        signers = set()
        for site, sig in signatures.items():
            if site not in self._u3:
                raise AbortError(f"consistency signature from {site!r}, not a survivor")
            try:
                verify(self._roster[site], message, sig)
            except IntegrityError:
                raise AbortError(
                    "consistency signatures do not all sign this survivor list"
                ) from None
            signers.add(site)
        if len(signers & self._holders) < self._plan.threshold:
            raise AbortError(f"{len(signers)} consistency signatures, below the threshold")
        if len(signers) < self._plan.quorum:  # one list for every honest site
            raise AbortError(
                f"{len(signers)} consistency signatures over this list; the round needs "
                f"{self._plan.quorum} from the cohort"
            )

    def _check_consistency(self, body: dict[str, Any]) -> None:
        """The n - m signatures over this site's list: Ed25519 each, or one BLS aggregate."""
        if self._bls is None:
            if "signatures" not in body:
                raise AbortError("the cohort-wide round needs each consistency signature")
            self._check_signatures(body["signatures"])
            return
        if "aggregate" not in body:
            raise AbortError("the neighbourhood round needs the aggregate consistency signature")
        check_aggregate(
            message=self._list_message(),
            cohort=self._ctx.cohort,
            survivors=self._u3,
            holders=self._holders,
            keys=self._bls_keys,
            signers_field=body["signers"],
            aggregate=body["aggregate"],
            threshold=self._plan.threshold,
            quorum=self._plan.quorum,
        )

    def _list_message(self) -> bytes:
        ctx = self._ctx
        if self._plan.local:  # BLS over the list and the round start (see _messages)
            return m.neighbourhood_list_message(
                ctx.federation, ctx.round, self._u3, run=ctx.run, round_digest=ctx.round_digest
            )
        return m.consistency_message(ctx.federation, ctx.round, self._u3, run=ctx.run)

    def _wipe(self) -> None:
        self._stage = "aborted"
        self._c = self._s = None
        self._b, self._x, self._held = b"", None, {}

    def _env(self, stage: str, payload: bytes) -> Envelope:
        return Envelope(
            federation=self._ctx.federation,
            round=self._ctx.round,
            stage=stage,
            sender=self._me,
            receiver=SERVER,
            payload=payload,
        )

    def _survivors(self, field: list[str] | bytes) -> list[str]:
        """A survivor list as ids, from ids or a cohort bitmap."""
        if isinstance(field, bytes):
            return m.unpack_members(self._ctx.cohort, field)
        return field

    # -- stage 2 ----------------------------------------------------------------

    def _on_share_request(self, body: dict[str, Any]) -> list[Envelope]:
        ctx, adverts = self._ctx, body["adverts"]
        assert self._c is not None and self._s is not None
        self._lists.members(list(adverts), "the key adverts")
        keys: list[bytes] = []
        for site, adv in adverts.items():
            if adv["digest"] != ctx.round_digest:
                raise AbortError(
                    f"{site!r} was given a different round start (model or settings) than this site"
                )
            message = m.advert_message(
                ctx.federation,
                ctx.round,
                site,
                adv["c_pk"],
                adv["s_pk"],
                adv["commit"],
                ctx.round_digest,
            )
            try:
                verify(self._roster[site], message, adv["sig"])
            except IntegrityError:
                raise AbortError(f"the key advert of {site!r} is not signed by {site!r}") from None
            keys += [adv["c_pk"], adv["s_pk"]]
        if len(set(keys)) != len(keys):
            raise AbortError("two key adverts carry the same public key")
        mine = adverts[self._me]
        if (mine["c_pk"], mine["s_pk"]) != (self._c.public_bytes(), self._s.public_bytes()):
            raise AbortError("the server altered this site's own key advert")
        self._adverts = adverts
        holders = sorted(self._holders & set(adverts))
        ids = [self._plan.share_id(h) for h in holders]
        t = self._plan.threshold
        s_sk = self._s.export_private(i_understand_this_exports_a_secret=True)
        s_shares = shamir.split(s_sk, threshold=t, share_ids=ids)
        b_shares = shamir.split(self._b, threshold=t, share_ids=ids)
        out: dict[str, bytes] = {}
        for h, x in zip(holders, ids, strict=True):
            if h == self._me:
                self._held[h] = (b"", b_shares[x])  # never reveal our own s-share
                continue
            key = share_key(self._c, adverts[h]["c_pk"], ctx, self._me, h)
            ad = aead.share_ad(ctx.federation, ctx.round, self._me, h, m.SHARE)
            out[h] = aead.seal(key, s_shares[x] + b_shares[x], associated_data=ad)
        self._stage = "shared"
        return [self._env(m.SHARE, m.encode(m.SHARE, shares=out))]

    # -- stage 3 ----------------------------------------------------------------

    def _on_masked_input_request(self, body: dict[str, Any]) -> list[Envelope]:
        ctx = self._ctx
        assert self._c is not None and self._s is not None and self._x is not None
        u2: list[str] = body["senders"]
        self._lists.members(u2, "the share senders", set(self._adverts))
        expected = (set(u2) & self._holders) - {self._me}
        if set(body["shares"]) != expected:
            raise AbortError("the server withheld or invented share ciphertexts")
        for sender, ct in body["shares"].items():
            key = share_key(self._c, self._adverts[sender]["c_pk"], ctx, sender, self._me)
            ad = aead.share_ad(ctx.federation, ctx.round, sender, self._me, m.SHARE)
            try:
                plain = aead.open_(key, ct, associated_data=ad)
            except IntegrityError:
                raise AbortError(f"the share from {sender!r} did not verify") from None
            self._held[sender] = (plain[:66], plain[66:])
        y, self._x = self._x, None  # masked in place: the update is not needed after this
        masks = [(self._b, +1)]
        for peer in sorted(set(u2) & self._plan.neighbours(self._me)):
            seed = pair_seed(self._s, self._adverts[peer]["s_pk"], ctx, self._me, peer)
            masks.append((seed, mask_sign(self._me, peer)))
        bits = self._plan.quant.bits
        prg.add_masks(y, masks, bits=bits)  # one cache-friendly pass, reduced mod 2**bits
        self._u2 = sorted(u2)
        self._b = b""  # b is no longer needed here
        self._s = None
        self._stage = "masked"
        fields: dict[str, Any] = {"bits": bits, "n": int(y.size), "y": m.pack_ring(y, bits)}
        if not self._plan.complete:  # which neighbours this input is masked with, signed
            peers = set(u2) & self._plan.neighbours(self._me)
            fields["masked_with"] = claim_masked_with(self._plan, ctx, self._me, peers, self._sk)
        payload = m.encode(m.MASKED_INPUT, **fields)
        return [self._env(m.MASKED_INPUT, payload)]

    # -- stage 4 ----------------------------------------------------------------

    def _on_consistency_request(self, body: dict[str, Any]) -> list[Envelope]:
        u3 = self._survivors(body["survivors"])
        if self._plan.local:  # the whole list, signed whole; this site checks its part
            self._lists.cohort_list(u3, "the survivor list")
            mine = self._holders & set(u3)
            if not mine <= set(self._u2):
                raise AbortError(
                    "the survivor list names neighbours that never shared: "
                    f"{sorted(mine - set(self._u2))}"
                )
            self._lists.local_part(mine, "the survivor list")
        else:
            self._lists.members(u3, "the survivor list", set(self._u2))
        self._u3 = tuple(sorted(u3))
        message = self._list_message()
        sig = self._sk.sign(message) if self._bls is None else self._bls.sign(message)
        self._stage = "signed"
        return [self._env(m.CONSISTENCY, m.encode(m.CONSISTENCY, sig=sig))]

    # -- stage 5 ----------------------------------------------------------------

    def _on_unmask_request(self, body: dict[str, Any]) -> list[Envelope]:
        survivors, dropped = self._survivors(body["survivors"]), body["dropped"]
        distinct(survivors, "the survivor list")
        distinct(dropped, "the dropped list")
        unknown = (set(survivors) | set(dropped)) - set(self._ctx.cohort)
        if unknown:
            raise AbortError(f"the server listed unknown ids {sorted(unknown)}")
        if self._me in dropped:
            raise AbortError("the server lists this site as dropped")
        if set(dropped) & set(self._u3):
            raise AbortError("the server lists as dropped a site whose masked input it received")
        if tuple(sorted(survivors)) != self._u3:
            raise AbortError("the survivor list differs from the one this site signed")
        if sorted(dropped) != sorted(set(self._u2) - set(self._u3)):
            raise AbortError("the dropped list does not match the share senders and survivors")
        self._check_consistency(body)
        if not self._plan.complete:  # each peer masked with every neighbour the list names
            check_peer_claims(
                self._plan,
                self._ctx,
                self._roster,
                self._u3,
                {p for p in self._u3 if p in self._held and p != self._me},
                body.get("peers", {}),
            )
        b_out = {p: self._held[p][1] for p in self._u3 if p in self._held}
        s_out = {p: self._held[p][0] for p in dropped if p in self._held}
        if set(b_out) & set(s_out):  # pragma: no cover - excluded by the checks above
            raise AbortError("refusing to reveal both shares of one site")
        self._wipe()
        self._stage = "done"
        return [self._env(m.UNMASK, m.encode(m.UNMASK, b=b_out, s=s_out))]
