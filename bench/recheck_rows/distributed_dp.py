"""Removal entries for the claim rows of ``threat_models/distributed_dp.md``."""

from __future__ import annotations

from ._common import _SA, _SITE_BELOW_T, _SL, Removal, Row, _off

_SK = "securefl/hazmat/skellam.py"
_SHARES = "securefl/dp/distributed/_shares.py"
_ROUNDING = "securefl/dp/distributed/_rounding.py"
_RING = "securefl/dp/distributed/_ring.py"
_INT = "securefl/secagg/_integer.py"
_FRESH_KEY = Removal(  # every keystream under one fixed key instead of a fresh os.urandom one
    "securefl/hazmat/dgauss.py",
    "            key = os.urandom(KEY_LEN)\n",
    "            key = bytes(KEY_LEN)\n",
)
_SKELLAM_MEANS = Removal(  # each Poisson of Sk(μ) drawn with mean μ instead of μ/2
    _SK, "    both = poisson(rng, 2 * count, mu / 2)\n", "    both = poisson(rng, 2 * count, mu)\n"
)

ROWS: tuple[Row, ...] = (
    Row(
        "dd-exact-noise",
        "distributed_dp.md",
        "Noise is drawn exactly",
        (
            Removal(  # the exact lazy comparison accepts every undecided proposal
                _SK, "        if Fraction(v + 1, 1 << bits) <= lo:\n", "        if True:\n"
            ),
            Removal(  # the geometric tails are never proposed (a truncated Poisson)
                _SK,
                "self.table_total + self.right[1] + (self.left[1] if self.left else 0)\n",
                "self.table_total\n",
            ),
            _SKELLAM_MEANS,
        ),
    ),
    Row(
        "dd-csprng-only",
        "distributed_dp.md",
        "Noise comes only from the AES-256-CTR CSPRNG",
        (
            _off(_SK, "not isinstance(rng, KeystreamRng)"),
            _FRESH_KEY,
        ),
    ),
    Row(
        "dd-shares-sum",
        "distributed_dp.md",
        "The shares of any set of sites add up",
        (_SKELLAM_MEANS,),
    ),
    Row(
        "dd-sensitivity",
        "distributed_dp.md",
        "What is sent has L2 sensitivity",
        (  # the rounding term sqrt(d) left out of both bounds
            (
                Removal(
                    _ROUNDING,
                    "    l2 = math.nextafter(c * s + root, math.inf)\n",
                    "    l2 = math.nextafter(c * s, math.inf)\n",
                ),
                Removal(
                    _ROUNDING,
                    "math.nextafter(c * s * root, math.inf) + dimension, math.inf)",
                    "math.nextafter(c * s * root, math.inf), math.inf)",
                ),
            ),
        ),
    ),
    Row(
        "dd-colluders-full-noise",
        "distributed_dp.md",
        "Colluders (up to c) who subtract their own shares",
        (  # each share sized for t sites instead of the t - c honest ones
            Removal(
                _SHARES,
                "        return self.total_variance / self.contributors\n",
                "        return self.total_variance / self.threshold\n",
            ),
        ),
    ),
    Row(
        "dd-colluders-below-t",
        "distributed_dp.md",
        "A site cannot size a share when c ≥ t",
        (_off(_SHARES, "c >= t"),),
    ),
    Row(
        "dd-masking-withstands-c",
        "distributed_dp.md",
        "A site never sizes its share for more colluders",
        (_off("securefl/runtime/_distributed.py", "plan.colluders_tolerated < colluders"),),
    ),
    Row(
        "dd-no-second-view",
        "distributed_dp.md",
        "A cheating server gets no second noisy view",
        (
            _off("securefl/runtime/_account.py", "last is not None and round_id <= last"),
            (  # every check of the site's own t: members, missing, consistency signatures
                _off(_SL, _SITE_BELOW_T),
                _off(_SL, "missing > self.plan.missing_allowed"),
                _off(_SA, "len(signers & self._holders) < self._plan.threshold"),
                _off(_SA, "len(signers) < self._plan.quorum"),
            ),
            _FRESH_KEY,
        ),
    ),
    Row(
        "dd-integer-sum-only",
        "distributed_dp.md",
        "The server learns only the sum on the integer path",
        (
            Removal(  # no mask is added anywhere: the round still sums, unmasked
                "securefl/hazmat/prg.py",
                "streams.append((_encryptor(seed), np.add if sign == 1 else np.subtract))\n",
                "pass\n",
            ),
            Removal(  # a dropped site's pairwise masks are left in the sum
                "securefl/secagg/_unmask.py",
                "    for v, sk in s_keys.items():\n",
                "    for v, sk in {}.items():\n",
            ),
            Removal(  # a weight slot after the values
                _INT,
                "        return self._ctx.dimension  # no weight slot",
                "        return self._ctx.dimension + 1  # a weight slot",
            ),
        ),
    ),
    Row(
        "dd-integer-bound",
        "distributed_dp.md",
        "A cheating site sending more than clipping allows",
        (_off(_INT, "peak > self._ring.magnitude_bound"),),
    ),
    Row(
        "dd-ring-plan",
        "distributed_dp.md",
        "The ring plan wraps (and refuses honest rounds)",
        (  # the ring sized for the signal alone, no room for the noise
            Removal(
                _RING,
                "    magnitude = sig + hi - 1  #",
                "    magnitude = sig  #",
            ),
        ),
    ),
)
