"""Removal entries for the claim rows of ``threat_models/mask.md``."""

from __future__ import annotations

from ._common import (
    _SA,
    _SA_SRV,
    _SITE_BELOW_T,
    Removal,
    Row,
    _off,
)

ROWS: tuple[Row, ...] = (
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
)
