"""Removal entries for the claim rows of ``threat_models/dp.md``."""

from __future__ import annotations

from ._common import (
    _ACC,
    _CHAIN,
    _LEDGER,
    _PRIV,
    _WIRE,
    _XCHECK,
    Removal,
    Row,
    _off,
)

#: the link check of a round id not above its parent's
_LINK_ORDER = '        and (parent.record["round_id"] >= rec["round_id"])\n'

ROWS: tuple[Row, ...] = (
    Row(
        "dp-event-validation",
        "dp.md",
        "Every round is recorded as an immutable, validated event",
        (
            _off("securefl/dp/events.py", "sigma <= 0"),
            _off("securefl/dp/events.py", "not 0.0 < q <= 1.0"),
            _off("securefl/dp/events.py", "clip <= 0"),
        ),
    ),
    Row(
        "dp-budget-before-training",
        "dp.md",
        "The budget is enforced *before* training",
        (
            Removal(
                _LEDGER,
                "            if after > self.epsilon_budget:\n                spent",
                "            if False:\n                spent",
            ),
        ),
    ),
    Row(
        "dp-pending-counts",
        "dp.md",
        "Fail closed on crash",
        (
            Removal(
                _LEDGER,
                "recorded = [e.event for e in self._rows(cur)]",
                'recorded = [e.event for e in self._rows(cur) if e.status == "committed"]',
            ),
        ),
    ),
    Row(
        "dp-commit-over-budget",
        "dp.md",
        "A round that ran over budget is still recorded as spent",
        (
            Removal(
                _LEDGER,
                "        if after > self.epsilon_budget:\n            raise BudgetExhaustedError(",
                "        if False:\n            raise BudgetExhaustedError(",
            ),
        ),
    ),
    Row(
        "dp-round-id-reuse",
        "dp.md",
        "A round id is never reused",
        (_off(_LEDGER, "row is not None"),),
    ),
    Row(
        "dp-steps-counted",
        "dp.md",
        "The steps recorded are the noisy optimizer steps actually taken",
        (Removal(_PRIV, "        counter()\n        if charge", "        if charge"),),
    ),
    Row(
        "dp-zero-noise",
        "dp.md",
        "Zero noise or zero clipping is refused",
        (
            (
                Removal(_PRIV, " or not value > 0:", ":"),
                Removal("securefl/dp/noise.py", "math.isfinite(value) and value > 0", "True"),
            ),
        ),
    ),
    Row(
        "dp-seed",
        "dp.md",
        "A user's `torch.manual_seed` does not make the noise or the batches reproducible",
        (
            Removal(_PRIV, "noise_generator=_urandom_generator(),", "noise_generator=None,"),
            Removal(_PRIV, "        loader.generator = _urandom_generator()\n", ""),
            Removal(
                "securefl/dp/_secure_opacus.py",
                "self.secure_noise = noise or SecureGaussianNoise(",
                "self.secure_noise = noise or SecureGaussianNoise._from_parts(key=bytes(32), ",
            ),
            Removal(
                _PRIV,
                "poisson = secure_poisson_loader(loader)",
                "poisson = secure_poisson_loader(loader, key=bytes(32))",
            ),
        ),
    ),
    Row(
        "dp-poisson",
        "dp.md",
        "Poisson batches from the CSPRNG vary in size",
        (
            Removal(_PRIV, "poisson_sampling=True,", "poisson_sampling=False,"),
            Removal(_PRIV, "poisson = secure_poisson_loader(loader)", "poisson = loader"),
        ),
    ),
    Row(
        "dp-non-finite-gradient",
        "dp.md",
        "σ <= 0, NaN or infinite, and a non-finite gradient sum",
        (_off("securefl/dp/noise.py", "not np.all(np.isfinite(flat))"),),
    ),
    Row(
        "dp-record-signature",
        "dp.md",
        "An edited record fails its signature",
        (_off(_CHAIN, "not verify_signature(rec, public_key)"),),
    ),
    Row(
        "dp-record-chain",
        "dp.md",
        "A record removed, replayed, reordered or forked fails the chain",
        (
            _off(_CHAIN, 'rec["prev_hash"] != GENESIS_HASH and parent is None'),
            (  # a replayed round: the link order and the file order both see it
                Removal(_CHAIN, _LINK_ORDER, "        and False\n"),
                Removal(
                    _CHAIN,
                    'before.record["round_id"] >= rec["round_id"]\n        )',
                    "False\n        )",
                ),
            ),
            Removal(_CHAIN, "        for extra in kids[1:]:", "        for extra in kids[9:]:"),
        ),
    ),
    Row(
        "dp-events-strict",
        "dp.md",
        "Events survive a JSON round trip exactly, and an unknown field is refused",
        (_off("securefl/dp/events.py", "unknown"),),
    ),
    Row(
        "dp-delta",
        "dp.md",
        "A δ that protects no one is refused",
        (_off("securefl/config.py", "delta >= 1.0 / num_examples"),),
    ),
    Row(
        "dp-delta-below-one-over-n",
        "dp.md",
        "δ is refused unless below 1/n at each site",
        (_off("securefl/config.py", "delta >= 1.0 / num_examples"),),
    ),
    Row(
        "dp-ledger-terms",
        "dp.md",
        "A ledger's site, δ and accountant cannot change",
        (
            _off("securefl/dp/_ledger_schema.py", "stored.get(key) != value"),
            _off("securefl/dp/_ledger_schema.py", "budget > old and not allow_increase"),
        ),
    ),
    Row(
        "dp-ledger-race",
        "dp.md",
        "Two processes sharing a ledger cannot both spend the same headroom",
        (Removal(_LEDGER, 'cur.execute("BEGIN IMMEDIATE")', 'cur.execute("BEGIN")'),),
    ),
    Row(
        "dp-shuffle-refused",
        "dp.md",
        "A sampling scheme without an accountant (shuffling) is refused",
        (  # the check of the local DP-SGD events (Skellam events have their own)
            Removal(
                _ACC,
                'type(event).__name__}")\n        if not supports(accountant, event):',
                'type(event).__name__}")\n        if False:',
            ),
        ),
    ),
    Row(
        "dp-policy-along-chain",
        "dp.md",
        "Along one site's re-signed chain, a raised budget",
        (
            _off("securefl/reports/policy.py", 'b["epsilon_budget"] > a["epsilon_budget"]'),
            _off("securefl/reports/policy.py", "b[field] != a[field]"),
        ),
    ),
    Row(
        "dp-epsilon-nonnegative",
        "dp.md",
        "ε is never reported below 0, whatever δ.",
        (
            (
                Removal(_ACC, "return max(value, 0.0)", "return value"),
                Removal(
                    _ACC,
                    "return max(float(eps), _rdp_dp_accounting(groups, delta), 0.0)",
                    "return max(float(eps), _rdp_dp_accounting(groups, delta))",
                ),
                Removal(_ACC, "return max(float(eps), 0.0)", "return float(eps)"),
            ),
        ),
    ),
    Row(
        "dp-stored-line",
        "dp.md",
        "A stored line with a repeated key, or not byte-equal",
        (
            Removal(
                "securefl/reports/_canonical.py",
                "            raise DuplicateKeyError(key)\n",
                "            pass\n",
            ),
            Removal(
                "securefl/reports/audit.py", "        if not r.canonical\n", "        if False\n"
            ),
        ),
    ),
    Row(
        "dp-one-model-per-round",
        "dp.md",
        "Two sites whose records name different models for one round fail",
        (_off("securefl/reports/crosscheck.py", "len(by_hash) < 2"),),
    ),
    Row(
        "dp-refusal-restart",
        "dp.md",
        "The refusal survives a restart (the ledger is on disk).",
        (  # the ledger kept in memory: a restart starts from nothing spent
            Removal(
                _LEDGER,
                "            self.path, isolation_level=None,",
                '            ":memory:", isolation_level=None,',
            ),
        ),
    ),
    Row(
        "dp-record-vs-announced",
        "dp.md",
        "A record whose δ, accountant or clip differ from what the server announced",
        (
            Removal(_XCHECK, "        if ours != theirs\n", "        if False\n"),
            _off(_XCHECK, 'rec["epsilon_budget"] > dp["epsilon"]'),
        ),
    ),
    Row(
        "dp-record-sampling-claims",
        "dp.md",
        "A record claiming a dataset larger than the announced `max_weight`",
        (
            _off(_XCHECK, 'n > entry["max_weight"]'),
            _off(_XCHECK, 'ev["sample_rate"] < least * (1 - _REL)'),
            _off(
                _XCHECK,
                "sigma is not None and "
                'not math.isclose(ev["noise_multiplier"], sigma, rel_tol=_REL)',
            ),
            _off("securefl/reports/claims.py", "abs(q * n - batch) > 0.5"),
        ),
    ),
    Row(
        "dp-releases-charged",
        "dp.md",
        "One-off Gaussian releases of statistics are charged to the same budget.",
        (  # the ledger leaves the releases out of what it composes
            Removal(
                _LEDGER,
                "        return epsilon(events, delta=self.delta, accountant=self.accountant)",
                '        kept = [e for e in events if e.kind != "gaussian"]\n'
                "        return epsilon(kept, delta=self.delta, accountant=self.accountant)",
            ),
        ),
    ),
    Row(
        "dp-server-log-signature",
        "dp.md",
        "The server's round log is signed by a server key on the roster",
        (
            Removal(
                "securefl/reports/server_log.py",
                '        verify(public_key, _message(entry), bytes.fromhex(entry["signature"]))\n',
                "        pass\n",
            ),
        ),
    ),
)

_ACCT = "securefl/runtime/_account.py"
_SITE = "securefl/runtime/site.py"
_POLICY = "securefl/runtime/_policy.py"
_SCHEMA = "securefl/dp/_ledger_schema.py"
_CHARGE = (
    "        try:\n            rnd.epsilon, actual = self._account.charge()\n"
    "        except Exception:\n            self._driver.abandon()\n            raise\n"
)
_SEND = (
    "        report = m.Report(metrics=metrics).to_bytes()\n"
    "        self._link.send_all(self._driver.submitted(report, outgoing))\n"
)

ROWS += (
    Row(
        "dp-site-api-order",
        "dp.md",
        "Through the Site API, a round's privacy is reserved before the user's loop trains",
        (
            _off(_SITE, "num_examples > self._round_max_weight"),
            Removal(  # a failed round left pending: charged, with no record
                _ACCT,
                "        if self._reservation is None:\n            return\n        try:",
                "        return\n        try:",
            ),
            Removal(_SITE, _CHARGE + _SEND, _SEND + _CHARGE),  # sent first, committed after
            Removal(
                _SITE,
                "            if not finished:  # an error",
                "            if False:  # an error",
            ),
        ),
    ),
    Row(
        "dp-round-id-increases",
        "dp.md",
        "A server that opens a round id not above the last one",
        (
            _off(_ACCT, "last is not None and round_id <= last"),
            _off(_SCHEMA, "round_id > MAX_ROUND_ID"),
            Removal(_WIRE, "not 0 <= rnd <= MAX_ROUND:", "not 0 <= rnd:"),
        ),
    ),
    Row(
        "dp-cheating-settings",
        "dp.md",
        "A cheating or misconfigured server's round settings cost a site no privacy",
        (
            (  # the reservation taken first, every check after it
                Removal(
                    _SITE,
                    "        run = m.decode(env.payload, m.RoundStart).run\n",
                    "        run = m.decode(env.payload, m.RoundStart).run\n"
                    '        self._account.reserve(env.round, "", run)\n',
                ),
                Removal(
                    _SITE,
                    "        self._account.reserve(env.round, params_hash(params), start.run)\n",
                    "",
                ),
            ),
            _off(_POLICY, "policy.site not in cohort"),
            _off(_POLICY, "strangers"),
            _off(_POLICY, "policy.dataset_size > start.max_weight"),
            _off(_POLICY, "unknown"),
            Removal(_POLICY, "or epochs != policy.local_epochs:", ":"),
            Removal(_POLICY, "or not 0 <= mu <= MAX_PROXIMAL_MU:", ":"),
            _off("securefl/runtime/_site_round.py", "spec != own"),
            _off("securefl/runtime/_site_round.py", "not np.all(np.isfinite(params))"),
        ),
    ),
    Row(
        "dp-loop-stopped",
        "dp.md",
        "A training loop that runs more epochs than `local_epochs` is stopped",
        (
            Removal(_ACCT, "if self.private.steps_taken() < limit:", "if True:"),
            Removal(
                _ACCT,
                "        if self._reservation is None:\n            raise ConfigError(",
                "        if False:\n            raise ConfigError(",
            ),
        ),
    ),
    Row(
        "dp-only-server-opens",
        "dp.md",
        "Only the server can open a round at a site",
        (
            (  # both filters: the site's receive loop and its driver
                _off(
                    "securefl/runtime/_site_round.py",
                    "env.sender != SERVER or env.receiver != site",
                ),
                _off(
                    "securefl/runtime/site_driver.py",
                    "env.sender != SERVER or env.receiver != self.name",
                ),
            ),
        ),
    ),
    Row(
        "dp-ledger-shared",
        "dp.md",
        "One ledger file shared by several federations",
        (
            Removal(  # a budget per federation instead of the site's
                _LEDGER,
                "recorded = [e.event for e in self._rows(cur)]",
                "recorded = [e.event for e in self._rows(cur) if e.federation == federation]",
            ),
            Removal(  # rounds named by their number alone
                _LEDGER,
                '"SELECT status FROM events WHERE federation = ? AND run = ? AND round_id = ?",\n'
                "            (federation, run, round_id),",
                '"SELECT status FROM events WHERE round_id = ?",\n            (round_id,),',
            ),
        ),
    ),
    Row(
        "dp-ledger-migration",
        "dp.md",
        "A ledger written by an older securefl is migrated in place",
        (
            Removal(
                _SCHEMA,
                "timestamp, token FROM events ORDER BY seq",
                "timestamp, token FROM events WHERE status = 'committed' ORDER BY seq",
            ),
            Removal(
                _SCHEMA,
                "        _migrate_1_to_2(cur)\n        return\n    raise",
                "        _migrate_1_to_2(cur)\n        return\n    return\n    raise",
            ),
        ),
    ),
)

_MISSING = "    missing = sorted(submitted_rounds(log, site) - recorded)\n"
_AUDIT = "securefl/reports/audit.py"
_OVERFLOW = "    except OverflowError:  # JSON integers are unbounded; 10**400 is no float\n"

ROWS += (
    Row(
        "dp-dropped-round-resigned",
        "dp.md",
        "A site that drops a round from its own chain and re-signs the rest",
        (
            Removal(_XCHECK, _MISSING, "    missing: list[int] = []\n"),
            # without the log, each on its own: a gap in the middle, a late start, an early stop
            Removal(_CHAIN, "            last < first\n", "            True\n"),
            _off(_XCHECK, "first > start"),
            _off(_XCHECK, "last < final"),
        ),
    ),
    Row(
        "dp-log-promised",
        "dp.md",
        "A roster that names a server key promises a round log",
        (
            Removal(
                _AUDIT,
                "    if roster.server is not None and not opted_out:",
                "    if False:",
            ),
            Removal(  # the provisioned roster not held against the one in the folder
                _AUDIT,
                "load_roster(roster if roster",
                "load_roster(find_roster(paths) if roster",
            ),
        ),
    ),
    Row(
        "dp-log-closing-line",
        "dp.md",
        "The server signs a closing line when the run ends",
        (
            Removal(_XCHECK, "    if log.closed:\n        return []\n", "    return []\n"),
            Removal(
                _XCHECK,
                "                FAIL if log.closed else WARN,\n",
                "                WARN,\n",
            ),
        ),
    ),
    Row(
        "dp-log-submitted",
        "dp.md",
        "The log names, per round, every site the server heard from",
        (Removal(_XCHECK, _MISSING, "    missing: list[int] = []\n"),),
    ),
    Row(
        "dp-huge-number-finding",
        "dp.md",
        "A number too large for a float in a record or a",
        (
            (
                Removal(
                    "securefl/reports/records.py",
                    _OVERFLOW,
                    "    except ZeroDivisionError:\n",
                ),
                Removal(
                    "securefl/reports/_log_entry.py",
                    _OVERFLOW,
                    "    except ZeroDivisionError:\n",
                ),
            ),
            Removal(
                "securefl/reports/recompute.py",
                "_UNACCOUNTABLE = (ArithmeticError, ValueError, SecureFLError)",
                "_UNACCOUNTABLE = ()",
            ),
        ),
    ),
    Row(
        "dp-records-cut-short",
        "dp.md",
        "Records cut short fail against the round log",
        (
            Removal(
                _XCHECK, "    tail = [rnd for rnd in missing if rnd > last]\n", "    tail = []\n"
            ),
            Removal(
                _XCHECK,
                "        if len(by_site.get(site, [])) < expected\n",
                "        if False\n",
            ),
            Removal(_XCHECK, "        if len(log.rounds) >= expected:", "        if True:"),
        ),
    ),
    Row(
        "dp-chain-across-runs",
        "dp.md",
        "A site's record chain goes on across runs of the server",
        (
            Removal(  # a record matched to the log by its round alone
                _XCHECK,
                "    return entry if not logged or not recorded or logged == recorded else None",
                "    return entry",
            ),
            (  # a round id going down within one run: the link and the file order
                Removal(_CHAIN, _LINK_ORDER, "        and False\n"),
                Removal(
                    _CHAIN,
                    'before.record["round_id"] >= rec["round_id"]\n        )',
                    "False\n        )",
                ),
            ),
            Removal(_XCHECK, _MISSING, "    missing: list[int] = []\n"),
        ),
    ),
)

_CAL = "securefl/dp/calibration.py"
_PRV_UPPER = "compute_epsilon(delta, delta_error, PRV_EPS_ERROR)[2])"

ROWS += (
    Row(
        "dp-auditor-mapping",
        "dp.md",
        "An auditor can recompute ε without securefl",
        (  # the event handed to auditors leaves out the Poisson subsampling
            Removal(
                "securefl/dp/events.py",
                "dp_accounting.PoissonSampledDpEvent(self.sample_rate, inner)\n",
                "inner\n",
            ),
        ),
    ),
    Row(
        "dp-matches-references",
        "dp.md",
        "ε is what Opacus and dp-accounting compute, fed independently",
        (
            Removal(_ACC, _PRV_UPPER, _PRV_UPPER.replace("[2]", "[1]")),  # estimate, not bound
            Removal(  # RDP: Opacus's alone, not the larger of the two
                _ACC,
                "return max(float(eps), _rdp_dp_accounting(groups, delta), 0.0)",
                "return max(float(eps), 0.0)",
            ),
            Removal(  # PLD: one fixed grid, not relative to ε
                _ACC,
                "    return min(PLD_DISCRETIZATION, max(PLD_MIN_DISCRETIZATION, relative))",
                "    return PLD_DISCRETIZATION",
            ),
        ),
    ),
    Row(
        "dp-not-below-exact",
        "dp.md",
        "No accountant reports less than the exact ε of the Gaussian mechanism",
        (Removal(_ACC, _PRV_UPPER, _PRV_UPPER.replace("[2]", "[0]")),),  # PRV's lower bound
    ),
    Row(
        "dp-prv-pld-agree",
        "dp.md",
        "PRV and PLD agree within a few percent; RDP is an upper",
        (  # PLD 10 % low: it no longer agrees with PRV
            Removal(
                _ACC,
                "        acc.compose(_dp_accounting_event(group))\n"
                "    return float(acc.get_epsilon(delta))",
                "        acc.compose(_dp_accounting_event(group))\n"
                "    return 0.9 * float(acc.get_epsilon(delta))",
            ),
        ),
    ),
    Row(
        "dp-composition",
        "dp.md",
        "Composition over rounds with different σ, q and steps",
        (  # events of one (σ, q) no longer add up their steps
            Removal(
                _ACC,
                "        totals[key] = totals.get(key, 0) + event.steps\n"
                "    return tuple(sorted((s, q, n) for (s, q), n in totals.items()))",
                "        totals[key] = event.steps\n"
                "    return tuple(sorted((s, q, n) for (s, q), n in totals.items()))",
            ),
            Removal(  # PRV composes one step of each group
                _ACC, "num_self_compositions=counts)", "num_self_compositions=[1] * len(counts))"
            ),
        ),
    ),
    Row(
        "dp-monotone",
        "dp.md",
        "ε grows with steps and falls with σ.",
        (  # each event counted as one step, whatever its steps
            Removal(
                _ACC,
                "        totals[key] = totals.get(key, 0) + event.steps\n"
                "    return tuple(sorted((s, q, n) for (s, q), n in totals.items()))",
                "        totals[key] = totals.get(key, 0) + 1\n"
                "    return tuple(sorted((s, q, n) for (s, q), n in totals.items()))",
            ),
        ),
    ),
    Row(
        "dp-tiny-noise-fallback",
        "dp.md",
        "Where the numerical accountants are unstable (tiny σ)",
        (  # the guard answers a capped value instead of the RDP bound
            Removal(
                _ACC,
                "        if rough > NUMERIC_CUTOFF:\n            return _rdp(groups, delta)\n",
                "        if rough > NUMERIC_CUTOFF:\n            return NUMERIC_CUTOFF\n",
            ),
        ),
    ),
    Row(
        "dp-calibration",
        "dp.md",
        "Calibrated noise meets the target ε under the accountant asked",
        (
            Removal(
                _CAL,
                "tolerance)\n        return hi",
                "tolerance)\n        return lo",
            ),
            Removal(
                _CAL,
                "return epsilon((*prior, _event(sigma, q, steps)), delta=delta",
                "return epsilon((_event(sigma, q, steps),), delta=delta",
            ),
            # an unreachable target answered with the largest σ instead of refused (the
            # check of prior events spending it all is a second layer: with it removed
            # no σ reaches the target either, and this refusal still fires)
            Removal(
                _CAL,
                "        if found is None:\n            raise too_small",
                "        if found is None:\n            return MAX_NOISE_MULTIPLIER",
            ),
        ),
    ),
    Row(
        "dp-calibrate-many",
        "dp.md",
        "Calibrating many sites at once (`calibrate_noise_many`) never under-noises a site",
        (  # the interpolated σ returned without the exact accountant's word
            Removal("securefl/dp/calibration_many.py", "if spent <= target_epsilon:", "if True:"),
        ),
    ),
)

_SOP = "securefl/dp/_secure_opacus.py"
_NOISE = "securefl/dp/noise.py"
_DG = "securefl/hazmat/dgauss.py"

ROWS += (
    Row(
        "dp-per-sample-clipping",
        "dp.md",
        "Per-sample clipping is active",
        (  # the optimizer sums the per-sample gradients unclipped
            Removal(
                _SOP,
                "    def add_noise(self) -> None:\n",
                "    def clip_and_accumulate(self) -> None:\n"
                "        for p in self.params:\n"
                "            _check_processed_flag(p.grad_sample)\n"
                "            grad = self._get_flat_grad_sample(p).to(p.dtype).sum(0)\n"
                "            if p.summed_grad is not None:\n"
                "                grad = grad + p.summed_grad\n"
                "            p.summed_grad = grad\n"
                "            _mark_as_processed(p.grad_sample)\n\n"
                "    def add_noise(self) -> None:\n",
            ),
        ),
    ),
    Row(
        "dp-batchnorm",
        "dp.md",
        "Models Opacus cannot handle (BatchNorm) are refused with advice",
        (
            Removal(_PRIV, "        check_model(model, fix_model=False)\n", "        pass\n"),
            Removal(_PRIV, "    return fixed, new_optimizer\n", "    return fixed, optimizer\n"),
        ),
    ),
    Row(
        "dp-secure-rng-default",
        "dp.md",
        "By default noise and Poisson sampling never touch torch's generator",
        (
            Removal(_SOP, "    def add_noise(self) -> None:\n", "    def _unused(self) -> None:\n"),
            (
                Removal(_PRIV, "poisson = secure_poisson_loader(loader)", "poisson = loader"),
                Removal(_PRIV, "poisson_sampling=False,", "poisson_sampling=True,"),
            ),
        ),
    ),
    Row(
        "dp-floating-point-attack",
        "dp.md",
        "The noise closes the floating-point attack",
        (  # the exact noise added to the unrounded sum
            (
                Removal(_NOISE, "grid = np.rint(flat / gamma)", "grid = flat / gamma"),
                Removal(_NOISE, "(grid.astype(np.int64) + noise)", "(grid + noise)"),
            ),
        ),
    ),
    Row(
        "dp-at-least-as-noisy",
        "dp.md",
        "The mechanism is at least as noisy as the accountant assumes",
        (
            Removal(  # the rounding's sqrt(d) left out of the sensitivity
                _NOISE,
                "sensitivity = clip / granularity + root_d",
                "sensitivity = clip / granularity",
            ),
            Removal(  # the smoothing part counted as if it were σΔ's
                _NOISE,
                "(1 + 1e-12) + SMOOTHING_SIGMA**2",
                "(1 + 1e-12)",
            ),
        ),
    ),
    Row(
        "dp-exact-samplers",
        "dp.md",
        "The discrete Gaussian and Bernoulli samplers are exact",
        (
            Removal(  # +0 and -0 both kept: zero twice as likely
                _DG, "        keep &= ~(negative & (u == 0) & (v == 0))", "        pass"
            ),
            Removal(  # the fractional part's coin skipped
                _DG, "    result[alive] = _bernoulli_exp_le1(rng, frac[alive], den[alive])\n", ""
            ),
            Removal(
                _DG,
                "    if (\n        isinstance(variance, bool)",
                "    if False and (\n        isinstance(variance, bool)",
            ),
            Removal(_DG, "or not 0 < rate <= 1:", ":"),
        ),
    ),
)

_BUDGET_CHECK = "            if after > self.epsilon_budget:\n                spent"
_SETTLE = '            if entry.status == "committed" and has_record:\n'

ROWS += (
    Row(
        "dp-site-stops-at-budget",
        "dp.md",
        "A site stops as soon as a round would pass its budget",
        (
            Removal(_LEDGER, _BUDGET_CHECK, "            if False:\n                spent"),
            Removal(  # the ledger kept in memory: a restart starts from nothing spent
                _LEDGER,
                "            self.path, isolation_level=None,",
                '            ":memory:", isolation_level=None,',
            ),
        ),
    ),
    Row(
        "dp-crash-restart",
        "dp.md",
        "Fail closed after a crash, also with the server's help",
        (
            Removal(  # no settlement at start-up
                _SITE,
                "        for round_id in self._account.settle_interrupted():",
                "        for round_id in []:",
            ),
            Removal(  # a pending row left as it is: charged, never recorded
                _ACCT, _SETTLE, '            if entry.status == "pending" or has_record:\n'
            ),
            Removal(  # the record chain restarted from its genesis
                "securefl/reports/records.py",
                "        if self._path.exists():\n            self._resume()",
                "        if False:\n            self._resume()",
            ),
        ),
    ),
    Row(
        "dp-restarted-refuses",
        "dp.md",
        "A restarted site refuses a round it already took part in",
        (
            Removal(  # any round start of a round taken is dropped, whatever its model
                _ACCT,
                "            (e.federation, e.run, e.round_id, e.model_hash)\n"
                "            == (self.federation, run, round_id, model_hash)",
                "            (e.federation, e.run, e.round_id)\n"
                "            == (self.federation, run, round_id)",
            ),
            Removal(
                _ACCT,
                "        return any(\n            (e.federation",
                "        return False and any(\n            (e.federation",
            ),
            (  # the round id refused by neither the site nor its ledger
                _off(_ACCT, "last is not None and round_id <= last"),
                _off(_LEDGER, "row is not None"),
            ),
        ),
    ),
    Row(
        "dp-calibrated-planned-rounds",
        "dp.md",
        "Noise is calibrated for the planned rounds",
        (
            Removal(_LEDGER, _BUDGET_CHECK, "            if False:\n                spent"),
            Removal(
                _SITE,
                '            self.leave(f"privacy budget exhausted: {exc}")\n',
                "",
            ),
        ),
    ),
    Row(
        "dp-record-wise-features",
        "dp.md",
        "Features are transformed record by record",
        (
            Removal(  # the lower end of each range from the data itself
                "securefl/data/preprocess.py",
                "    lo = np.log1p(np.asarray(lows, dtype=np.float64))",
                "    lo = np.log1p(np.maximum(x, 0.0).min(axis=0))",
            ),
            Removal(
                "securefl/data/preprocess.py",
                "np.log1p(np.abs(x))).astype",
                "np.log1p(np.abs(x) / np.abs(x).mean())).astype",
            ),
        ),
    ),
    Row(
        "dp-simulate-records",
        "dp.md",
        "The records `simulate` writes let an auditor recompute",
        (  # the records claim less ε than was spent
            Removal(_ACCT, "            epsilon=epsilon,\n", "            epsilon=epsilon / 2,\n"),
        ),
    ),
    Row(
        "dp-simulated-folder",
        "dp.md",
        "A folder `simulate --out` wrote",
        (
            Removal(
                _XCHECK, "    tail = [rnd for rnd in missing if rnd > last]\n", "    tail = []\n"
            ),
            Removal(
                "securefl/reports/server_log.py",
                '        verify(public_key, _message(entry), bytes.fromhex(entry["signature"]))\n',
                "        pass\n",
            ),
            Removal(
                "securefl/reports/_canonical.py",
                "            raise DuplicateKeyError(key)\n",
                "            pass\n",
            ),
        ),
    ),
)

_DD = "securefl/runtime/_distributed.py"
_DDR = "securefl/runtime/_distributed_round.py"

ROWS += (
    Row(
        "dp-distributed-announced",
        "dp.md",
        'With `privacy = "distributed"`, a server announcing other public numbers',
        (
            _off(_DD, "theirs != value"),
            _off(_DD, "extra"),
            Removal(_DD, "    if not isinstance(announced, dict):", "    if announced is None:"),
            Removal(_POLICY, '    elif "distributed" in config:', "    elif False:"),
        ),
    ),
    Row(
        "dp-distributed-one-step",
        "dp.md",
        'With `privacy = "distributed"` a round is one DP-SGD step',
        (
            _off(_DDR, "self._sum is not None"),
            _off(_DDR, "self._batch is not None"),
            Removal(
                _DDR,
                "        if self.account.open_round is None:\n            raise",
                "        if False:\n            raise",
            ),
            _off(_DDR, "self._sum is None or self._share is None"),
        ),
    ),
    Row(
        "dp-distributed-clip",
        "dp.md",
        "Distributed DP: each example's gradient enters the site's sum clipped",
        (
            Removal(
                _DDR,
                "factors = np.minimum(1.0, bound / np.maximum(norms, np.finfo(np.float64).tiny))",
                "factors = np.ones_like(norms)",
            ),
            Removal(_LEDGER, _BUDGET_CHECK, "            if False:\n                spent"),
        ),
    ),
)

_SKA = "securefl/dp/skellam_accounting.py"
_SKS = "securefl/dp/skellam_subsampling.py"
_CHARGED = "    result: _Floats = np.minimum(np.minimum(general, ours), unsampled)\n"

ROWS += (
    Row(
        "dp-skellam-bound",
        "dp.md",
        "The Skellam RDP bound (Agarwal, Kairouz, Liu 2021)",
        (  # the Skellam bound without its term beyond the Gaussian's
            Removal(
                _SKA,
                "out: _Floats = alphas * d2sq / (2 * m) + extra",
                "out = alphas * d2sq / (2 * m)",
            ),
        ),
    ),
    Row(
        "dp-skellam-not-below-truth",
        "dp.md",
        "The bound is never below the truth",
        (
            # the charge a hair below itself (the Skellam term alone, without its
            # extra part, is still above every exact divergence tested: not a removal here)
            Removal(_SKS, _CHARGED, _CHARGED.replace("unsampled)\n", "unsampled) / 1.002\n")),
        ),
    ),
    Row(
        "dp-skellam-bad-parameters",
        "dp.md",
        "Bad parameters (μ, Δ ≤ 0 or non-finite",
        (
            _off(_SKA, "not (math.isfinite(out) and out > 0)"),
            _off(_SKS, "not 0 < gamma <= 1"),  # (skellam_accounting._rate is never called)
        ),
    ),
    Row(
        "dp-skellam-event",
        "dp.md",
        "A distributed round is an immutable event the ledger stores",
        (
            _off(
                "securefl/dp/events.py",
                "not math.isclose(self.noise_multiplier, derived, rel_tol=1e-9)",
            ),
            Removal(_LEDGER, _BUDGET_CHECK, "            if False:\n                spent"),
        ),
    ),
    Row(
        "dp-skellam-colluders",
        "dp.md",
        "c colluders who subtract their own shares",
        (  # a share sized for t instead of t - c
            Removal(
                "securefl/dp/distributed/_shares.py",
                "        return self.threshold - self.colluders\n",
                "        return self.threshold\n",
            ),
        ),
    ),
    Row(
        "dp-skellam-beyond-c",
        "dp.md",
        "Beyond c, each site's update alone carries its own share",
        (  # a site's share alone counted as the central noise
            Removal(
                "securefl/dp/events.py",
                "mu_total=self.mu_total / self.shares,",
                "mu_total=self.mu_total,",
            ),
        ),
    ),
)

ROWS += (
    Row(
        "dp-add-remove-bound",
        "dp.md",
        "The add/remove subsampling bound (Theorem 1",
        (  # the remove direction left out: the add term alone
            Removal(
                _SKS,
                "out[i] = float(np.logaddexp(0.0, max(add, min(b1, b2)))) / (a - 1)",
                "out[i] = float(np.logaddexp(0.0, add)) / (a - 1)",
            ),
        ),
    ),
    Row(
        "dp-distributed-audit-twice",
        "dp.md",
        "The audit recomputes distributed claims twice",
        (
            _off("securefl/reports/claims.py", "_below(claimed, recomputed, tolerance)"),
            _off("securefl/reports/claims.py", "_below(claimed, independent, tolerance)"),
        ),
    ),
    Row(
        "dp-distributed-deployed",
        "dp.md",
        '`privacy = "distributed"` over the deployed path',
        (
            _off(_DD, "theirs != value"),  # the site's comparison
            Removal(  # the server's step not divided by the public expected batch
                _DD,
                "            plan.scale * plan.expected_batch_size\n",
                "            plan.scale\n",
            ),
            Removal(  # the ledger charged a smaller μ than the round's noise
                _DD,
                "            mu_total=float(self.mu_total),",
                "            mu_total=float(self.mu_total) * 4,",
            ),
        ),
    ),
    Row(
        "dp-skellam-subsampled",
        "dp.md",
        "It converges to the Gaussian's α Δ²/(2σ²) as μ grows",
        (
            Removal(_SKS, _CHARGED, _CHARGED.replace("unsampled)\n", "unsampled) / 1.002\n")),
            Removal(  # one neighbouring direction only
                _SKS,
                "    ours = remove_add_rdp(eps, sample_rate=gamma, orders=alphas)",
                "    ours = add_direction_rdp(eps, sample_rate=gamma, orders=alphas)",
            ),
        ),
    ),
)
