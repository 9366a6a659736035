"""A preset built at run time (``dataclasses.replace``) is checked like the shipped ones.

The shipped presets are validated once, at import; these tests rebuild them
with one field changed, so every check of ``HEPreset.__post_init__`` runs
against a preset that must pass and one that must not: a BFV plain modulus
that does not batch (t ≠ 1 mod 2N) or leaves no quantization level for
``max_sites`` summands would let sums wrap or fail to encode.
"""

from __future__ import annotations

import dataclasses

import pytest

from securefl.errors import ConfigError
from securefl.he import BFV_N4096, CKKS_N4096, HEPreset


def _rebuilt(preset: HEPreset, **change: object) -> HEPreset:
    return dataclasses.replace(preset, **change)  # type: ignore[arg-type]


@pytest.mark.parametrize("preset", [BFV_N4096, CKKS_N4096], ids=lambda p: p.name)
def test_a_shipped_preset_rebuilt_unchanged_passes_its_own_checks(preset: HEPreset) -> None:
    assert _rebuilt(preset) == preset
    assert _rebuilt(preset, max_sites=1).max_sites == 1
    with pytest.raises(ConfigError):
        _rebuilt(preset, max_sites=0)


def test_bfv_needs_a_batching_plain_modulus() -> None:
    t = BFV_N4096.plain_modulus
    assert t is not None and t % (2 * BFV_N4096.poly_modulus_degree) == 1
    for bad in (None, t + 2, t + BFV_N4096.poly_modulus_degree):
        with pytest.raises(ConfigError):
            _rebuilt(BFV_N4096, plain_modulus=bad)


def test_bfv_takes_max_sites_down_to_a_single_quantization_level() -> None:
    t = BFV_N4096.plain_modulus
    assert t is not None
    one_level = _rebuilt(BFV_N4096, max_sites=t // 2 - 1)
    assert one_level.quant_levels == 1
    with pytest.raises(ConfigError):  # no level left: sums of max_sites values would wrap
        _rebuilt(BFV_N4096, max_sites=t // 2)


def test_ckks_takes_a_scale_and_no_plain_modulus() -> None:
    assert _rebuilt(CKKS_N4096, max_sites=3).scheme == "ckks"
    with pytest.raises(ConfigError):
        _rebuilt(CKKS_N4096, plain_modulus=BFV_N4096.plain_modulus)
    with pytest.raises(ConfigError):
        _rebuilt(CKKS_N4096, scale_bits=None)
    with pytest.raises(ConfigError):
        _rebuilt(CKKS_N4096, scheme="paillier")
