"""ModelConfig: the course model's numbers, and a clear ValueError for every config that cannot be a model."""

import dataclasses
import re

import numpy as np
import pytest

from tinyllm_lab.config import COURSE_MODEL, ModelConfig

# A small valid config with grouped-query attention (2 kv heads serve 4 query heads).
SMALL = dict(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, hidden_dim=64, vocab_size=97, max_seq_len=80)


def test_course_model_values():  # the course model of the contract and the issue
    assert dataclasses.asdict(COURSE_MODEL) == dict(
        dim=256, n_layers=2, n_heads=4, n_kv_heads=4, head_dim=64, hidden_dim=1024, vocab_size=16384,
        max_seq_len=1024, norm_eps=1e-5, rope_theta=10000.0, tie_embeddings=True)


def test_field_names_and_order_are_meta_llama2c():
    assert [f.name for f in dataclasses.fields(ModelConfig)] == [
        "dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "hidden_dim", "vocab_size", "max_seq_len",
        "norm_eps", "rope_theta", "tie_embeddings"]


def test_defaults():
    config = ModelConfig(**SMALL)
    assert (config.norm_eps, config.rope_theta, config.tie_embeddings) == (1e-5, 10000.0, True)


def test_frozen_and_hashable():
    config = ModelConfig(**SMALL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.dim = 64
    assert ModelConfig(**SMALL) == config and hash(ModelConfig(**SMALL)) == hash(config)


@pytest.mark.parametrize("changes", [dict(n_kv_heads=4), dict(n_kv_heads=1), dict(tie_embeddings=False),
                                     dict(n_heads=1, n_kv_heads=1, head_dim=32), dict(norm_eps=1e-6, rope_theta=5e5)])
def test_valid_configs(changes):  # multi-head, multi-query, untied, one head, other constants
    config = ModelConfig(**{**SMALL, **changes})
    assert all(getattr(config, name) == value for name, value in changes.items())


SIZE_FIELDS = ["dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "hidden_dim", "vocab_size", "max_seq_len"]


@pytest.mark.parametrize("field", SIZE_FIELDS)
@pytest.mark.parametrize("value", [0, -8, 8.0, True, None, "8"])
def test_sizes_must_be_positive_integers(field, value):
    with pytest.raises(ValueError, match=rf"ModelConfig\.{field} must be a positive integer, got {value!r}"):
        ModelConfig(**{**SMALL, field: value})


@pytest.mark.parametrize("changes, message", [
    (dict(n_kv_heads=3), r"n_heads = 4 is not divisible by n_kv_heads = 3"),
    (dict(n_kv_heads=8), r"n_heads = 4 is not divisible by n_kv_heads = 8"),
    (dict(dim=36, head_dim=9), r"head_dim = 9 must be even for RoPE pairs"),
    (dict(norm_eps=0.0), r"norm_eps must be finite and > 0, got 0\.0"),
    (dict(norm_eps=-1e-5), r"norm_eps must be finite and > 0, got -1e-05"),
    (dict(norm_eps=float("nan")), r"norm_eps must be finite and > 0, got nan"),
    (dict(rope_theta=0.0), r"rope_theta must be finite and > 0, got 0\.0"),
    (dict(tie_embeddings=1), r"tie_embeddings must be True or False, got 1"),
    (dict(tie_embeddings="yes"), r"tie_embeddings must be True or False, got 'yes'"),
])
def test_inconsistent_configs_name_the_numbers(changes, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**SMALL, **changes})


# --- numbers that are not finite, not numbers, or numpy scalars (issue 10, kind 1) -----------------

@pytest.mark.parametrize("field", ["norm_eps", "rope_theta"])
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), 1e999, -1.0, 0, 10**400,
                                   np.float64("inf"), np.float32("nan")])
def test_constants_must_be_finite_and_positive(field, value):
    # config.json's 1e999 is inf: it loaded, and the command line then printed NUL bytes and exited 0
    with pytest.raises(ValueError, match=rf"ModelConfig\.{field} must be finite and > 0, got "):
        ModelConfig(**{**SMALL, field: value})


@pytest.mark.parametrize("field", ["norm_eps", "rope_theta"])
@pytest.mark.parametrize("value", ["1e-5", None, True, [1e-5], 1 + 0j])
def test_constants_must_be_numbers(field, value):
    with pytest.raises(ValueError, match=rf"ModelConfig\.{field} must be a number, got "):
        ModelConfig(**{**SMALL, field: value})


def test_numpy_numbers_are_accepted_and_stored_as_python_numbers():
    config = ModelConfig(**{**SMALL, "dim": np.int64(32), "vocab_size": np.int32(97), "norm_eps": np.float32(1e-5),
                            "rope_theta": np.float64(5e5), "max_seq_len": np.uint16(80)})
    assert config == ModelConfig(**{**SMALL, "norm_eps": float(np.float32(1e-5)), "rope_theta": 5e5})
    assert type(config.dim) is int and type(config.vocab_size) is int and type(config.max_seq_len) is int
    assert type(config.norm_eps) is float and type(config.rope_theta) is float
    assert hash(config) == hash(ModelConfig(**{**SMALL, "norm_eps": float(np.float32(1e-5)), "rope_theta": 5e5}))


def test_integer_constants_are_stored_as_floats():
    config = ModelConfig(**{**SMALL, "rope_theta": 10000, "norm_eps": 1})
    assert config.rope_theta == 10000.0 and type(config.rope_theta) is float and type(config.norm_eps) is float


@pytest.mark.parametrize("field", SIZE_FIELDS)
@pytest.mark.parametrize("value", [np.float64(8.0), np.bool_(True), float("inf"), float("nan"), 8 + 0j])
def test_sizes_that_are_numpy_floats_bools_or_not_finite_are_refused(field, value):
    with pytest.raises(ValueError, match=rf"ModelConfig\.{field} must be a positive integer, got "):
        ModelConfig(**{**SMALL, field: value})


# --- found by the hostile-input hunt: a norm_eps that float32 cannot hold, numpy bools -------------

@pytest.mark.parametrize("norm_eps, as_float32", [(1e-300, 0.0), (5e-324, 0.0), (1e39, "inf")])
def test_a_norm_eps_that_is_zero_or_inf_in_float32_is_refused(norm_eps, as_float32):
    # rms_norm adds eps in float32: 1e-300 became 0 there, and a zero vector then gave nan
    with pytest.raises(ValueError, match=re.escape(f"ModelConfig.norm_eps = {norm_eps!r} is {as_float32}")):
        ModelConfig(**{**SMALL, "norm_eps": norm_eps})


def test_numpy_bool_tie_embeddings_is_stored_as_a_bool():
    config = ModelConfig(**{**SMALL, "tie_embeddings": np.bool_(False)})
    assert config.tie_embeddings is False


def test_heads_need_not_tile_dim():
    """config.json may give head_dim with H * Dh != D (wq [H*Dh, D], wo [D, H*Dh]); day 6 loads such checkpoints."""
    for changes in (dict(head_dim=6), dict(dim=64), dict(dim=16, head_dim=8)):
        config = ModelConfig(**{**SMALL, **changes})
        assert (config.dim, config.head_dim) == (changes.get("dim", 32), changes.get("head_dim", 8))
