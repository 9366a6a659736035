"""Contexts are slow-ish to make; share one kit per preset across the he tests.

A kit is what provisioning gives a federation: identity keys for sites a..g
on a roster, the HE keys made (and both contexts signed) by site ``a``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from securefl.hazmat.sign import SigningKey
from securefl.he import (
    BFV_N4096,
    CKKS_N4096,
    CKKS_N8192,
    PRESETS,
    HEPreset,
    HEServerMode,
    HESiteMode,
    SecretContext,
)

FEDERATION = "f"
#: The federation's max_weight every kit's sites are configured with.
MAX_WEIGHT = 100.0
SITES = ("a", "b", "c", "d", "e", "f", "g")


@dataclass
class Kit:
    secret: SecretContext
    keys: dict[str, SigningKey]
    roster: dict[str, bytes]
    signed_public: bytes
    signed_secret: bytes
    modes: dict[str, HESiteMode] = field(default_factory=dict)

    def site_mode(self, site: str) -> HESiteMode:
        if site not in self.modes:
            self.modes[site] = HESiteMode(
                self.secret,
                site_id=site,
                signing_key=self.keys[site],
                max_weight=MAX_WEIGHT,
                processes=False,
            )
        return self.modes[site]

    def server_mode(self) -> HEServerMode:
        return HEServerMode(self.signed_public, roster=self.roster, federation=FEDERATION)


def make_kit(secret: SecretContext, maker: str = "a") -> Kit:
    keys = {s: SigningKey.generate() for s in SITES}
    roster = {s: k.public_bytes() for s, k in keys.items()}
    public = secret.signed_public_context(
        federation=FEDERATION, maker=maker, signing_key=keys[maker]
    )
    private = secret.signed_secret_context(
        federation=FEDERATION, maker=maker, signing_key=keys[maker], include_secret_key=True
    )
    return Kit(secret, keys, roster, public, private)


def _kit(preset: HEPreset, **kw: float) -> Kit:
    return make_kit(SecretContext.generate(preset, **kw))


@pytest.fixture(scope="session")
def bfv_kit() -> Kit:
    return _kit(BFV_N4096, clip=0.1)


@pytest.fixture(scope="session")
def ckks_kit() -> Kit:
    return _kit(CKKS_N4096)


@pytest.fixture(scope="session")
def ckks8192_kit() -> Kit:
    return _kit(CKKS_N8192)


@pytest.fixture(scope="session")
def bfv_secret(bfv_kit: Kit) -> SecretContext:
    return bfv_kit.secret


@pytest.fixture(scope="session")
def ckks_secret(ckks_kit: Kit) -> SecretContext:
    return ckks_kit.secret


@pytest.fixture(scope="session")
def ckks8192_secret(ckks8192_kit: Kit) -> SecretContext:
    return ckks8192_kit.secret


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def seal_bytes(ciphertext: Any, tmp_dir: Path) -> bytes:
    """A SEAL ciphertext's own serialization (through a file: the binding offers no other)."""
    path = tmp_dir / f"ct-{id(ciphertext)}.bin"
    ciphertext.save(str(path))
    data = path.read_bytes()
    path.unlink()
    return data


def craft_vector(
    scheme: str, ciphertexts: list[bytes], sizes: list[int], scale: float | None = None
) -> bytes:
    """A TenSEAL vector (BFVVectorProto / CKKSVectorProto) around chosen SEAL ciphertexts.

    How a cheating site or server builds the well-formed but unexpected chunks
    the server must refuse (another scale or level, size 3, two ciphertexts).
    """
    packed = b"".join(_varint(n) for n in sizes)
    out = b"\x0a" + _varint(len(packed)) + packed
    for raw in ciphertexts:
        out += b"\x12" + _varint(len(raw)) + raw
    if scheme == "ckks":
        assert scale is not None
        out += b"\x19" + struct.pack("<d", scale)
    return out


_KITS: dict[str, Kit] = {}


@pytest.fixture(params=sorted(PRESETS))
def any_kit(request: pytest.FixtureRequest) -> Kit:
    """Every preset in turn (kits made once per session)."""
    name: str = request.param
    if name not in _KITS:
        preset = PRESETS[name]
        _KITS[name] = _kit(preset, clip=0.1) if preset.scheme == "bfv" else _kit(preset)
    return _KITS[name]
