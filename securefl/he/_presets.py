"""Named TenSEAL parameter sets, sized for sums (and at most one scalar product).

Why presets and not knobs: choosing a coefficient modulus, a scale and a
plaintext modulus is where homomorphic encryption is easiest to get wrong
(too many modulus bits silently drop security below 128 bits; too small a
plaintext modulus silently wraps a sum). Every preset here is checked on
construction against SEAL's 128-bit bounds on the total coefficient-modulus
bits (109 for N = 4096, 218 for 8192, 438 for 16384) and carries the bounds
the rest of the package enforces: how many sites may be summed and how large
a value may grow. Sizes and errors in ``docs/he.md`` were measured with these
exact parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from securefl.errors import ConfigError

__all__ = [
    "BFV_N4096",
    "CKKS_N4096",
    "CKKS_N8192",
    "CKKS_N8192_4PRIMES",
    "DEFAULT_PRESET",
    "PRESETS",
    "SEAL_128BIT_MAX_COEFF_BITS",
    "HEPreset",
    "preset_by_name",
]

#: SEAL's HomomorphicEncryption.org bounds for 128-bit classical security.
SEAL_128BIT_MAX_COEFF_BITS = {4096: 109, 8192: 218, 16384: 438}


@dataclass(frozen=True, kw_only=True)
class HEPreset:
    """One parameter set; validated so an unsafe combination cannot exist.

    ``coeff_mod_bit_sizes`` lists SEAL's primes; the last one is the special
    (key-switching) prime that ciphertexts never carry, so a fresh ciphertext
    holds the others. ``max_sites`` bounds how many updates may be summed
    (BFV: the quantized sum must stay inside the plaintext modulus; CKKS: the
    noise budget). ``max_abs_sum`` (CKKS) bounds the magnitude of any
    coordinate of a sum: beyond it the value wraps around the modulus.
    ``scalar_levels`` is how many scalar multiplications a sum survives (the
    encrypted global model needs one per round).
    """

    name: str
    scheme: Literal["ckks", "bfv"]
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    plain_modulus: int | None = None
    scale_bits: int | None = None
    max_sites: int = 1024
    max_abs_sum: float = 0.0
    scalar_levels: int = 0

    def __post_init__(self) -> None:
        bound = SEAL_128BIT_MAX_COEFF_BITS.get(self.poly_modulus_degree)
        if bound is None:
            raise ConfigError(f"preset {self.name}: N must be 4096, 8192 or 16384")
        if len(self.coeff_mod_bit_sizes) < 2:
            raise ConfigError(f"preset {self.name}: need a data prime and a special prime")
        if sum(self.coeff_mod_bit_sizes) > bound:
            raise ConfigError(
                f"preset {self.name}: {sum(self.coeff_mod_bit_sizes)} coefficient-modulus bits "
                f"exceed the 128-bit security bound of {bound} for N={self.poly_modulus_degree}"
            )
        if self.max_sites < 1:
            raise ConfigError(f"preset {self.name}: max_sites must be positive")
        if self.scheme == "bfv":
            t = self.plain_modulus
            if t is None or t % (2 * self.poly_modulus_degree) != 1:
                raise ConfigError(
                    f"preset {self.name}: BFV needs a batching plain modulus t = 1 mod 2N"
                )
            if self.quant_levels < 1:
                raise ConfigError(f"preset {self.name}: plain modulus too small for max_sites")
        elif self.scheme == "ckks":
            if self.plain_modulus is not None or self.scale_bits is None:
                raise ConfigError(f"preset {self.name}: CKKS takes a scale and no plain modulus")
            if self.max_abs_sum <= 0:
                raise ConfigError(f"preset {self.name}: CKKS needs max_abs_sum")
        else:
            raise ConfigError(f"preset {self.name}: unknown scheme {self.scheme!r}")

    @property
    def slots(self) -> int:
        """Values per ciphertext: N for BFV batching, N/2 for CKKS."""
        return self.poly_modulus_degree if self.scheme == "bfv" else self.poly_modulus_degree // 2

    @property
    def quant_levels(self) -> int:
        """BFV: one site's value lies in [-L, L] so that max_sites of them stay below t/2."""
        if self.plain_modulus is None:
            return 0
        return (self.plain_modulus // 2 - 1) // self.max_sites


#: The default: exact sums, 3.77 bytes per float32 byte, 128-bit security (docs/he.md).
#: One 54-bit data prime leaves 19 bits of noise budget after encryption and 9
#: after 1000 additions; t is the largest 30-bit prime = 1 mod 8192, so 1024
#: sites of 2^19 quantization levels each cannot wrap.
BFV_N4096 = HEPreset(
    name="bfv-n4096",
    scheme="bfv",
    poly_modulus_degree=4096,
    coeff_mod_bit_sizes=(54, 55),
    plain_modulus=1073692673,
    max_sites=1024,
)

#: CKKS for additions only: one 54-bit data prime, scale 2^40, so a sum may
#: reach 2^12 in magnitude with about 1e-9 absolute error per site.
CKKS_N4096 = HEPreset(
    name="ckks-n4096",
    scheme="ckks",
    poly_modulus_degree=4096,
    coeff_mod_bit_sizes=(54, 55),
    scale_bits=40,
    max_sites=1024,
    max_abs_sum=2.0**12,
)

#: CKKS with one spare level, for the encrypted global model (the server
#: multiplies the sum by lr/Σw once per round, then rescales to the last prime).
CKKS_N8192 = HEPreset(
    name="ckks-n8192",
    scheme="ckks",
    poly_modulus_degree=8192,
    coeff_mod_bit_sizes=(60, 40, 60),
    scale_bits=40,
    max_sites=1024,
    max_abs_sum=2.0**18,
    scalar_levels=1,
)

#: The widely used TenSEAL example setup, kept as the benchmark reference.
CKKS_N8192_4PRIMES = HEPreset(
    name="ckks-n8192-4primes",
    scheme="ckks",
    poly_modulus_degree=8192,
    coeff_mod_bit_sizes=(60, 40, 40, 60),
    scale_bits=40,
    max_sites=1024,
    max_abs_sum=2.0**18,
    scalar_levels=2,
)

DEFAULT_PRESET = BFV_N4096

PRESETS: dict[str, HEPreset] = {
    p.name: p for p in (BFV_N4096, CKKS_N4096, CKKS_N8192, CKKS_N8192_4PRIMES)
}


def preset_by_name(name: str) -> HEPreset:
    """Look a preset up by its name (``bfv-n4096`` ...); unknown names raise ConfigError."""
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise ConfigError(f"unknown HE preset {name!r}; known presets: {known}") from None
