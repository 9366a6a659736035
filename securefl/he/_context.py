"""Secret and public TenSEAL contexts, kept apart by type.

Why two classes: the one mistake that ends the security of ``he`` mode is a
secret key reaching the server. So the secret context is its own type that
refuses pickling and only serializes when asked with
``include_secret_key=True``; the server builds a :class:`PublicContext` from
bytes and that constructor refuses any context that can decrypt. Both carry a
``key_id`` (a hash of the parameters and secret key, never the key): a label
that catches a site provisioned with the wrong kit. It authenticates nothing;
the signatures in :mod:`securefl.he._trust` and the feasibility check in
:mod:`securefl.he._decrypt` do.

Both are signed by the site that generated them (:mod:`securefl.he._trust`):
``from_signed`` checks the maker's signature against the roster before
anything in the bytes is used, then validates every parameter (preset, clip,
key id) so a tampered kit is refused rather than half-trusted.

Sites encrypt with the secret key (SEAL's symmetric mode). Measured in
``docs/he.md``: it is faster and less noisy than public-key encryption, and
every site holds the secret key anyway; the server never encrypts, so the
public context needs no public key, only the parameters.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any, NoReturn

import tenseal as ts
import tenseal.sealapi  # registers the SEAL types the parameter checks read

from securefl.errors import ConfigError, IntegrityError, WireError
from securefl.hazmat.sign import SigningKey
from securefl.he._presets import DEFAULT_PRESET, HEPreset, preset_by_name
from securefl.he._trust import open_signed_context, sign_context
from securefl.wire import pack, unpack

__all__ = ["PublicContext", "SecretContext", "max_clip"]

_FORMAT = "securefl-he-context"
_VERSION = 1
_KEY_ID_DOMAIN = b"securefl/he/key-id/v2\x00"
_KEY_ID_LEN = 16


def max_clip(preset: HEPreset) -> float:
    """The largest clip a preset takes: CKKS sums of ``max_sites`` clipped values must not wrap."""
    if preset.scheme == "ckks":
        return preset.max_abs_sum / preset.max_sites
    return math.inf


def _check_clip(clip: object, preset: HEPreset) -> float:
    if not isinstance(clip, float) or not (0 < clip < math.inf) or clip > max_clip(preset):
        raise ConfigError(
            f"HE clip must be a positive finite float of at most {max_clip(preset):g} "
            f"for preset {preset.name}"
        )
    return clip


def _secret_bytes(ctx: ts.Context) -> bytes:
    return bytes(
        ctx.serialize(
            save_public_key=False,
            save_secret_key=True,
            save_galois_keys=False,
            save_relin_keys=False,
        )
    )


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _proto_fields(data: bytes) -> dict[int, bytes]:
    """Length-delimited top-level fields of a protobuf message (others skipped)."""
    out: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        wire = key & 7
        if wire == 2:
            n, i = _varint(data, i)
            out[key >> 3] = data[i : i + n]
            i += n
        elif wire == 0:
            _, i = _varint(data, i)
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError("unexpected protobuf wire type")
    return out


def _key_id(secret_bytes: bytes) -> bytes:
    """A hash of the parameters and the secret key only.

    TenSEAL's context serialization (``TenSEALContextProto``) also holds
    flags that change when the context is used, so hashing all of it would
    give one key several ids: fields 1 (encryption parameters) and 3 (the
    private part, holding the secret key) are what identify the key.
    """
    try:
        fields = _proto_fields(secret_bytes)
        parts = (fields[1], fields[3])
    except (IndexError, KeyError, ValueError):
        raise WireError("HE context bytes do not decode") from None
    digest = hashlib.sha256(_KEY_ID_DOMAIN)
    for part in parts:
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.digest()[:_KEY_ID_LEN]


def _new_tenseal(preset: HEPreset) -> ts.Context:
    if preset.scheme == "bfv":
        ctx = ts.context(
            ts.SCHEME_TYPE.BFV,
            poly_modulus_degree=preset.poly_modulus_degree,
            plain_modulus=preset.plain_modulus,
            coeff_mod_bit_sizes=list(preset.coeff_mod_bit_sizes),
            encryption_type=ts.ENCRYPTION_TYPE.SYMMETRIC,
            n_threads=1,
        )
    else:
        ctx = ts.context(
            ts.SCHEME_TYPE.CKKS,
            poly_modulus_degree=preset.poly_modulus_degree,
            coeff_mod_bit_sizes=list(preset.coeff_mod_bit_sizes),
            encryption_type=ts.ENCRYPTION_TYPE.SYMMETRIC,
            n_threads=1,
        )
    _set_scale(ctx, preset)
    return ctx


def _set_scale(ctx: ts.Context, preset: HEPreset) -> None:
    if preset.scheme == "ckks":
        assert preset.scale_bits is not None
        ctx.global_scale = 2.0**preset.scale_bits


def _check_parameters(ctx: ts.Context, preset: HEPreset) -> None:
    """The loaded context must have exactly the preset's parameters."""
    parms = ctx.seal_context().data.key_context_data().parms()
    got = (
        int(parms.poly_modulus_degree()),
        tuple(int(m.bit_count()) for m in parms.coeff_modulus()),
        int(parms.plain_modulus().value()) if preset.scheme == "bfv" else None,
    )
    want = (preset.poly_modulus_degree, preset.coeff_mod_bit_sizes, preset.plain_modulus)
    if got != want:
        raise ConfigError(f"context parameters {got} do not match preset {preset.name} {want}")


def _parse(data: bytes) -> dict[str, Any]:
    obj = unpack(data)
    fields = {"v", "format", "preset", "clip", "key_id", "secret", "context"}
    if not isinstance(obj, dict) or set(obj) != fields or obj["format"] != _FORMAT:
        raise WireError("not a securefl HE context")
    if obj["v"] != _VERSION:
        raise WireError(f"unsupported HE context version {obj['v']!r}")
    if not isinstance(obj["context"], bytes) or not isinstance(obj["key_id"], bytes):
        raise WireError("HE context fields have the wrong types")
    if not isinstance(obj["clip"], float) or not isinstance(obj["preset"], str):
        raise WireError("HE context fields have the wrong types")
    if len(obj["key_id"]) != _KEY_ID_LEN or not isinstance(obj["secret"], bool):
        raise WireError("HE context fields have the wrong types")
    return obj


def _load(obj: dict[str, Any], preset: HEPreset) -> ts.Context:
    _check_clip(obj["clip"], preset)
    try:
        ctx = ts.context_from(obj["context"], n_threads=1)
    except Exception:
        raise WireError("HE context bytes do not decode") from None
    _check_parameters(ctx, preset)
    _set_scale(ctx, preset)
    return ctx


class SecretContext:
    """A site's context: can encrypt and decrypt. Never leaves a site by accident."""

    def __init__(self, *, _ctx: ts.Context, preset: HEPreset, clip: float, key_id: bytes) -> None:
        self._ctx = _ctx
        self.preset = preset
        #: BFV: each coordinate of w/max_weight·Δ is clipped to [-clip, clip] before quantization.
        self.clip = clip
        self.key_id = key_id
        #: The roster site that made and signed this context (``None`` if loaded unsigned).
        self.maker: str | None = None

    @classmethod
    def generate(cls, preset: HEPreset = DEFAULT_PRESET, *, clip: float = 1.0) -> SecretContext:
        """Fresh keys for a federation (done once, at provisioning)."""
        if isinstance(clip, int) and not isinstance(clip, bool):
            clip = float(clip)
        _check_clip(clip, preset)
        ctx = _new_tenseal(preset)
        return cls(_ctx=ctx, preset=preset, clip=clip, key_id=_key_id(_secret_bytes(ctx)))

    @property
    def tenseal(self) -> ts.Context:
        """The underlying TenSEAL context (holds the secret key: keep it on the site)."""
        return self._ctx

    def _header(self, *, secret: bool, context: bytes) -> bytes:
        return pack(
            {
                "v": _VERSION,
                "format": _FORMAT,
                "preset": self.preset.name,
                "clip": self.clip,
                "key_id": self.key_id,
                "secret": secret,
                "context": context,
            }
        )

    def public_context_bytes(self) -> bytes:
        """The parameters the server needs to add ciphertexts, without any secret key."""
        public = self._ctx.serialize(
            save_public_key=False,
            save_secret_key=False,
            save_galois_keys=False,
            save_relin_keys=False,
        )
        if ts.context_from(public, n_threads=1).is_private():
            raise ConfigError("the serialized public context still holds a secret key")
        return self._header(secret=False, context=public)

    def to_bytes(self, *, include_secret_key: bool = False) -> bytes:
        """Export the full secret context (for a site's kit); needs ``include_secret_key=True``."""
        if include_secret_key is not True:
            raise ConfigError(
                "exporting a secret HE context writes its secret key; "
                "call to_bytes(include_secret_key=True) if that is intended"
            )
        return self._header(secret=True, context=_secret_bytes(self._ctx))

    @classmethod
    def from_bytes(cls, data: bytes) -> SecretContext:
        """Load a site's secret context exported with ``to_bytes(include_secret_key=True)``."""
        obj = _parse(data)
        preset = preset_by_name(obj["preset"])
        ctx = _load(obj, preset)
        if obj["secret"] is not True or not ctx.is_private():
            raise ConfigError("these bytes hold a public HE context; a site needs the secret one")
        if _key_id(_secret_bytes(ctx)) != obj["key_id"]:
            raise IntegrityError("the HE context's key id does not match its secret key")
        return cls(_ctx=ctx, preset=preset, clip=obj["clip"], key_id=obj["key_id"])

    def signed_public_context(
        self, *, federation: str, maker: str, signing_key: SigningKey
    ) -> bytes:
        """:meth:`public_context_bytes` signed by ``maker``, the site that generated the keys."""
        return sign_context(
            self.public_context_bytes(),
            kind="public",
            federation=federation,
            maker=maker,
            signing_key=signing_key,
        )

    def signed_secret_context(
        self,
        *,
        federation: str,
        maker: str,
        signing_key: SigningKey,
        include_secret_key: bool = False,
    ) -> bytes:
        """The secret context signed by ``maker``, for the other sites only (never the server)."""
        return sign_context(
            self.to_bytes(include_secret_key=include_secret_key),
            kind="secret",
            federation=federation,
            maker=maker,
            signing_key=signing_key,
        )

    @classmethod
    def from_signed(
        cls,
        data: bytes,
        *,
        roster: Mapping[str, bytes],
        federation: str,
        maker: str | None = None,
    ) -> SecretContext:
        """Load a secret context after checking its maker's signature against the roster."""
        maker, inner = open_signed_context(
            data, kind="secret", roster=roster, federation=federation, maker=maker
        )
        loaded = cls.from_bytes(inner)
        loaded.maker = maker
        return loaded

    def public(self) -> PublicContext:
        """This context's public half, as the server would load it."""
        return PublicContext.from_bytes(self.public_context_bytes())

    def __reduce__(self) -> NoReturn:
        raise TypeError("SecretContext holds a secret key and cannot be pickled")

    def __getstate__(self) -> NoReturn:
        raise TypeError("SecretContext holds a secret key and cannot be pickled")

    def __repr__(self) -> str:
        return f"SecretContext(preset={self.preset.name!r}, key_id={self.key_id.hex()})"


class PublicContext:
    """The server's context: parameters only. It can add ciphertexts, not read them."""

    def __init__(self, *, _ctx: ts.Context, preset: HEPreset, clip: float, key_id: bytes) -> None:
        self._ctx = _ctx
        self.preset = preset
        self.clip = clip
        self.key_id = key_id
        #: The roster site that made and signed this context (``None`` if loaded unsigned).
        self.maker: str | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicContext:
        """Load the server's context, refusing any context that holds a secret key."""
        obj = _parse(data)
        preset = preset_by_name(obj["preset"])
        ctx = _load(obj, preset)
        if obj["secret"] is not False or ctx.is_private() or ctx.has_secret_key():
            raise ConfigError(
                "refusing an HE context that holds a secret key: the server must only "
                "ever receive public_context_bytes(), never a site's secret context"
            )
        return cls(_ctx=ctx, preset=preset, clip=obj["clip"], key_id=obj["key_id"])

    @classmethod
    def from_signed(
        cls,
        data: bytes,
        *,
        roster: Mapping[str, bytes],
        federation: str,
        maker: str | None = None,
    ) -> PublicContext:
        """Load the server's context after checking its maker's signature against the roster."""
        maker, inner = open_signed_context(
            data, kind="public", roster=roster, federation=federation, maker=maker
        )
        loaded = cls.from_bytes(inner)
        loaded.maker = maker
        return loaded

    @property
    def tenseal(self) -> ts.Context:
        """The underlying TenSEAL context (no secret key)."""
        return self._ctx

    def __repr__(self) -> str:
        return f"PublicContext(preset={self.preset.name!r}, key_id={self.key_id.hex()})"
