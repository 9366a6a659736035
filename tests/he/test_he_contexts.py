from __future__ import annotations

import pickle

import pytest
import tenseal as ts
from conftest import FEDERATION, Kit

from securefl.aggregation.base import RoundContext
from securefl.errors import ConfigError
from securefl.he import (
    BFV_N4096,
    PRESETS,
    HEPreset,
    HEServerMode,
    HESiteMode,
    PublicContext,
    SecretContext,
)
from securefl.he._presets import SEAL_128BIT_MAX_COEFF_BITS
from securefl.he._trust import sign_context
from securefl.wire import pack, unpack

RC = RoundContext(federation="f", round=0, cohort=("a", "b"), dimension=10, max_weight=1.0)


def test_public_context_has_no_secret_key(bfv_secret: SecretContext) -> None:
    obj = unpack(bfv_secret.public_context_bytes())
    raw = ts.context_from(obj["context"])
    assert not raw.is_private()
    assert not raw.has_secret_key()
    assert not bfv_secret.public().tenseal.is_private()


def test_server_refuses_secret_context(bfv_kit: Kit) -> None:
    # even correctly signed by the maker, a secret context is refused by the server
    wrapped = sign_context(
        bfv_kit.secret.to_bytes(include_secret_key=True),
        kind="public",
        federation=FEDERATION,
        maker="a",
        signing_key=bfv_kit.keys["a"],
    )
    with pytest.raises(ConfigError, match="secret key"):
        HEServerMode(wrapped, roster=bfv_kit.roster, federation=FEDERATION)


def test_server_refuses_secret_key_under_public_label(bfv_secret: SecretContext) -> None:
    obj = unpack(bfv_secret.to_bytes(include_secret_key=True))
    obj["secret"] = False
    with pytest.raises(ConfigError, match="secret key"):
        PublicContext.from_bytes(pack(obj))


def test_secret_objects_refuse_pickling(bfv_kit: Kit) -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(bfv_kit.secret)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(bfv_kit.site_mode("a"))


def test_export_needs_explicit_flag(bfv_secret: SecretContext) -> None:
    with pytest.raises(ConfigError, match="include_secret_key=True"):
        bfv_secret.to_bytes()
    with pytest.raises(ConfigError):
        bfv_secret.to_bytes(include_secret_key=1)  # type: ignore[arg-type]
    loaded = SecretContext.from_bytes(bfv_secret.to_bytes(include_secret_key=True))
    assert loaded.key_id == bfv_secret.key_id
    assert loaded.tenseal.is_private()


def test_site_refuses_public_context_as_secret(bfv_secret: SecretContext) -> None:
    with pytest.raises(ConfigError, match="public HE context"):
        SecretContext.from_bytes(bfv_secret.public_context_bytes())


def test_each_mode_refuses_the_other_half(bfv_kit: Kit) -> None:
    with pytest.raises(ConfigError, match="signed_public_context"):
        bfv_kit.site_mode("a").server(RC)
    with pytest.raises(ConfigError, match="no secret key"):
        bfv_kit.server_mode().site(RC, "a")
    with pytest.raises(ConfigError, match="signs as"):  # a site cannot sign as another
        bfv_kit.site_mode("a").site(RC, "b")
    with pytest.raises(ConfigError, match="SigningKey"):
        HESiteMode(bfv_kit.secret, site_id="a", signing_key=b"\x00" * 32, max_weight=1.0)  # type: ignore[arg-type]


def test_presets_respect_128bit_bound() -> None:
    for preset in PRESETS.values():
        bound = SEAL_128BIT_MAX_COEFF_BITS[preset.poly_modulus_degree]
        assert sum(preset.coeff_mod_bit_sizes) <= bound


def test_preset_over_security_bound_refused() -> None:
    with pytest.raises(ConfigError, match="128-bit"):
        HEPreset(
            name="x",
            scheme="ckks",
            poly_modulus_degree=4096,
            coeff_mod_bit_sizes=(60, 55),
            scale_bits=40,
            max_abs_sum=1.0,
        )


def test_bfv_plain_modulus_has_room_for_max_sites() -> None:
    t = BFV_N4096.plain_modulus
    assert t is not None
    assert BFV_N4096.max_sites * BFV_N4096.quant_levels < t // 2
