"""Removal entries for the claim rows of ``threat_models/mask.md``."""

from __future__ import annotations

from ._common import (
    _SA,
    _SA_SRV,
    _SITE_BELOW_T,
    _SL,
    Removal,
    Row,
    _off,
)

_UNMASK = "securefl/secagg/_unmask.py"
_CFG = "securefl/secagg/_config.py"
_MS = "securefl/secagg/_multisig.py"
_MSG = "securefl/secagg/_messages.py"
_BLS = "securefl/hazmat/bls.py"
_MW = "securefl/secagg/_masked_with.py"

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
                _off(_SL, _SITE_BELOW_T),
                _off(_SL, "missing > self.plan.missing_allowed"),
            ),
        ),
    ),
    Row(
        "mask-own-threshold",
        "mask.md",
        "A site derives t from its own policy",
        (  # every check of the site's own t: members, missing, consistency signatures
            (
                _off(_SL, _SITE_BELOW_T),
                _off(_SL, "missing > self.plan.missing_allowed"),
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
            _off(_SL, "self.me not in ids"),
            _off(_SL, "len(set(ids)) != len(ids)"),
            Removal(
                _SL, "        unknown = set(ids) - pool\n        if unknown:", "        if False:"
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
        "mask-dropouts-recovered",
        "mask.md",
        "Up to n − t dropouts, at any stage, are recovered",
        (  # a dropped site's pairwise masks are left in the survivors' sum
            Removal(
                _UNMASK, "    for v, sk in s_keys.items():\n", "    for v, sk in {}.items():\n"
            ),
        ),
    ),
    Row(
        "mask-masks-cancel",
        "mask.md",
        "Masks cancel for any set of survivors",
        (  # both ends of a pair add the same mask instead of opposite ones
            Removal(
                "securefl/secagg/_keys.py", "    return 1 if me < peer else -1", "    return 1"
            ),
        ),
    ),
    Row(
        "mask-server-view",
        "mask.md",
        "No byte the server receives contains a site's float32 update",
        (  # no mask is added anywhere: the round still sums, unmasked
            Removal(
                "securefl/hazmat/prg.py",
                "streams.append((_encryptor(seed), np.add if sign == 1 else np.subtract))\n",
                "pass\n",
            ),
        ),
    ),
    Row(
        "mask-corrupted-shares",
        "mask.md",
        "Corrupted unmask shares are caught by the commitment",
        (
            Removal(  # a rebuilt secret is not checked against its commitment
                _UNMASK, "if v in got and check(v, got[v]):", "if v in got:"
            ),
            Removal(  # no other t-set is tried
                _UNMASK,
                "    for ids in _t_sets(sorted(shares), t):\n",
                "    for ids in list(_t_sets(sorted(shares), t))[:1]:\n",
            ),
        ),
    ),
    Row(
        "mask-thresholds",
        "mask.md",
        "Thresholds follow 2t > n + c",
        (
            Removal(  # the default t from 2t > n (no colluders counted)
                _CFG,
                "        least = max((n + c) // 2 + 1, self.min_cohort)\n",
                "        least = max(n // 2 + 1, self.min_cohort)\n",
            ),
            Removal(_CFG, "        if not 2 * t > n + c:\n", "        if not 2 * t > n:\n"),
            _off(_CFG, "n < smallest"),
        ),
    ),
    Row(
        "mask-regular-cut",
        "mask.md",
        "On the k-regular graph (n = 70), a server claiming two runs",
        (
            _off(_SL, "missing > self.plan.missing_allowed"),
            Removal(_SA_SRV, " or missing > allowed:", ":"),  # the honest server's cap
        ),
    ),
    Row(
        "mask-feasible-sum",
        "mask.md",
        "An unmasked sum that honest clipped inputs cannot produce",
        (
            _off(_UNMASK, "not 0 < s0 <= summands * (quant.value_bound + 1)"),
            _off(_UNMASK, "peak > s0 + 2 * summands"),
        ),
    ),
    Row(
        "mask-smaller-cohort",
        "mask.md",
        "A server that opens a smaller cohort does not lower the colluders tolerated",
        (
            Removal(  # c taken from the cohort the server opened, not the roster
                _CFG,
                "        big_n = n if federation_size is None else federation_size\n",
                "        big_n = n\n",
            ),
            _off(_CFG, "n < smallest"),
        ),
    ),
    Row(
        "mask-regular-quorum",
        "mask.md",
        "With no colluder, showing different parts of the k-regular ring",
        (
            _off(_SA, "len(signers) < self._plan.quorum"),
            Removal(  # the honest server's quorum
                _SA_SRV,
                "if len(u4) < max(t, plan.quorum) or lacking:",
                "if len(u4) < t or lacking:",
            ),
        ),
    ),
    Row(
        "mask-regular-colluders",
        "mask.md",
        "On the k-regular graph, `MaskPlan.colluders_tolerated` colluders placed anywhere",
        (  # two layers removed together: the cap on missing sites, the n − m signatures
            (
                _off(_SL, "missing > self.plan.missing_allowed"),
                _off(_SA, "len(signers) < self._plan.quorum"),
            ),
        ),
    ),
    Row(
        "mask-zero-weight",
        "mask.md",
        "An aggregate of total weight zero",
        (
            Removal(_UNMASK, "if not 0 < s0 <= summands", "if not 0 <= s0 <= summands"),
            _off(
                "securefl/runtime/global_model.py",
                "new.shape != self._params.shape or not np.all(np.isfinite(narrowed))",
            ),
        ),
    ),
    Row(
        "mask-weighted-sum",
        "mask.md",
        "The server learns Σ w·clip(Δ) and Σ w of the survivors",
        (
            Removal(_SA, "        z[1:] *= frac\n", "        pass\n"),  # not weighted
            Removal(  # not clipped
                _SA, "        np.clip(vec, -clip, clip, out=z[1:])", "        z[1:] = vec"
            ),
        ),
    ),
    Row(
        "mask-plan-tolerance",
        "mask.md",
        "`plan` states the colluders tolerated over every cohort",
        (  # the tolerance of the whole federation's cohort only, not the least over cohorts
            Removal(
                _CFG,
                "for n in range(self.smallest_cohort(federation_size), federation_size + 1):",
                "for n in range(federation_size, federation_size + 1):",
            ),
        ),
    ),
    Row(
        "mask-e2e-server-view",
        "mask.md",
        "In a whole simulated federation (`securefl simulate --secure mask`)",
        (  # no mask is added anywhere: the federation still trains, unmasked
            Removal(
                "securefl/hazmat/prg.py",
                "streams.append((_encryptor(seed), np.add if sign == 1 else np.subtract))\n",
                "pass\n",
            ),
        ),
    ),
    Row(
        "mask-e2e-dropout",
        "mask.md",
        "A site vanishing mid-protocol in a simulated federation is recovered",
        (  # a dropped site's pairwise masks are left in the survivors' sum
            Removal(
                _UNMASK, "    for v, sk in s_keys.items():\n", "    for v, sk in {}.items():\n"
            ),
        ),
    ),
    Row(
        "mask-nb-adverts",
        "mask.md",
        "The neighbourhood round (`MaskConfig(neighbourhood=True)`) sends each site only",
        (
            Removal(  # the server sends every site the whole cohort's adverts
                _SA_SRV,
                "        if self._plan.local:  # each site gets its holders' adverts only\n",
                "        if False:\n",
            ),
            _off(_SL, "strangers"),  # non-neighbours and off-roster ids accepted
            Removal(  # adverts not verified
                _SA,
                '                verify(self._roster[site], message, adv["sig"])\n',
                "                pass\n",
            ),
            _off(_SL, "missing > self.plan.local_missing"),  # more than ℓ withheld accepted
        ),
    ),
    Row(
        "mask-nb-withheld-survivor",
        "mask.md",
        "Neighbourhood round: a neighbour whose advert was withheld from a site",
        (
            _off(_SA, "not mine <= set(self._u2)"),
            _off(_SA, 'adv["digest"] != ctx.round_digest'),
        ),
    ),
    Row(
        "mask-nb-split-view",
        "mask.md",
        "Neighbourhood round: two halves of the ring shown two survivor lists",
        (_off(_MS, "len(signers) < quorum"),),  # the cohort-wide count not checked
    ),
    Row(
        "mask-nb-one-share",
        "mask.md",
        "Neighbourhood round: a site refuses a neighbour listed both surviving and dropped",
        (
            (
                _off(_SA, "set(dropped) & set(self._u3)"),
                _off(_SA, "sorted(dropped) != sorted(set(self._u2) - set(self._u3))"),
                _off(_SA, "set(b_out) & set(s_out)"),
            ),
        ),
    ),
    Row(
        "mask-nb-cancel",
        "mask.md",
        "Neighbourhood round: masks cancel with random dropouts at any stage",
        (
            Removal(  # a dropped site's pairwise masks are left in the survivors' sum
                _UNMASK, "    for v, sk in s_keys.items():\n", "    for v, sk in {}.items():\n"
            ),
            Removal(  # the server sends every site the whole cohort's adverts
                _SA_SRV,
                "        if self._plan.local:  # each site gets its holders' adverts only\n",
                "        if False:\n",
            ),
        ),
    ),
    Row(
        "mask-nb-quorum-tight",
        "mask.md",
        "Neighbourhood round: `MaskPlan.colluders_tolerated` and `MaskConfig.federation_tolerance`",
        (  # the count, and the cap on the missing that a cut of m + 1 sites also meets
            (
                _off(_MS, "len(signers) < quorum"),
                _off(_SL, "len(ids) < self.need or missing > self.plan.missing_allowed"),
            ),
        ),
    ),
    Row(
        "mask-nb-aggregate",
        "mask.md",
        "Neighbourhood round: a site refuses an unmask request whose BLS aggregate",
        (
            Removal(  # the aggregate not verified
                _MS,
                "        bls.verify_aggregate([keys[s] for s in signers], message, aggregate)\n",
                "        pass\n",
            ),
            _off(_MS, "strangers"),  # non-survivors counted
            _off(_MS, "len(signers) < quorum"),  # fewer than n - m accepted
            _off(_MSG, "bits[len(cohort) :].any()"),  # bits past the cohort ignored
        ),
    ),
    Row(
        "mask-nb-rogue-key",
        "mask.md",
        "Neighbourhood round: a colluding site whose roster BLS key",
        (_off(_MS, "not _possession_ok(public, proof)"),),  # proofs of possession not checked
    ),
    Row(
        "mask-nb-server-bls",
        "mask.md",
        "Neighbourhood round: a site sending a consistency signature that is not a valid BLS",
        (
            Removal(  # the server counts every signature it received, valid or not
                _SA_SRV,
                "            _, bad = split_valid(\n",
                "            bad: dict[str, str] = {}\n            _ = (\n",
            ),
            Removal(  # the server asks for shares with fewer than n - m valid signers
                _SA_SRV,
                "if len(u4) < max(t, plan.quorum) or lacking:",
                "if len(u4) < t or lacking:",
            ),
        ),
    ),
    Row(
        "mask-nb-bls-encodings",
        "mask.md",
        "Neighbourhood round: each site's BLS key is derived from its Ed25519 identity",
        (
            _off(_BLS, "public == _INFINITY_G1"),  # the identity as a key
            Removal(  # repeated signers counted
                _BLS,
                "    if not keys or len(set(keys)) != len(keys) or not isinstance(message, bytes):",
                "    if not keys:",
            ),
            _off(_BLS, "len(set(keys.values())) != len(keys)"),  # two parties, one key
            Removal(  # the key derived under another label
                _BLS, '_DERIVE_INFO = b"securefl/bls-identity/v1"', '_DERIVE_INFO = b"other"'
            ),
            _off(_BLS, "set(keys) != set(proofs)"),  # a key without its proof
        ),
    ),
    Row(
        "mask-split-view",
        "mask.md",
        "A cheating server that shows two survivor lists to two halves of the honest sites",
        (  # every check of the site's own t and quorum, together (as `mask-own-threshold`)
            (
                _off(_SL, _SITE_BELOW_T),
                _off(_SL, "missing > self.plan.missing_allowed"),
                _off(_SA, "len(signers & self._holders) < self._plan.threshold"),
                _off(_SA, "len(signers) < self._plan.quorum"),
            ),
        ),
    ),
    Row(
        "mask-isolation-masked-with",
        "mask.md",
        "k-regular graph (both rounds): isolating one site by withheld share senders is refused",
        (
            Removal(  # holders never check the peers' claims
                _SA,
                "if not self._plan.complete:  # each peer masked with",
                "if False:  # each peer masked with",
            ),
            Removal(  # claims checked for signatures only, not against the list
                _MW,
                "unmasked = (plan.neighbours(peer) & listed) - masked",
                "unmasked = set()",
            ),
        ),
    ),
    Row(
        "mask-masked-with-holder",
        "mask.md",
        "k-regular graph: a holder releases a peer's self-mask share only with the peer's signed",
        (
            Removal(  # the claim's signature not verified
                _MW,
                "    verify(public_key, _message(ctx, site, bitmap, round_digest), signature)\n",
                "",
            ),
            Removal(_MW, "        ctx.run,\n", ""),  # a claim of another run accepted
            Removal(  # a claim of another round accepted
                _MW,
                "        ctx.round,\n        ctx.run,\n        round_digest,\n",
                "        ctx.run,\n",
            ),
            Removal(  # a claim under another round start accepted
                _MW, "        ctx.run,\n        round_digest,\n", "        ctx.run,\n"
            ),
            (  # claims withheld skipped, extra ones ignored
                _off(_MW, "set(claims) != set(peers)"),
                Removal(_MW, "    for peer in peers:", "    for peer in set(peers) & set(claims):"),
            ),
            Removal(  # a claim leaving out a listed neighbour accepted
                _MW,
                "unmasked = (plan.neighbours(peer) & listed) - masked",
                "unmasked = set()",
            ),
        ),
    ),
    Row(
        "mask-masked-with-server",
        "mask.md",
        "k-regular graph: the honest server drops a site whose masked input comes without",
        (
            _off(_MW, "peers != plan.neighbours(site) & set(senders_shown)"),
            Removal(  # no claim asked for or checked
                _SA_SRV,
                "if not self._plan.complete:  # it masked with exactly",
                "if False:  # it masked with exactly",
            ),
            Removal(  # a claim sent on the complete graph too
                _SA,
                "if not self._plan.complete:  # which neighbours this input",
                "if True:  # which neighbours this input",
            ),
        ),
    ),
    Row(
        "mask-advert-round-start",
        "mask.md",
        "The honest server drops an advert signed for another round start",
        (_off(_SA_SRV, 'ctx.round_digest and adv["digest"] != ctx.round_digest'),),
    ),
)
