"""Distributed DP against a cheating server and colluding sites.

Each test plays the adversary through the project's own API (the Site loop
over the memory transport, the sans-IO SecAgg+ halves) and asserts what
protects one honest site's update:

* its noise share is sized for t − c of the cohort the server opened, from
  the site's own threshold and colluders, and it is in what the site masks;
* a server that unmasks with fewer than t survivors (so fewer than t − c
  honest shares) gets no sum;
* a server re-opening a round (the same id again, another model, a
  restarted site) gets no second noisy view that the site's ledger did not
  charge; a new run's round is charged as a new release;
* a server model that makes the gradient sum non-finite gets nothing sent,
  and the round is charged.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from securefl.aggregation.base import RoundContext
from securefl.config import (
    DistributedConfig,
    DPConfig,
    FederationConfig,
    RoundConfig,
    TrainConfig,
)
from securefl.errors import AbortError, ConfigError, ProtocolError, SecureFLError
from securefl.hazmat.sign import SigningKey
from securefl.params import ParamSpec, model_vector
from securefl.runtime import messages as m
from securefl.runtime._distributed import DistributedPlan, distributed_site_mode
from securefl.runtime.global_model import PlainGlobalModel
from securefl.runtime.site import Site
from securefl.secagg import (
    MASKED_INPUT,
    STAGES,
    UNMASK,
    IntegerMaskServer,
    IntegerMaskServerMode,
    IntegerMaskSite,
    IntegerMaskSiteMode,
    IntegerRing,
    MaskConfig,
    bls_entry,
)
from securefl.transport import MemoryHub
from securefl.wire import SERVER, Envelope, pack, unpack

N_EXAMPLES = 40
CLIP = 0.5


def _config(
    *, roster: int = 3, corrupt: int | None = None, rounds: int = 4, mask: MaskConfig | None = None
) -> FederationConfig:
    return FederationConfig(
        name="f",
        privacy="distributed",
        distributed=DistributedConfig(sample_rate=0.5, records=roster * N_EXAMPLES, scale_bits=10),
        dp=DPConfig(epsilon=2.0, delta=1e-5, max_grad_norm=CLIP),
        train=TrainConfig(learning_rate=1.0),
        rounds=RoundConfig(max_rounds=rounds, min_sites=2, stage_timeout_seconds=5),
        mask=mask or MaskConfig(clip=1.0, corrupt=corrupt),
    )


def _names(n: int) -> tuple[str, ...]:
    if n <= 10:
        return tuple("abcdefghij"[:n])
    return ("a", *(f"s{i:03d}" for i in range(1, n)))


class Harness:
    """Site "a" of a federation (three sites unless told); the test is the server."""

    def __init__(
        self,
        tmp: Path,
        *,
        features: int = 3,
        roster: int = 3,
        mask: MaskConfig | None = None,
        plan_mask: MaskConfig | None = None,
    ) -> None:
        self.tmp, self.features = tmp, features
        self.config = _config(roster=roster, mask=mask)
        self.roster = _names(roster)
        torch.manual_seed(0)
        self.init = nn.Sequential(nn.Linear(features, 2)).state_dict()
        dimension = 2 * features + 2
        self.plan = DistributedPlan.from_config(
            self.config, dimension=dimension, federation_size=len(self.roster)
        )
        if plan_mask is not None:  # a plan assembled by hand, past FederationConfig's checks
            self.plan = dataclasses.replace(self.plan, mask=plan_mask)
        self.keys = {n: SigningKey.generate() for n in self.roster}
        self.data = TensorDataset(
            torch.randn(N_EXAMPLES, features), torch.randint(0, 2, (N_EXAMPLES,))
        )
        self.site, self.opt = self.new_site()

    def new_site(self) -> tuple[Site, torch.optim.Optimizer]:
        """The site process (again, after a restart): same keys and state folder."""
        self.hub = MemoryHub()  # a restarted process connects afresh
        self.server = self.hub.connect(SERVER)
        identity = {n: k.public_bytes() for n, k in self.keys.items()}
        site = Site(
            name="a",
            federation="f",
            transport=self.hub.connect("a"),
            mode=distributed_site_mode(
                self.plan,
                name="a",
                signing_key=self.keys["a"],
                identity_keys=identity,
                state_dir=self.tmp,
                bls_roster={n: bls_entry(k) for n, k in self.keys.items()}
                if self.plan.mask.neighbourhood
                else None,
            ),
            dp=self.config.dp,
            train=self.config.train,
            rounds=self.config.rounds,
            state_dir=self.tmp,
            roster=self.roster,
            distributed=self.plan,
        )
        model = nn.Sequential(nn.Linear(self.features, 2))
        model.load_state_dict(self.init)
        model, opt, _ = site.privatize(
            model, torch.optim.SGD(model.parameters(), lr=0.1), DataLoader(self.data)
        )
        self.model = model
        return site, opt

    def send(self, rnd: int, stage: str, payload: bytes) -> None:
        self.server.send(
            Envelope(
                federation="f", round=rnd, stage=stage, sender=SERVER, receiver="a", payload=payload
            )
        )

    def open(self, rnd: int = 1, *, run: str = "0f", shift: float = 0.0) -> None:
        spec = ParamSpec.from_state_dict(self.model._module.state_dict())
        params = model_vector(self.model, spec) + np.float32(shift)
        fields = {
            "cohort": list(self.roster),
            "model": PlainGlobalModel(params).payload(),
            "spec": spec.to_dict(),
            "max_weight": 1000.0,
            "min_sites": 2,
            "run": run,
            "config": {"distributed": self.plan.announced()},
        }
        self.send(rnd, m.ROUND_START, pack(fields))

    def end(self, rnd: int) -> None:
        self.send(rnd, m.ROUND_END, m.RoundEnd(status="abandoned", reason="test").to_bytes())

    def finish(self) -> None:
        spec = ParamSpec.from_state_dict(self.model._module.state_dict())
        payload = PlainGlobalModel(model_vector(self.model, spec)).payload()
        self.send(0, m.FINISH, m.Finish(model=payload, reason="done", rounds=1).to_bytes())

    def stages(self) -> list[str]:
        out = []
        while (env := self.server.receive(timeout=0.05)) is not None:
            out.append(env.stage)
        return out

    def step(self, rnd: Any) -> None:
        x, y = rnd.batch()
        self.opt.zero_grad()
        out = self.model(x)
        loss = nn.functional.cross_entropy(out, y) if len(y) else out.sum()
        loss.backward()
        self.opt.step()

    def committed(self) -> list[Any]:
        return [e for e in self.site.ledger.history() if e.status == "committed"]


@pytest.fixture
def masked(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """Every integer vector a site hands to SecAgg+ (what its masked input carries)."""
    seen: list[np.ndarray] = []
    original = IntegerMaskSite.submit_integers

    def spy(self: IntegerMaskSite, values: Any) -> list[Envelope]:
        seen.append(np.array(values, dtype=np.int64))
        return original(self, values)

    monkeypatch.setattr(IntegerMaskSite, "submit_integers", spy)
    return seen


# ------------------------------------------- (a, d) the share is sized for t − c


@pytest.mark.parametrize("roster, corrupt", [(7, 2), (7, None), (10, 3), (5, 1)])
def test_each_cohort_the_server_may_open_gets_a_share_for_its_own_t_minus_c(roster, corrupt):
    """The server picks the cohort, so it picks t; every t it can pick still leaves μ.

    The share is sized from the threshold the site's SecAgg+ half splits its
    secrets with (the same plan, from the site's own roster) and the colluders
    of the whole roster: any t survivors of whom c collude carry at least μ.
    A cohort below c + 2 is refused before a share exists.
    """
    config = _config(roster=roster, corrupt=corrupt)
    plan = DistributedPlan.from_config(config, dimension=8, federation_size=roster)
    names = _names(roster)
    keys = {n: SigningKey.generate() for n in names}
    identity = {n: k.public_bytes() for n, k in keys.items()}
    c = config.mask.assumed_colluders(roster)
    smallest = config.mask.smallest_cohort(roster)
    mu = Fraction(plan.mu_total)
    for size in range(config.mask.min_cohort, roster + 1):
        cohort = names[:size]
        if size < smallest:
            with pytest.raises(ConfigError, match="cohort"):
                plan.share(federation="f", round_id=1, cohort=cohort)
            continue
        share = plan.share(federation="f", round_id=1, cohort=cohort)
        mode = IntegerMaskSiteMode(
            site_id="a",
            signing_key=keys["a"],
            roster=identity,
            state_path=Path("/nonexistent/never-written.json"),
            config=config.mask,
            ring=plan.ring,
        )
        ctx = RoundContext(
            federation="f",
            round=1,
            cohort=cohort,
            dimension=8,
            max_weight=1.0,
            round_digest=bytes(32),
        )
        half = mode.site(ctx, "a")
        t = half._plan.threshold  # what this site's secrets are Shamir-split with
        assert (share.threshold, share.colluders) == (t, c)
        assert half._plan.colluders_tolerated >= c  # the masking withstands the c assumed
        assert share.variance == mu / (t - c)
        # the adversary's worst view: t survivors, c of them colluders removing their shares
        assert (t - c) * share.variance >= mu


# ------------------------------------------------------ (d) the noise is in it


def test_what_the_site_masks_carries_its_full_noise_share(tmp_path, masked):
    """The integer vector handed to SecAgg+ is R(γ·S) + Sk(μ/(t − c)), not R(γ·S).

    A site that submitted without its share, or with a share sized for one
    honest survivor less or more, shows a residual variance far from μ/(t − c).
    """
    h = Harness(tmp_path, features=60)  # 122 coordinates
    ratios = []
    h.open(1)
    rounds = h.site.rounds(h.model)
    rnd = next(rounds)
    h.step(rnd)
    rnd.submit()
    (sent,) = masked
    dd = h.site._dd
    assert dd is not None and dd._sum is not None and dd._share is not None
    assert dd._share.contributors == 3  # t = 3 of 3, c = 0
    residual = sent - h.plan.scale * dd._sum  # the noise, up to the rounding (< 1)
    expected = h.plan.mu_total / 3
    ratios.append(float(np.mean(residual**2)) / expected)
    rounds.close()
    # 122 draws: the mean square of Sk(v) over v lies in [0.5, 1.7] but with probability < 1e-5
    assert 0.5 < ratios[0] < 1.7, ratios


# ------------------------------------- (a) fewer than t survivors: no unmasking


def _integer_round(
    tmp: Path, *, site_config: MaskConfig, server_config: MaskConfig, drop: set[str]
) -> tuple[IntegerMaskServer, dict[str, list[str]], dict[str, Any]]:
    """Five sites on the integer path; the server runs its own plan and drops ``drop``."""
    names = _names(5)
    keys = {n: SigningKey.generate() for n in names}
    roster = {n: k.public_bytes() for n, k in keys.items()}
    ring = IntegerRing(bits=24, magnitude_bound=1 << 20)
    ctx = RoundContext(
        federation="f", round=1, cohort=names, dimension=16, max_weight=1.0, round_digest=bytes(32)
    )
    server = IntegerMaskServerMode(roster=roster, config=server_config, ring=ring).server(ctx)
    assert isinstance(server, IntegerMaskServer)
    sites: dict[str, Any] = {}
    sent: dict[str, list[str]] = {n: [] for n in names}
    aborted: dict[str, Any] = {}
    outbox: list[Envelope] = []
    for n in names:
        mode = IntegerMaskSiteMode(
            site_id=n,
            signing_key=keys[n],
            roster=roster,
            state_path=tmp / f"{n}.json",
            config=site_config,
            ring=ring,
        )
        sites[n] = mode.site(ctx, n)
        outbox += sites[n].submit_integers(np.arange(16, dtype=np.int64))
    try:
        while server.integer_result is None:
            if not outbox:
                outbox += server.on_deadline()
                continue
            env = outbox.pop(0)
            if env.receiver == SERVER:
                if env.sender in drop and STAGES.index(env.stage) >= STAGES.index(MASKED_INPUT):
                    continue  # declared dropped: its masked input is left out of the sum
                if env.stage == UNMASK:
                    sent[env.sender].append(str(sorted(unpack(env.payload).get("b", {}))))
                outbox += server.handle(env)
            elif env.receiver not in aborted:
                try:
                    outbox += sites[env.receiver].handle(env)
                except AbortError as exc:
                    aborted[env.receiver] = exc
    except AbortError as exc:
        aborted[SERVER] = exc
    return server, sent, aborted


def test_a_server_unmasking_with_fewer_than_t_survivors_gets_no_sum(tmp_path):
    """Five sites, c = 1 colluder assumed: t = 4 and each share is μ/3.

    The cheating server runs its own plan with t = 3 and drops two honest
    sites after their masked inputs: three survivors, one a colluder, would
    leave two honest shares, 2μ/3. The honest survivors see a survivor list
    below their own t and refuse to reveal any mask seed: no sum.
    """
    site_config = MaskConfig(clip=1.0, corrupt=1)
    server_config = MaskConfig(clip=1.0, corrupt=0, threshold=3)
    server, sent, aborted = _integer_round(
        tmp_path, site_config=site_config, server_config=server_config, drop={"b", "c"}
    )
    assert server.integer_result is None
    for honest in ("a", "d"):  # "e" is the colluder: whatever it reveals, it is one of t
        assert sent[honest] == []
        assert honest in aborted
    # control: a server on the sites' own plan, one site dropped: t = 4 survivors, a sum
    (tmp_path / "ok").mkdir()
    server, _sent, aborted = _integer_round(
        tmp_path / "ok", site_config=site_config, server_config=site_config, drop={"b"}
    )
    assert server.integer_result is not None and aborted == {}, aborted
    assert list(server.integer_result.values) == [4 * i for i in range(16)]


# ----------------------------------- (b, f) a round re-opened: no uncharged view


def test_a_server_reopening_a_round_gets_no_second_view_the_ledger_did_not_charge(tmp_path, masked):
    """Round 1 again (same model, then another model): dropped or refused, never re-sent.

    Two noisy views of one round's batch, averaged, halve the noise. Each
    masked vector the site hands out must match one committed ledger row. A
    new run's round 1 is a new release, and is charged as one.
    """
    h = Harness(tmp_path)
    h.open(1)
    rounds = h.site.rounds(h.model)
    rnd = next(rounds)
    h.step(rnd)
    rnd.submit()
    spent = h.site.ledger.spent()
    assert len(masked) == len(h.committed()) == 1
    h.end(1)
    h.open(1)  # the same round start again: dropped, as a restarted site's re-delivery
    h.end(1)
    h.open(1, shift=0.5)  # round 1 with another model: a server going back
    with pytest.raises(ProtocolError, match="round ids only increase"):
        next(rounds)
    assert len(masked) == len(h.committed()) == 1
    assert h.site.ledger.spent() == spent


def test_a_new_runs_round_is_charged_as_a_new_release(tmp_path, masked):
    h = Harness(tmp_path)
    h.open(1)
    rounds = h.site.rounds(h.model)
    rnd = next(rounds)
    h.step(rnd)
    rnd.submit()
    spent = h.site.ledger.spent()
    h.end(1)
    h.open(1, run="1f")  # another server state folder: round ids start again
    rnd = next(rounds)
    h.step(rnd)
    rnd.submit()
    assert len(masked) == len(h.committed()) == 2
    assert h.site.ledger.spent() > spent
    rounds.close()


def test_a_restarted_site_gives_no_second_view_of_an_interrupted_round(tmp_path, masked):
    """The process dies between the reservation and the submit; the server replays round 1.

    The restarted site charges the interrupted round in full as planned, drops
    the replayed round start, refuses round 1 with another model, and hands
    nothing to SecAgg+: the batch drawn before the crash is never released,
    and what was reserved is charged.
    """
    h = Harness(tmp_path)
    h.open(1)
    crashed = h.site.rounds(h.model)
    rnd = next(crashed)
    h.step(rnd)  # trained, not submitted: the process dies here (no finally runs)
    (pending,) = h.site.ledger.history()
    assert pending.status == "pending"
    h.site, h.opt = h.new_site()  # restart on the same state folder
    (entry,) = h.site.ledger.history()
    assert entry.status == "committed" and entry.round_id == 1
    spent = h.site.ledger.spent()
    h.open(1)  # replayed
    h.finish()
    assert list(h.site.rounds(h.model)) == []
    assert masked == []
    assert h.site.ledger.spent() == spent and len(h.site.ledger.history()) == 1
    h.site, h.opt = h.new_site()
    h.open(1, shift=0.5)  # the same round with another model: a fresh view
    with pytest.raises(ProtocolError, match="round ids only increase"):
        list(h.site.rounds(h.model))
    assert masked == []
    assert h.site.ledger.spent() == spent and len(h.site.ledger.history()) == 1
    crashed.close()  # only now: the dead process's round never ends in this one


# ------------------------------------ (c, f) a hostile model: nothing sent, charged


def test_a_server_model_that_overflows_the_gradients_gets_nothing_and_is_charged(tmp_path, masked):
    """Weights near float32's maximum make the per-example gradients non-finite.

    Clipping cannot bound a NaN; the site refuses to round or mask the sum,
    sends nothing masked, and charges the round it reserved (the batch was
    drawn and used).
    """
    h = Harness(tmp_path)
    h.open(1, shift=3e38)
    rounds = h.site.rounds(h.model)
    rnd = next(rounds)
    h.step(rnd)
    dd = h.site._dd
    assert dd is not None and dd._sum is not None and not np.all(np.isfinite(dd._sum))
    with pytest.raises(SecureFLError):  # refused by the site, whichever check sees it first
        rnd.submit()
    assert masked == []
    (entry,) = h.site.ledger.history()
    assert entry.status == "committed"
    assert MASKED_INPUT not in h.stages()
    rounds.close()


def test_each_round_draws_fresh_noise_so_two_rounds_do_not_cancel(tmp_path, masked):
    """A server that keeps the model still for two rounds sees two noisy views.

    Each is charged; they must also be independent: a share reused (or drawn
    from a repeated key) would cancel in the difference of the two rounds,
    leaving the difference of two clipped sums with no noise at all.
    """
    h = Harness(tmp_path, features=60)
    rounds = h.site.rounds(h.model)
    residuals = []
    for number in (1, 2):
        h.open(number)  # the same global model both times
        rnd = next(rounds)
        h.step(rnd)
        rnd.submit()
        dd = h.site._dd
        assert dd is not None and dd._sum is not None
        residuals.append(masked[-1] - h.plan.scale * dd._sum)
        h.end(number)
    assert len(h.committed()) == 2
    first, second = residuals
    expected = h.plan.mu_total / 3
    # the noise of the difference is Sk(2μ/3) when fresh; 0 when a share repeats
    ratio = float(np.mean((first - second) ** 2)) / (2 * expected)
    assert 0.5 < ratio < 1.7, ratio
    rounds.close()


# --------------- (a) a masking round that withstands fewer colluders than c


def test_the_neighbourhood_round_sizes_shares_for_the_plans_colluder_count() -> None:
    """privacy = "distributed" with mask.neighbourhood = true: the file loads, and the
    share a site takes is sized from the neighbourhood plan's own count (the cohort-wide
    formula), so c colluders within it leave the sum with μ."""
    roster = 100
    mask = MaskConfig(clip=1.0, neighbourhood=True)
    config = _config(roster=roster, mask=mask)
    plan = DistributedPlan.from_config(config, dimension=8, federation_size=roster)
    cohort = _names(roster)
    share = plan.share(federation="f", round_id=1, cohort=cohort)
    mask_plan = mask.plan(federation="f", round_id=1, cohort=cohort, federation_size=roster)
    assert mask_plan.local and mask_plan.colluders_tolerated >= share.colluders == 33
    assert share.threshold == mask_plan.threshold
    # t - c honest shares of μ / (t - c) each: μ survives c colluders subtracting theirs
    assert share.variance * (share.threshold - share.colluders) == plan.mu_total


@pytest.mark.parametrize("neighbourhood", [False, True], ids=["cohort-wide", "neighbourhood"])
def test_a_round_whose_masking_withstands_fewer_than_c_colluders_is_refused(
    tmp_path, neighbourhood
):
    """The share assumes masking withstands c colluders; the round must, or no share.

    A cohort of 10 on the k-regular graph (complete_graph_max = 3, no
    dropouts: k = 8, t = 9, m = 0) withstands 7 colluders for any placement
    (``MaskPlan.colluders_tolerated``: cutting the ring needs k − m = 8); the
    neighbourhood round proves the same cohort-wide consistency count with
    one BLS aggregate, so its count is the same. A share sized for c = 8
    colluders (t − c = 1: the share itself could be made) would promise μ the
    masking cannot deliver: 8 colluders may cut the ring and read a partial
    sum of fewer than t − c honest shares. The site must refuse before it
    reserves anything, in either round.
    """
    roster = 10
    mask = MaskConfig(
        clip=1.0,
        corrupt=8,
        neighbourhood=neighbourhood,
        complete_graph_max=3,
        dropout_rate=0.0,
        corrupt_rate=0.01,
    )
    h = Harness(tmp_path, roster=roster, mask=mask)
    cohort = h.roster
    mask_plan = mask.plan(federation="f", round_id=1, cohort=cohort, federation_size=roster)
    assert mask_plan.local == neighbourhood and (mask_plan.k, mask_plan.threshold) == (8, 9)
    assert mask_plan.colluders_tolerated == 7 < mask.assumed_colluders(roster) == 8
    h.open(1)
    rounds = h.site.rounds(h.model)
    try:
        with pytest.raises(ConfigError, match="colluders"):
            next(rounds)  # the round start: refused before the ledger reserves
    finally:
        rounds.close()
    assert h.site.ledger.history() == []
    assert MASKED_INPUT not in h.stages()
