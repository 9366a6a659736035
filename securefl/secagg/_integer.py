"""SecAgg+ on integer inputs: sites submit vectors mod 2^bits, the server learns their sum.

The distributed-DP path (``docs/distributed_dp.md``): each site's input is
already an integer vector (its rounded, scaled clipped gradient sum plus its
Skellam noise share), so this path differs from the float path in three
ways and shares every protocol stage with it:

* no quantization, no per-site L-infinity clip: clipping the noisy share
  would change the noise's law, and the privacy analysis assumes none;
* no weight slot: per-site batch sizes stay private (the caller divides the
  sum by the public expected batch size);
* the ring Z_2^bits is fixed by the distributed-DP ring plan
  (:func:`securefl.dp.distributed.ring_plan`), not by a clip and a precision.

The server lifts the unmasked sum to the signed range [-2^(bits-1),
2^(bits-1)) and refuses it when a coordinate lies beyond
:attr:`IntegerRing.magnitude_bound`, the largest magnitude an honest round
reaches except with the plan's small probability: a wrap, or a site that
sent more than clipping allows. A refused round costs accuracy (one lost
step), never privacy: the noise was added in the integers before any
reduction. The threshold, graph, dropout recovery and consistency checks are
those of :mod:`securefl.secagg` (the ``MaskConfig`` given; its ``clip``,
``bits`` and ``precision_bits`` are not used here).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from securefl.aggregation.base import (
    AggregateResult,
    RoundContext,
    ServerAggregator,
    SiteAggregator,
)
from securefl.errors import AbortError, ConfigError, ProtocolError
from securefl.hazmat.quantize import QuantizationParams
from securefl.hazmat.sign import SigningKey
from securefl.secagg._config import MaskConfig
from securefl.secagg._mode import MaskServerMode, MaskSiteMode
from securefl.secagg._multisig import BlsRoster, NeighbourhoodSigner
from securefl.secagg._server import MaskServer, ServerStage
from securefl.secagg._site import MaskSite
from securefl.secagg._state import RoundLog
from securefl.wire import Envelope

__all__ = [
    "IntegerMaskServer",
    "IntegerMaskServerMode",
    "IntegerMaskSite",
    "IntegerMaskSiteMode",
    "IntegerRing",
    "IntegerSum",
]

_MIN_BITS, _MAX_BITS = 16, 32  # the mask wire format packs 2, 3 or 4 bytes per value


@dataclass(frozen=True, kw_only=True)
class IntegerRing:
    """The ring Z_2^``bits`` and the largest |Σ_j| an honest round reaches.

    Build it from :class:`securefl.dp.distributed.RingPlan` with
    :meth:`from_plan`; ``magnitude_bound`` must fit the signed range.
    """

    bits: int
    magnitude_bound: int

    def __post_init__(self) -> None:
        b, mb = self.bits, self.magnitude_bound
        if isinstance(b, bool) or not isinstance(b, int) or not _MIN_BITS <= b <= _MAX_BITS:
            raise ConfigError(f"ring bits must be an int in {_MIN_BITS}..{_MAX_BITS}, got {b!r}")
        if isinstance(mb, bool) or not isinstance(mb, int) or not 1 <= mb < 1 << (b - 1):
            raise ConfigError(
                f"magnitude_bound must be an int in [1, 2^{b - 1}), got {mb!r}; "
                "size the ring with securefl.dp.distributed.ring_plan"
            )

    @classmethod
    def from_plan(cls, plan: object) -> IntegerRing:
        """From a ``RingPlan`` (bits raised to the wire format's 16 when smaller)."""
        bits = getattr(plan, "bits", None)
        bound = getattr(plan, "magnitude_bound", None)
        if not isinstance(bits, int) or not isinstance(bound, int):
            raise ConfigError("from_plan takes a securefl.dp.distributed.RingPlan")
        return cls(bits=max(bits, _MIN_BITS), magnitude_bound=bound)

    def _carrier(self) -> QuantizationParams:
        # MaskPlan carries its ring size in a QuantizationParams; the integer
        # path never quantizes, so only ``bits`` of this one is ever read.
        return QuantizationParams(clip=1.0, bits=self.bits, max_summands=1, precision_bits=1)


@dataclass(frozen=True)
class IntegerSum:
    """The unmasked sum: exact signed integers, the survivors, and the ring."""

    values: npt.NDArray[np.int64]
    survivors: tuple[str, ...]
    bits: int


def _integer_plan(half: MaskSite | MaskServer, ring: IntegerRing) -> None:
    half._plan = dataclasses.replace(half._plan, quant=ring._carrier())


class IntegerMaskSite(MaskSite):
    """A site's half of one masked round on an integer vector (:meth:`submit_integers`)."""

    def __init__(
        self,
        *,
        ctx: RoundContext,
        site_id: str,
        signing_key: SigningKey,
        roster: dict[str, bytes],
        log: RoundLog,
        config: MaskConfig,
        ring: IntegerRing,
        bls_keys: Mapping[str, bytes] | None = None,
        bls_signer: NeighbourhoodSigner | None = None,
    ) -> None:
        super().__init__(
            ctx=ctx,
            site_id=site_id,
            signing_key=signing_key,
            roster=roster,
            log=log,
            config=config,
            bls_keys=bls_keys,
            bls_signer=bls_signer,
        )
        self._ring = ring
        _integer_plan(self, ring)

    def submit(self, vector: npt.NDArray[np.float32], weight: float) -> list[Envelope]:
        raise ProtocolError("the integer path takes submit_integers(values), not a weighted float")

    def submit_integers(self, values: npt.NDArray[np.signedinteger]) -> list[Envelope]:
        """Mask ``values`` (``ctx.dimension`` signed integers) mod 2^bits and advertise.

        Every value is reduced in two's complement: the sum mod 2^bits is the
        true sum whenever it lies in the signed range, which the ring plan
        makes overwhelmingly likely. No clip: the noise's law stays intact.
        """
        if self._stage != "idle":
            raise ProtocolError("update already submitted this round")
        arr = np.asarray(values)
        if arr.ndim != 1 or arr.shape[0] != self._ctx.dimension or arr.dtype.kind != "i":
            raise ProtocolError(f"integer update must be {self._ctx.dimension} signed integers")
        mask = np.int64((1 << self._ring.bits) - 1)
        x = np.bitwise_and(arr.astype(np.int64), mask).astype(np.uint32)
        # durable before anything leaves
        self._log.claim(self._ctx.federation, self._ctx.round, self._ctx.run)
        return self._advertise(x)


class IntegerMaskServer(MaskServer):
    """The server's half on integer inputs: no weight slot, refuses a sum beyond the bound."""

    def __init__(
        self,
        *,
        ctx: RoundContext,
        roster: dict[str, bytes],
        config: MaskConfig,
        ring: IntegerRing,
        bls_keys: Mapping[str, bytes] | None = None,
    ) -> None:
        self._ring = ring
        super().__init__(ctx=ctx, roster=roster, config=config, bls_keys=bls_keys)
        _integer_plan(self, ring)
        self._integer: IntegerSum | None = None

    def _slots(self) -> int:
        return self._ctx.dimension  # no weight slot

    @property
    def integer_result(self) -> IntegerSum | None:
        """The exact integer sum once the round completed, else ``None``."""
        return self._integer

    def _conclude(self, total: npt.NDArray[np.uint32], u3: list[str]) -> list[Envelope]:
        bits = self._ring.bits
        lifted = total.astype(np.int64)
        lifted[lifted >= 1 << (bits - 1)] -= 1 << bits
        peak = int(np.max(np.abs(lifted))) if lifted.size else 0
        self._scratch = self._total = np.zeros(0, dtype=np.uint32)  # release the buffers
        if peak > self._ring.magnitude_bound:
            self._stage = ServerStage.ABORTED
            raise AbortError(
                f"the unmasked sum reaches {peak}, beyond the ring plan's bound "
                f"{self._ring.magnitude_bound}: the noisy sum wrapped Z_2^{bits} (a rare event "
                "the ring was sized against) or a site sent more than clipping allows; "
                "the round is rejected"
            )
        self._stage = ServerStage.DONE
        self._integer = IntegerSum(values=lifted, survivors=tuple(u3), bits=bits)
        # The runtime's seam: no weight slot, so total_weight is 1 and the
        # caller divides by the public expected batch size (post-processing).
        self._result = AggregateResult(
            total_weight=1.0, weighted_sum=lifted.astype(np.float64), survivors=tuple(u3)
        )
        return []


class IntegerMaskSiteMode(MaskSiteMode):
    """A site's side of the integer path; its halves are :class:`IntegerMaskSite`."""

    def __init__(
        self,
        *,
        site_id: str,
        signing_key: SigningKey,
        roster: Mapping[str, bytes],
        state_path: Path,
        config: MaskConfig,
        ring: IntegerRing,
        bls_roster: BlsRoster | None = None,
    ) -> None:
        if not isinstance(ring, IntegerRing):
            raise ConfigError("ring must be an IntegerRing")
        super().__init__(
            site_id=site_id,
            signing_key=signing_key,
            roster=roster,
            state_path=state_path,
            config=config,
            bls_roster=bls_roster,
        )
        self._ring = ring

    def site(self, ctx: RoundContext, site_id: str) -> SiteAggregator:
        base = super().site(ctx, site_id)  # the mode's checks (keys, roster, cohort)
        assert isinstance(base, MaskSite)
        return IntegerMaskSite(
            ctx=ctx,
            site_id=site_id,
            signing_key=self._key,
            roster=self._roster,
            log=self._log,
            config=self._config,
            ring=self._ring,
            bls_keys=self._bls,
            bls_signer=self._signer,
        )


class IntegerMaskServerMode(MaskServerMode):
    """The server's side of the integer path: public keys only."""

    def __init__(
        self,
        *,
        roster: Mapping[str, bytes],
        config: MaskConfig,
        ring: IntegerRing,
        bls_roster: BlsRoster | None = None,
    ) -> None:
        if not isinstance(ring, IntegerRing):
            raise ConfigError("ring must be an IntegerRing")
        super().__init__(roster=roster, config=config, bls_roster=bls_roster)
        self._ring = ring

    def server(self, ctx: RoundContext) -> ServerAggregator:
        super().server(ctx)  # the mode's checks
        return IntegerMaskServer(
            ctx=ctx, roster=self._roster, config=self._config, ring=self._ring, bls_keys=self._bls
        )
