"""Generate tests/vectors/dp_skellam_accounting.json (Skellam RDP, subsampling, ε) WITHOUT securefl.

Sources, per section:

* ``skellam_rdp``: Agarwal, Kairouz, Liu 2021 (NeurIPS), Theorem 3.5, in terms of
  the total variance μ (the noise is Poisson(μ/2) − Poisson(μ/2)):
  ``α Δ₂²/(2μ) + min(((2α−1)Δ₂² + 6Δ₁)/(4μ²), 3Δ₁/(2μ))``, evaluated in exact
  rational arithmetic (``fractions.Fraction``; Δ₂² is given, so no square root).
  Each case is computed a second time in the parametrisation of the authors'
  reference code (google-research/federated ``distributed_dp``: sensitivities
  and variance in model units, a scale s that multiplies both), with s = 1/8,
  and the two must agree exactly.
* ``subsampled``: Zhu & Wang 2019 (ICML), Theorem 9 (general upper bound for
  Poisson subsampling, integer α) as ``rdp``, and ``accounted``, the least of
  it and the add/remove bound of docs/distributed_dp_accounting.md (A, B1, B2
  written term by term), in mpmath at 60 significant digits with exact
  binomials, on two base curves: the Skellam bound above and the Gaussian
  ``l/(2σ²)``. For the Gaussian the exact subsampled RDP at integer α
  (Mironov, Talwar, Zhang 2019, Section 3.3:
  ``Σ_k C(α,k)(1−q)^(α−k) q^k exp((k²−k)/(2σ²))``) is recorded beside it
  (``gaussian_exact``): both bounds must be at least that, and the add term A
  alone must equal it (``add_direction``).
* ``published_sampled_gaussian``: the sampled Gaussian's RDP as published in
  dp-accounting's test suite, reproduced by the add term A on the Gaussian
  curve (asserted here to 8 digits).
* ``epsilon``: ε after ``steps`` releases at δ, min over the orders of
  ``r + log((α−1)/α) − (log δ + log α)/(α−1)`` (Balle et al. 2020,
  Proposition 12), with r the composed subsampled curve from mpmath; the curve
  is ``accounted`` at each order.
* ``must_fail``: parameter sets the accountant must refuse (ConfigError).

Run: python tests/vectors/generate_skellam_accounting.py > tests/vectors/dp_skellam_accounting.json
"""

from __future__ import annotations

import json
import sys
from fractions import Fraction

import mpmath

mpmath.mp.dps = 60

ORDERS = (*range(2, 65), *range(72, 257, 8), 320, 384, 448, 512, 640, 768, 1024)

RDP_CASES = [
    # (mu, l1, l2 squared, alpha): l1 and l2² are what an integer vector can have
    (Fraction(1), 1, 1, 2),
    (Fraction(10), 3, 3, 5),
    (Fraction(1000), 30, 100, 2),
    (Fraction(1000), 30, 100, 64),
    (Fraction(12345, 7), 50, 400, 17),
    (Fraction(10**6), 2000, 10**4, 32),
    (Fraction(10**8), 10**4, 10**6, 256),
    (Fraction(1, 2), 4, 4, 3),
]

SUBSAMPLED_CASES = [
    # (base, params, q, alpha)
    ("skellam", {"mu": 1000.0, "l1": 30.0, "l2": 10.0}, 0.01, 2),
    ("skellam", {"mu": 1000.0, "l1": 30.0, "l2": 10.0}, 0.01, 32),
    ("skellam", {"mu": 1e4, "l1": 300.0, "l2": 100.0}, 0.001, 128),
    ("skellam", {"mu": 4.0e6, "l1": 1.0e4, "l2": 2.0e3}, 0.05, 12),
    ("skellam", {"mu": 50.0, "l1": 5.0, "l2": 5.0}, 0.5, 7),
    ("skellam", {"mu": 1000.0, "l1": 30.0, "l2": 10.0}, 1e-6, 1024),
    ("gaussian", {"sigma": 1.0}, 0.01, 2),
    ("gaussian", {"sigma": 1.0}, 0.01, 16),
    ("gaussian", {"sigma": 2.0}, 0.1, 40),
    ("gaussian", {"sigma": 0.8}, 0.001, 64),
    ("gaussian", {"sigma": 4.0}, 0.3, 256),
]

EPSILON_CASES = [
    # (mu, l1, l2, q, steps, delta)
    (1.0e4, 300.0, 100.0, 0.01, 1000, 1e-5),
    (3.3e4, 300.0, 100.0, 0.01, 1000, 1e-5),
    (1.0e6, 3000.0, 1000.0, 0.0016, 6250, 1e-5),
    (2.5e5, 1200.0, 400.0, 0.1, 100, 1e-4),
    (100.0, 10.0, 10.0, 1.0, 1, 1e-5),
    (5.0e7, 1.0e5, 5.0e3, 0.02, 500, 1e-6),
]

#: (σ, q, steps, α, RDP) of the Poisson-sampled Gaussian as published in dp-accounting's
#: own test suite (rdp_privacy_accountant_test.py, test_compute_rdp_poisson_sampled_gaussian,
#: 9 significant digits): the "add" term on the Gaussian curve must reproduce them.
PUBLISHED_SAMPLED_GAUSSIAN = [
    (2.5, 0.01, 50, 5, 2.18075656e-03),
    (2.5, 0.01, 50, 50, 2.38460375e-02),
    (2.5, 0.01, 50, 100, 1.67416308e02),
]

MUST_FAIL = [
    {"mu": 0.0, "l1": 1.0, "l2": 1.0, "q": 0.1, "steps": 1, "delta": 1e-5, "why": "mu = 0"},
    {"mu": -5.0, "l1": 1.0, "l2": 1.0, "q": 0.1, "steps": 1, "delta": 1e-5, "why": "mu < 0"},
    {"mu": 10.0, "l1": 0.0, "l2": 1.0, "q": 0.1, "steps": 1, "delta": 1e-5, "why": "l1 = 0"},
    {"mu": 10.0, "l1": 1.0, "l2": -1.0, "q": 0.1, "steps": 1, "delta": 1e-5, "why": "l2 < 0"},
    {"mu": 10.0, "l1": 1.0, "l2": 1.0, "q": 0.0, "steps": 1, "delta": 1e-5, "why": "q = 0"},
    {"mu": 10.0, "l1": 1.0, "l2": 1.0, "q": 1.5, "steps": 1, "delta": 1e-5, "why": "q > 1"},
    {"mu": 10.0, "l1": 1.0, "l2": 1.0, "q": 0.1, "steps": 0, "delta": 1e-5, "why": "steps = 0"},
    {"mu": 10.0, "l1": 1.0, "l2": 1.0, "q": 0.1, "steps": 1, "delta": 0.0, "why": "delta = 0"},
    {"mu": 10.0, "l1": 1.0, "l2": 1.0, "q": 0.1, "steps": 1, "delta": 1.0, "why": "delta = 1"},
    {"mu": "inf", "l1": 1.0, "l2": 1.0, "q": 0.1, "steps": 1, "delta": 1e-5, "why": "mu = inf"},
    {"mu": 10.0, "l1": "nan", "l2": 1.0, "q": 0.1, "steps": 1, "delta": 1e-5, "why": "l1 = nan"},
]


def skellam_exact(mu: Fraction, l1: Fraction, l2sq: Fraction, alpha: int) -> Fraction:
    a = Fraction(alpha)
    extra = min(((2 * a - 1) * l2sq + 6 * l1) / (4 * mu * mu), 3 * l1 / (2 * mu))
    return a * l2sq / (2 * mu) + extra


def skellam_authors(mu: Fraction, l1: Fraction, l2sq: Fraction, alpha: int) -> Fraction:
    """The same bound in the reference code's parametrisation: model units and a scale s."""
    s = Fraction(1, 8)
    l1_model, l2sq_model, var_model = l1 / s, l2sq / (s * s), mu / (s * s)
    a = Fraction(alpha)
    value = a / (2 * var_model) * l2sq_model
    value += min(
        ((2 * a - 1) * s * l2sq_model + 6 * l1_model) / (4 * s**3 * var_model**2),
        3 * l1_model / (2 * s * var_model),
    )
    return value


def base_curve(base: str, params: dict[str, float], top: int) -> list[mpmath.mpf]:
    if base == "gaussian":
        sigma = mpmath.mpf(params["sigma"])
        return [mpmath.mpf(j) / (2 * sigma**2) for j in range(2, top + 1)]
    mu, l1, l2 = (mpmath.mpf(params[k]) for k in ("mu", "l1", "l2"))
    return [
        j * l2**2 / (2 * mu) + min(((2 * j - 1) * l2**2 + 6 * l1) / (4 * mu**2), 3 * l1 / (2 * mu))
        for j in range(2, top + 1)
    ]


def zhu_wang(curve: list[mpmath.mpf], q: float, alpha: int) -> mpmath.mpf:
    g = mpmath.mpf(q)
    total = (1 - g) ** (alpha - 1) * (alpha * g - g + 1)
    total += mpmath.binomial(alpha, 2) * g**2 * (1 - g) ** (alpha - 2) * mpmath.exp(curve[0])
    for j in range(3, alpha + 1):
        total += (
            3
            * mpmath.binomial(alpha, j)
            * g**j
            * (1 - g) ** (alpha - j)
            * mpmath.exp((j - 1) * curve[j - 2])
        )
    return min(mpmath.log(total) / (alpha - 1), curve[alpha - 2])


def add_remove(curve: list[mpmath.mpf], q: float, alpha: int) -> mpmath.mpf:
    """max(log A, min(log B1, log B2)) / (α − 1) of docs/distributed_dp_accounting.md."""
    g = mpmath.mpf(q)

    def big_e(k: int) -> mpmath.mpf:  # E_k = exp((k − 1) ε(k)), E_0 = E_1 = 1
        return mpmath.mpf(1) if k < 2 else mpmath.exp((k - 1) * curve[k - 2])

    a_sum = mpmath.fsum(
        mpmath.binomial(alpha, k) * (1 - g) ** (alpha - k) * g**k * big_e(k)
        for k in range(alpha + 1)
    )

    def m(ell: int) -> mpmath.mpf:
        if ell == 2:
            return big_e(2) - 1
        return (big_e(ell) - 1) + (big_e(ell - 2) - 1) + (big_e(2) - 1)

    b1 = 1 + mpmath.fsum(
        mpmath.binomial(alpha, ell) * g**ell * m(ell) for ell in range(2, alpha + 1)
    )
    b2 = mpmath.fsum(
        mpmath.binomial(alpha - 1, k) * (1 - g) ** (alpha - 1 - k) * g**k * big_e(k + 1)
        for k in range(alpha)
    )
    return max(mpmath.log(a_sum), min(mpmath.log(b1), mpmath.log(b2))) / (alpha - 1)


def add_only(curve: list[mpmath.mpf], q: float, alpha: int) -> mpmath.mpf:
    """log(A) / (α − 1): on the Gaussian curve, Mironov et al.'s exact sampled-Gaussian RDP."""
    g = mpmath.mpf(q)
    total = mpmath.fsum(
        mpmath.binomial(alpha, k)
        * (1 - g) ** (alpha - k)
        * g**k
        * (mpmath.mpf(1) if k < 2 else mpmath.exp((k - 1) * curve[k - 2]))
        for k in range(alpha + 1)
    )
    return mpmath.log(total) / (alpha - 1)


def accounted(curve: list[mpmath.mpf], q: float, alpha: int) -> mpmath.mpf:
    """What the accountant charges: the least of the three bounds (zhu_wang has the unsampled)."""
    if q == 1.0:
        return curve[alpha - 2]
    return min(zhu_wang(curve, q, alpha), add_remove(curve, q, alpha))


def gaussian_exact(sigma: float, q: float, alpha: int) -> mpmath.mpf:
    g, s = mpmath.mpf(q), mpmath.mpf(sigma)
    total = mpmath.fsum(
        mpmath.binomial(alpha, k)
        * (1 - g) ** (alpha - k)
        * g**k
        * mpmath.exp((k * k - k) / (2 * s * s))
        for k in range(alpha + 1)
    )
    return mpmath.log(total) / (alpha - 1)


def epsilon(mu: float, l1: float, l2: float, q: float, steps: int, delta: float) -> mpmath.mpf:
    curve = base_curve("skellam", {"mu": mu, "l1": l1, "l2": l2}, max(ORDERS))
    best = None
    for a in ORDERS:
        r = accounted(curve, q, a) * steps
        eps = r + mpmath.log(mpmath.mpf(a - 1) / a) - (mpmath.log(delta) + mpmath.log(a)) / (a - 1)
        best = eps if best is None else min(best, eps)
    assert best is not None
    return max(best, mpmath.mpf(0))


def main() -> None:
    rdp_rows = []
    for mu, l1, l2sq, alpha in RDP_CASES:
        value = skellam_exact(mu, Fraction(l1), Fraction(l2sq), alpha)
        assert value == skellam_authors(mu, Fraction(l1), Fraction(l2sq), alpha)
        rdp_rows.append(
            {
                "mu": float(mu),
                "l1": float(l1),
                "l2": float(mpmath.sqrt(l2sq)),
                "alpha": alpha,
                "exact": f"{value.numerator}/{value.denominator}",
                "rdp": float(value),
            }
        )
    sub_rows = []
    for base, params, q, alpha in SUBSAMPLED_CASES:
        curve = base_curve(base, params, alpha)
        row = {
            "base": base,
            **params,
            "q": q,
            "alpha": alpha,
            "rdp": float(zhu_wang(curve, q, alpha)),
            "accounted": float(accounted(curve, q, alpha)),
        }
        assert row["accounted"] <= row["rdp"]
        if base == "gaussian":
            row["gaussian_exact"] = float(gaussian_exact(params["sigma"], q, alpha))
            assert row["gaussian_exact"] <= row["accounted"] * (1 + 1e-12)
            row["add_direction"] = float(add_only(curve, q, alpha))
            assert abs(row["add_direction"] / row["gaussian_exact"] - 1) < 1e-40
        sub_rows.append(row)
    eps_rows = [
        {
            "mu": mu,
            "l1": l1,
            "l2": l2,
            "q": q,
            "steps": steps,
            "delta": delta,
            "epsilon": float(epsilon(mu, l1, l2, q, steps, delta)),
        }
        for mu, l1, l2, q, steps, delta in EPSILON_CASES
    ]
    published = []
    for sigma, q, steps, alpha, value in PUBLISHED_SAMPLED_GAUSSIAN:
        curve = base_curve("gaussian", {"sigma": sigma}, alpha)
        mine = add_only(curve, q, alpha) * steps
        assert abs(mine / mpmath.mpf(value) - 1) < 1e-8, (alpha, mine, value)
        published.append({"sigma": sigma, "q": q, "steps": steps, "alpha": alpha, "rdp": value})
    doc = {
        "description": "Skellam RDP (Agarwal, Kairouz, Liu 2021, Thm 3.5, variance form), "
        "Poisson subsampling: Zhu & Wang 2019 Thm 9 and the add/remove bound of "
        "docs/distributed_dp_accounting.md, epsilon via Balle et al. 2020; "
        "see tests/vectors/generate_skellam_accounting.py",
        "orders": list(ORDERS),
        "skellam_rdp": rdp_rows,
        "subsampled": sub_rows,
        "epsilon": eps_rows,
        "published_sampled_gaussian": published,
        "must_fail": MUST_FAIL,
    }
    json.dump(doc, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
