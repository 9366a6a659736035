"""Removal entries for the claim rows of ``threat_models/dp.md``."""

from __future__ import annotations

from ._common import (
    _ACC,
    _CHAIN,
    _LEDGER,
    _PRIV,
    _XCHECK,
    Removal,
    Row,
    _off,
)

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
                _off(_CHAIN, 'parent is not None and parent.record["round_id"] >= rec["round_id"]'),
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
            _off(_LEDGER, "stored.get(key) != value"),
            _off(_LEDGER, "budget > old and not allow_increase"),
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
        (_off("securefl/dp/accounting.py", "not supports(accountant, event)"),),
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
