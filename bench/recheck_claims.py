"""Recheck threat-model claims: each cited test must fail when its protection is removed.

A claim row in ``threat_models/*.md`` cites the tests that show it. This
script holds, per row, one or more *removals*: a small textual patch that
takes the protection out of the code (a check made ``False``, a signature
not verified, a constant made fixed). For each removal it copies the
project to a temporary directory, applies the patch there (the working tree
is never touched), runs the row's cited tests (read from the threat model
itself, so the citation and the run cannot drift apart) and expects pytest
to report failures (exit code 1: a test went red, not a collection or
usage error). It also runs the cited tests once without any patch and
expects them green.

A row is *rechecked* when every one of its removals turns at least one of
its cited tests red. Rows marked ``rechecked`` in the threat models must be
in :data:`ROWS`; run it after changing a protection or its test:

    python bench/recheck_claims.py --list
    python bench/recheck_claims.py he-upload-signature mask-zero-coefficients
    python bench/recheck_claims.py --all

Not part of ``.ci/run``: each row runs its tests twice or more (minutes in all).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Removal:
    """Replace ``old`` (which must occur exactly once) by ``new`` in ``path``."""

    path: str
    old: str
    new: str


#: One way of removing a protection: one edit, or several applied together.
Patch = Removal | tuple[Removal, ...]


@dataclass(frozen=True)
class Row:
    """One claim row: its page, the start of its claim text, and what removes its protection."""

    key: str
    page: str
    claim: str
    removals: tuple[Patch, ...]


def _off(path: str, condition: str) -> Removal:
    """The check ``if <condition>:`` never fires."""
    return Removal(path, f"if {condition}:", "if False:")


_HE_DEC = "securefl/he/_decrypt.py"
_HE_SRV = "securefl/he/_server.py"
_ENC = "securefl/runtime/encrypted_model.py"
_SA = "securefl/secagg/_site.py"
_LEDGER = "securefl/dp/ledger.py"
_PRIV = "securefl/dp/privatize.py"
_CHAIN = "securefl/reports/chain.py"
_WIRE = "securefl/wire.py"
_ROSTER = "securefl/provision/roster.py"
_ROSTER_VERIFY = (
    "            key.verify(signature, canonical_bytes(body), ec.ECDSA(hashes.SHA256()))\n"
)
_KIT = "securefl/provision/kit.py"
_HTTPS = "securefl/transport/https_server.py"
_SA_SRV = "securefl/secagg/_server.py"
_HE_CTX = "securefl/he/_context.py"
_HE_FRAME = "securefl/he/_frame.py"
_ACC = "securefl/dp/accounting.py"
_STATE = "securefl/runtime/server_state.py"
_XCHECK = "securefl/reports/crosscheck.py"
_PKI = "securefl/provision/pki.py"
_TLS = "securefl/transport/_tls.py"
_SITE_BELOW_T = "len(ids) < self._need or len(self._holders & set(ids)) < self._plan.threshold"

ROWS: tuple[Row, ...] = (
    # -- threat_models/he.md -------------------------------------------------------------
    Row(
        "he-upload-signature",
        "he.md",
        "Each upload is signed by its sender",
        (
            Removal(
                _HE_SRV,
                "        verify(roster_key(self._roster, envelope.sender), message, signature)\n",
                "",
            ),
        ),
    ),
    Row(
        "he-header-checks",
        "he.md",
        "The aggregate carries each summand's signed header",
        (
            _off(_HE_DEC, "len(set(sites)) != len(sites)"),
            Removal(
                _HE_DEC,
                "        u.verify(\n            roster=roster,",
                "        (lambda **_: None)(\n            roster=roster,",
            ),
        ),
    ),
    Row(
        "he-feasible-sum",
        "he.md",
        "A sum the server changed so that it lies beyond",
        (
            _off(_HE_DEC, "not finite or peak > bound"),
            _off(_HE_DEC, "top > n * levels"),
        ),
    ),
    Row(
        "he-min-summands",
        "he.md",
        "No sum of fewer than `max(min_sites, 3)` uploads",
        (
            _off(_HE_SRV, "len(survivors) < self._needed"),
            _off(_HE_DEC, "len(sites) < needed"),
        ),
    ),
    Row(
        "he-own-upload",
        "he.md",
        "A site refuses a sum of a round it took part in",
        (
            _off(_HE_DEC, "not any(u.site == site and u.digest == own.digest for u in uploads)"),
            _off(_HE_DEC, "not set(sites) <= set(own.cohort)"),
        ),
    ),
    Row(
        "he-round-digest",
        "he.md",
        "Every upload in a sum must carry the same signed round-start digest",
        (_off(_HE_DEC, "len(digests) != 1"),),
    ),
    Row(
        "he-max-weight",
        "he.md",
        "`max_weight` is the site's own",
        (_off(_HE_DEC, "scale != max_weight"),),
    ),
    Row(
        "he-own-strategy",
        "he.md",
        "The strategy a site applies to the encrypted model is its own",
        (
            _off(_ENC, "strategy != self._own_strategy"),
            _off(_ENC, 'obj["strategy"] != self._own_strategy'),
        ),
    ),
    Row(
        "he-infeasible-aggregate",
        "he.md",
        "Sites refuse an aggregate that honest clipped inputs cannot produce",
        (
            _off(_HE_DEC, "not finite or peak > bound"),
            _off(_HE_DEC, "u.weight > scale"),
        ),
    ),
    Row(
        "he-history-rewrite",
        "he.md",
        "A site refuses a model history the server rewrote",
        (
            _off(_ENC, "chain != self._chain[i + 1]"),
            _off(_ENC, "start + len(aggregates) < len(self._rounds)"),
            _off(_ENC, "self._rounds and opened.round <= self._rounds[-1]"),
        ),
    ),
    Row(
        "he-history-chain",
        "he.md",
        "Each site is sent only the aggregates it has not acknowledged",
        (
            Removal(
                _ENC,
                "elif self._strategy is None or start > len(self._rounds):",
                "elif self._strategy is None:",
            ),
            _off(_ENC, "chain != self._chain[i + 1]"),
            _off(_ENC, "head != self._chain[0]"),
        ),
    ),
    Row(
        "he-fork",
        "he.md",
        "A server that hands two sites different histories",
        (
            Removal(
                "securefl/runtime/_site_round.py",
                'history = getattr(decoder, "history_digest", None)',
                "history = None",
            ),
        ),
    ),
    Row(
        "he-theta0-float32",
        "he.md",
        "Equal chain heads mean equal models",
        (  # two layers, each enough for the property: removed together
            (
                _off(_ENC, 'theta0.dtype != np.dtype("<f4")'),
                Removal(
                    _ENC,
                    'canonical = np.asarray(theta0, dtype="<f4").tobytes()',
                    "canonical = np.asarray(theta0).tobytes()",
                ),
            ),
        ),
    ),
    Row(
        "he-cohort-wrap",
        "he.md",
        "Sums cannot wrap",
        (
            _off("securefl/he/_site.py", "len(ctx.cohort) > max_sites"),
            Removal(_HE_SRV, "        check_cohort(ctx, public.preset.max_sites)\n", ""),
        ),
    ),
    # -- threat_models/mask.md -----------------------------------------------------------
    Row(
        "mask-never-both-shares",
        "mask.md",
        "An honest site never reveals both the b-share and the s-share",
        (
            (
                _off(_SA, "set(dropped) & set(self._u3)"),
                _off(_SA, "sorted(dropped) != sorted(set(self._u2) - set(self._u3))"),
                _off(_SA, "set(b_out) & set(s_out)"),
            ),
        ),
    ),
    Row(
        "mask-unmask-request",
        "mask.md",
        "A site aborts if the server lists it as dropped",
        (
            _off(_SA, "self._me in dropped"),
            _off(_SA, "tuple(sorted(survivors)) != self._u3"),
            _off(_SA, "set(dropped) & set(self._u3)"),
            _off(_SA, "len(signers & self._holders) < self._plan.threshold"),
        ),
    ),
    Row(
        "mask-consistency-signatures",
        "mask.md",
        "A site aborts if consistency signatures cover different lists",
        (
            _off(_SA, "site not in self._u3"),
            Removal(
                _SA,
                "                verify(self._roster[site], message, sig)\n",
                "                pass\n",
            ),
        ),
    ),
    Row(
        "mask-share-ciphertexts",
        "mask.md",
        "Tampered, rerouted, misdelivered and replayed",
        (
            Removal(  # a share that fails to open is skipped instead of aborting
                _SA,
                'raise AbortError(f"the share from {sender!r} did not verify") from None',
                "continue",
            ),
        ),
    ),
    Row(
        "mask-public-keys",
        "mask.md",
        "Forged, swapped, duplicated, wrong-size and low-order public keys",
        (
            Removal(
                _SA,
                '                verify(self._roster[site], message, adv["sig"])\n',
                "                pass\n",
            ),
            _off(_SA, "len(set(keys)) != len(keys)"),
            _off(
                _SA,
                '(mine["c_pk"], mine["s_pk"]) != (self._c.public_bytes(), self._s.public_bytes())',
            ),
        ),
    ),
    Row(
        "mask-site-inputs",
        "mask.md",
        "NaN/Inf updates, wrong shapes and weights outside",
        (
            _off(_SA, "vec.size and not (np.isfinite(np.min(vec)) and np.isfinite(np.max(vec)))"),
            _off(_SA, "isinstance(weight, bool) or not 0 < float(weight) <= ctx.max_weight"),
        ),
    ),
    Row(
        "mask-round-id-reuse",
        "mask.md",
        "A round id is never masked under twice",
        (_off("securefl/secagg/_state.py", "(federation, run, round_id) in used"),),
    ),
    Row(
        "mask-round-start",
        "mask.md",
        "A server that gives one site another model or other round settings",
        (  # the explicit check and the digest inside each signed advert, removed together
            (
                _off(_SA, 'adv["digest"] != ctx.round_digest'),
                Removal(
                    _SA,
                    '                adv["commit"],\n                ctx.round_digest,\n',
                    '                adv["commit"],\n                adv["digest"],\n',
                ),
            ),
        ),
    ),
    Row(
        "mask-bad-masked-input",
        "mask.md",
        "Wrong-length masked vectors and values outside the ring",
        (_off(_SA_SRV, 'body["bits"] != bits or body["n"] != n'),),
    ),
    # -- threat_models/dp.md -------------------------------------------------------------
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
    # -- threat_models/wire.md -----------------------------------------------------------
    Row(
        "wire-bounded",
        "wire.md",
        "Decoding is bounded",
        (Removal(_WIRE, "    scan(raw, limits)\n    return _unpackb", "    return _unpackb"),),
    ),
    Row(
        "wire-scan",
        "wire.md",
        "The scan refuses every limit",
        (
            _off(_WIRE, "n > getattr(limits, _LIMIT_OF[kind])"),
            _off(_WIRE, "len(remaining) > limits.max_depth"),
            _off(_WIRE, "items > limits.max_items"),
            _off(_WIRE, "pos != len(data)"),
        ),
    ),
    Row(
        "wire-envelope-header",
        "wire.md",
        "The envelope header is checked before the payload is copied",
        (
            Removal(  # the payload copied out before the header is checked
                _WIRE,
                "        if check is not None:\n            check(header)\n",
                "        early = raw[value_end - header.payload_size : value_end]\n"
                "        if check is not None:\n            check(header)\n",
            ),
            _off(_WIRE, "_unpackb(raw[key_at:value_at], ENVELOPE_LIMITS) != name"),
        ),
    ),
    Row(
        "wire-no-foreign-exception",
        "wire.md",
        "No decoder lets a foreign exception escape",
        (
            Removal(
                _WIRE,
                "except (ValueError, msgpack.ExtraData,",
                "except (msgpack.ExtraData,",
            ),
        ),
    ),
    Row(
        "wire-fuzz-regressions",
        "wire.md",
        "Regressions found by fuzzing stay fixed",
        (
            Removal(
                _WIRE, "not isinstance(dtype, str)\n        or dtype", "False\n        or dtype"
            ),
        ),
    ),
    # -- threat_models/transport.md ------------------------------------------------------
    Row(
        "transport-sender-twice",
        "transport.md",
        "An envelope's sender is authenticated twice",
        (
            _off("securefl/transport/https_server.py", "header.sender != site"),
            Removal(
                "securefl/transport/signed.py",
                "    verify(key, envelope_message(envelope, frame.id), frame.signature)\n",
                "",
            ),
        ),
    ),
    Row(
        "transport-pinned-server-key",
        "transport.md",
        "A site takes messages only from its federation's server",
        (
            Removal(
                "securefl/transport/signed.py",
                "    verify(key, envelope_message(envelope, frame.id), frame.signature)\n",
                "",
            ),
        ),
    ),
    # -- threat_models/provisioning.md ---------------------------------------------------
    Row(
        "prov-roster-tamper",
        "provisioning.md",
        "A roster with a tampered identity or exchange key",
        (Removal(_ROSTER, _ROSTER_VERIFY, "            pass\n"),),
    ),
    Row(
        "prov-roster-other-ca",
        "provisioning.md",
        "A roster signed by another CA",
        (Removal(_ROSTER, _ROSTER_VERIFY, "            pass\n"),),
    ),
    Row(
        "prov-private-key-mode",
        "provisioning.md",
        "Private keys and the status token are created mode 0600",
        (_off(_KIT, 'os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077'),),
    ),
    Row(
        "prov-kit-others-write",
        "provisioning.md",
        "A kit that every user may change is refused",
        (_off(_KIT, 'os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o002'),),
    ),
    Row(
        "prov-roster-version",
        "provisioning.md",
        "A roster of another format version is refused",
        (
            _off(
                _ROSTER,
                'body.get("version") != SIGNED_ROSTER_VERSION '
                'or isinstance(body.get("version"), bool)',
            ),
        ),
    ),
    Row(
        "he-server-refuses-secret-context",
        "he.md",
        "The server refuses a context holding a secret key",
        (
            _off(
                "securefl/he/_context.py",
                'obj["secret"] is not False or ctx.is_private() or ctx.has_secret_key()',
            ),
        ),
    ),
    Row(
        "he-secret-key-id",
        "he.md",
        "Parameters are validated on load even when the signature holds",
        (_off("securefl/he/_context.py", '_key_id(_secret_bytes(ctx)) != obj["key_id"]'),),
    ),
    Row(
        "he-export-flag",
        "he.md",
        "Secret-holding objects refuse pickling",
        (
            _off("securefl/he/_context.py", "include_secret_key is not True"),
            (  # both hooks that refuse pickling
                Removal(
                    "securefl/he/_context.py",
                    "    def __reduce__(self) -> NoReturn:",
                    "    def _no_reduce(self) -> NoReturn:",
                ),
                Removal(
                    "securefl/he/_context.py",
                    "    def __getstate__(self) -> NoReturn:",
                    "    def _no_getstate(self) -> NoReturn:",
                ),
            ),
        ),
    ),
    Row(
        "mask-fewer-than-t",
        "mask.md",
        "Fewer than t survivors abort before any share is requested or released",
        (  # the honest server's check and every site's own, removed together
            (
                _off(_SA_SRV, "len(live) < minimum or short or missing > allowed"),
                _off(_SA, _SITE_BELOW_T),
                _off(_SA, "missing > self._plan.missing_allowed"),
            ),
        ),
    ),
    Row(
        "mask-own-threshold",
        "mask.md",
        "A site derives t from its own policy",
        (  # every check of the site's own t: members, missing, consistency signatures
            (
                _off(_SA, _SITE_BELOW_T),
                _off(_SA, "missing > self._plan.missing_allowed"),
                _off(_SA, "len(signers & self._holders) < self._plan.threshold"),
                _off(_SA, "len(signers) < self._plan.quorum"),
            ),
        ),
    ),
    Row(
        "mask-overflow-ring",
        "mask.md",
        "A ring that could overflow is refused",
        (
            Removal(
                "securefl/hazmat/quantize.py",
                "    return max_summands * value_bound <= (1 << (bits - 1)) - 1",
                "    return True",
            ),
        ),
    ),
    Row(
        "mask-out-of-order",
        "mask.md",
        "Out-of-order messages are refused",
        (_off(_SA, "step is None"),),
    ),
    Row(
        "he-context-signature",
        "he.md",
        "Contexts are signed by the site that made them",
        (
            Removal(
                "securefl/he/_trust.py",
                "    verify(roster_key(roster, signer), signed_message(_KINDS[kind], federation, "
                "signer, inner), sig)",
                "    roster_key(roster, signer)",
            ),
        ),
    ),
    Row(
        "he-designated-maker",
        "he.md",
        "A context made by another roster site than the designated maker",
        (_off("securefl/he/_trust.py", "maker is not None and signer != maker"),),
    ),
    Row(
        "mask-member-lists",
        "mask.md",
        "A site aborts on survivor or sender lists that omit it",
        (
            _off(_SA, "self._me not in ids"),
            _off(_SA, "len(set(ids)) != len(ids)"),
            Removal(
                _SA, "        unknown = set(ids) - pool\n        if unknown:", "        if False:"
            ),
        ),
    ),
    Row(
        "transport-body-limit",
        "transport.md",
        "A body over the limit is refused with 413 before it is read",
        (
            _off(_HTTPS, "size > self.max_body"),
            _off(_HTTPS, "len(body) + len(chunk) > self.max_body"),
        ),
    ),
    Row(
        "transport-replay",
        "transport.md",
        "Replays have no effect",
        (
            Removal(
                _HTTPS,
                'raise _Refusal(409, "envelope id already used with other bytes (replay)")',
                "return 200",
            ),
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
        "prov-kit-keys",
        "provisioning.md",
        "A party refuses to start from a kit whose roster was edited",
        (
            Removal(_ROSTER, _ROSTER_VERIFY, "            pass\n"),
            _off(_KIT, "self.signing_key().public_bytes() != identity"),
            _off(_KIT, "cert_sha256(cert) != self.roster.cert_sha256(self.party)"),
        ),
    ),
    Row(
        "mask-split-view",
        "mask.md",
        "A cheating server that shows two survivor lists to two halves",
        (  # the consistency round: each signature must be over this site's own list
            Removal(
                _SA,
                "                verify(self._roster[site], message, sig)\n",
                "                pass\n",
            ),
        ),
    ),
    Row(
        "mask-consistency-run",
        "mask.md",
        "A consistency signature names its run",
        (  # the run leaves what a site signs and checks in the consistency round
            Removal(
                "securefl/secagg/_messages.py",
                '"securefl/mask/consistency/v2", federation, round_id, run, *survivors',
                '"securefl/mask/consistency/v2", federation, round_id, *survivors',
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
    # -- second batch: he, dp, provisioning, transport, server state ------------------
    Row(
        "he-public-context-secret",
        "he.md",
        "The server's context holds no secret key",
        (_off(_HE_CTX, 'obj["secret"] is not False or ctx.is_private() or ctx.has_secret_key()'),),
    ),
    Row(
        "he-preset-bound",
        "he.md",
        "Every preset is within SEAL's 128-bit bound",
        (_off("securefl/he/_presets.py", "sum(self.coeff_mod_bit_sizes) > bound"),),
    ),
    Row(
        "he-allocation-bound",
        "he.md",
        "One signed upload cannot make the server allocate far beyond its size",
        (  # the count of ciphertexts in a chunk; then also the size bound of the one left
            _off(_HE_FRAME, "len(cts) != 1 or cts[0][1] != 2"),
            (
                _off(_HE_FRAME, "len(cts) != 1 or cts[0][1] != 2"),
                Removal(
                    _HE_FRAME,
                    "        _seal_bound(cts[0][2], max_ciphertext_bytes(preset))\n",
                    "        pass\n",
                ),
            ),
        ),
    ),
    Row(
        "he-bundles-whole",
        "he.md",
        "No he round opens before the keymaker's keys arrive",
        (_off("securefl/he/_relay.py", "set(material.bundles) != expected"),),
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
        "prov-ca-not-replaced",
        "provisioning.md",
        "Provisioning never silently replaces a CA.",
        (_off("securefl/provision/coordinator.py", "existing and not force"),),
    ),
    Row(
        "transport-status-access",
        "transport.md",
        "The status page and JSON are only for roster certificates",
        (  # anyone may see the status
            Removal(
                _HTTPS,
                '        auth = request.headers.get("authorization", "")\n',
                '        return True\n        auth = request.headers.get("authorization", "")\n',
            ),
        ),
    ),
    Row(
        "state-checkpoint-hash",
        "server_state.md",
        "A checkpoint (model, strategy state, or an he aggregate)",
        (_off(_STATE, "sha256_hex(raw) != sha256"),),
    ),
    Row(
        "state-other-federation",
        "server_state.md",
        "A restart is refused on a folder of another federation",
        (_off(_STATE, "first.get(key) != want"),),
    ),
    Row(
        "state-journal-lines",
        "server_state.md",
        "A torn last journal line",
        (
            _off(
                "securefl/runtime/journal.py",
                'obj["sha256"] != _line_hash(body, prev) or canonical_bytes(obj) != raw',
            ),
        ),
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
        "wire-stage-limits",
        "wire.md",
        "Stage limits follow what the stage may carry",
        (  # each decoder falls back to the generic limits
            Removal(
                "securefl/secagg/_messages.py",
                "obj = unpack(payload, limits=decode_limits(stage, cohort_size))",
                "obj = unpack(payload)",
            ),
            Removal(
                "securefl/runtime/messages.py",
                "    obj = unpack(data, limits=limits)",
                "    obj = unpack(data)",
            ),
            Removal(
                "securefl/he/_messages.py",
                "    obj = unpack(payload, limits=chunk_limits(chunks))",
                "    obj = unpack(payload)",
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
        "prov-cert-profile",
        "provisioning.md",
        "The CA certificate may only sign certificates and CRLs",
        (  # each restriction of the profile lifted in turn
            Removal(
                _PKI,
                "x509.BasicConstraints(ca=True, path_length=0)",
                "x509.BasicConstraints(ca=True, path_length=None)",
            ),
            Removal(
                _PKI,
                "x509.BasicConstraints(ca=False, path_length=None)",
                "x509.BasicConstraints(ca=True, path_length=None)",
            ),
            Removal(
                _PKI,
                "x509.ExtendedKeyUsage([usage])",
                "x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, "
                "ExtendedKeyUsageOID.CLIENT_AUTH])",
            ),
        ),
    ),
    Row(
        "transport-peer-checks",
        "transport.md",
        "What OpenSSL does not check, the server does on every request",
        (  # each check of the peer certificate in turn; the name and the pin go together
            _off(_TLS, "basic is None or basic.ca"),
            _off(_TLS, "eku is None or ExtendedKeyUsageOID.CLIENT_AUTH not in eku"),
            _off(_TLS, "not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc"),
            _off(_TLS, "fingerprint(der) != self._sites[name]"),
            (
                _off(_TLS, "name not in self._sites"),
                _off(_TLS, "fingerprint(der) != self._sites[name]"),
            ),
        ),
    ),
    Row(
        "transport-revocation",
        "transport.md",
        "Revocation takes effect on the next request",
        (_off(_TLS, "cert.serial_number in self._revoked_serials()"),),
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


_CITE = re.compile(r"(tests/[\w/]+\.py)?::(\w+)")


def cited_tests(row: Row) -> list[str]:
    """The node ids the row's "shown by" cell cites (``::name`` continues the last file)."""
    text = (ROOT / "threat_models" / row.page).read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln.startswith(f"| {row.claim}")]
    if len(lines) != 1:
        raise SystemExit(f"{row.key}: {len(lines)} rows of {row.page} start with {row.claim!r}")
    cell = lines[0].rsplit(" | ", 1)[-1]
    tests: list[str] = []
    path = ""
    for file, name in _CITE.findall(cell):
        path = file or path
        tests.append(f"{path}::{name}")
    if not tests:
        raise SystemExit(f"{row.key}: the row cites no test")
    return tests


def _pytest(workdir: Path, tests: list[str]) -> tuple[int, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", *tests],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(workdir)},
        capture_output=True,
        text=True,
        check=False,
    )
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, flags=re.M)
    return proc.returncode, failed


def recheck(row: Row, workdir: Path) -> tuple[bool, list[str]]:
    """Run the row's tests unpatched (green expected), then under each removal (red expected)."""
    tests = cited_tests(row)
    notes = []
    code, failed = _pytest(workdir, tests)
    if code != 0:
        return False, [f"cited tests not green without a patch (exit {code}): {failed}"]
    ok = True
    for patch in row.removals:
        edits = (patch,) if isinstance(patch, Removal) else patch
        originals = {e.path: (workdir / e.path).read_text(encoding="utf-8") for e in edits}
        what = "; ".join(f"{e.path}: {e.old.strip()[:50]!r}" for e in edits)
        try:
            applied = _apply(workdir, edits)
            if applied:
                code, failed = _pytest(workdir, tests)
        finally:
            for path, text in originals.items():
                (workdir / path).write_text(text, encoding="utf-8")
        if not applied:
            ok = False
            notes.append(f"patch does not apply: {what}")
            continue
        red = code == 1 and bool(failed)
        ok = ok and red
        notes.append(f"{'red' if red else f'NOT red (exit {code})'}: {what} -> {failed}")
    return ok, notes


def _apply(workdir: Path, edits: tuple[Removal, ...]) -> bool:
    for edit in edits:
        target = workdir / edit.path
        text = target.read_text(encoding="utf-8")
        if text.count(edit.old) != 1:
            return False
        target.write_text(text.replace(edit.old, edit.new), encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("rows", nargs="*", help="row keys (see --list)")
    parser.add_argument("--all", action="store_true", help="every row")
    parser.add_argument("--list", action="store_true", help="print the rows and their tests")
    args = parser.parse_args(argv)
    by_key = {r.key: r for r in ROWS}
    if args.list:
        for row in ROWS:
            print(f"{row.key} ({row.page}): {' '.join(cited_tests(row))}")
        return 0
    chosen = list(ROWS) if args.all else [by_key[k] for k in args.rows if k in by_key]
    unknown = [k for k in args.rows if k not in by_key]
    if unknown or not chosen:
        parser.error(f"unknown or no rows: {unknown}")
    results = []
    with tempfile.TemporaryDirectory(prefix="securefl-claims-") as tmp:
        workdir = Path(tmp) / "project"
        shutil.copytree(
            ROOT,
            workdir,
            ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "mutants", "*.egg-info"),
        )
        for row in chosen:
            ok, notes = recheck(row, workdir)
            results.append((row, ok))
            print(f"{'RECHECKED' if ok else 'NOT SHOWN'} {row.key} ({row.page})", flush=True)
            for note in notes:
                print(f"    {note}", flush=True)
    print("| row | page | removals | result |")  # removals: ways of taking it out
    print("| --- | --- | --- | --- |")
    for row, ok in results:
        verdict = "red under every removal" if ok else "not shown"
        print(f"| `{row.key}` | {row.page} | {len(row.removals)} | {verdict} |")
    return 0 if all(ok for _, ok in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
