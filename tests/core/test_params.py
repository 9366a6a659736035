import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from securefl.errors import DataError
from securefl.params import (
    ParamSpec,
    flatten,
    load_params,
    load_vector_into,
    model_vector,
    params_hash,
    save_params,
    unflatten,
)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.GroupNorm(1, 3), nn.Linear(3, 2))


def test_round_trip_is_exact():
    model = _model()
    spec = ParamSpec.from_state_dict(model.state_dict())
    vec = flatten(model.state_dict(), spec)
    assert vec.dtype == np.float32 and vec.shape == (spec.size,)
    back = unflatten(vec, spec)
    for name, tensor in model.state_dict().items():
        assert torch.equal(back[name], tensor)


def test_spec_round_trips_through_dict():
    spec = ParamSpec.from_state_dict(_model().state_dict())
    assert ParamSpec.from_dict(spec.to_dict()) == spec


def test_integer_buffers_are_not_parameters():
    bn = nn.BatchNorm1d(3)
    spec = ParamSpec.from_state_dict(bn.state_dict())
    assert "num_batches_tracked" not in spec.names


def test_wrong_length_and_nan_are_refused():
    spec = ParamSpec.from_state_dict(_model().state_dict())
    with pytest.raises(DataError, match="needs"):
        unflatten(np.zeros(spec.size + 1, dtype=np.float32), spec)
    bad = np.zeros(spec.size, dtype=np.float32)
    bad[3] = np.nan
    with pytest.raises(DataError, match="NaN"):
        unflatten(bad, spec)


def test_mismatched_shapes_or_names_raise():
    spec = ParamSpec.from_state_dict(_model().state_dict())
    other = nn.Sequential(nn.Linear(5, 3), nn.GroupNorm(1, 3), nn.Linear(3, 2))
    with pytest.raises(DataError, match="shape"):
        flatten(other.state_dict(), spec)
    renamed = {"x" + k: v for k, v in _model().state_dict().items()}
    with pytest.raises(DataError, match="no parameter"):
        flatten(renamed, spec)


def test_load_vector_into_changes_the_model_in_place():
    model = _model()
    spec = ParamSpec.from_state_dict(model.state_dict())
    first = model[0].weight
    target = np.arange(spec.size, dtype=np.float32) / 100
    load_vector_into(model, target, spec)
    assert model[0].weight is first  # optimizer references stay valid
    np.testing.assert_array_equal(model_vector(model, spec), target)


def test_safetensors_round_trip(tmp_path):
    model = _model()
    spec = ParamSpec.from_state_dict(model.state_dict())
    vec = model_vector(model, spec)
    save_params(tmp_path / "m.safetensors", vec, spec)
    np.testing.assert_array_equal(load_params(tmp_path / "m.safetensors", spec), vec)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=50))
def test_hash_changes_with_any_value(values):
    vec = np.asarray(values, dtype=np.float32)
    other = vec.copy()
    other[0] = np.nextafter(other[0], np.float32(np.inf))
    assert params_hash(vec) != params_hash(other)
