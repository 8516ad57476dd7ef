"""Day 1 primitives (tinyllm_lab.ops): parity with PyTorch, known answers, edge cases, bad input."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinyllm_lab.ops import linear, rms_norm, silu, softmax

SHAPES = [(7,), (1, 8), (5, 16), (3, 4, 64), (2, 3, 5, 256)]


def randn(rng, shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def close_to_torch(ours, theirs, atol, rtol=0.0):
    """float32 output, same shape, and |ours - theirs| <= atol + rtol * |theirs| everywhere."""
    assert ours.dtype == np.float32, f"output dtype {ours.dtype}, expected float32"
    np.testing.assert_allclose(ours, theirs.numpy(), atol=atol, rtol=rtol)


# --- parity with PyTorch -----------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("n_out", [1, 3, 32])
def test_linear_matches_torch(shape, n_out):
    rng = np.random.default_rng(0)
    x, w = randn(rng, shape), randn(rng, (n_out, shape[-1]), scale=shape[-1] ** -0.5)
    y = linear(x, w)
    assert y.shape == shape[:-1] + (n_out,)
    close_to_torch(y, F.linear(torch.from_numpy(x), torch.from_numpy(w)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_softmax_matches_torch(shape, scale):
    x = randn(np.random.default_rng(1), shape, scale)
    close_to_torch(softmax(x), torch.softmax(torch.from_numpy(x), dim=-1), atol=1e-6)


@pytest.mark.parametrize("axis", [0, 1, -2])
def test_softmax_other_axes_match_torch(axis):
    x = randn(np.random.default_rng(2), (4, 5, 6), 5.0)
    close_to_torch(softmax(x, axis=axis), torch.softmax(torch.from_numpy(x), dim=axis), atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("eps", [1e-5, 1e-6])
@pytest.mark.parametrize("scale", [3.0, 1e-3])  # 1e-3: mean square near eps, where eps's place matters
def test_rms_norm_matches_torch(shape, eps, scale):
    rng = np.random.default_rng(3)
    x, w = randn(rng, shape, scale), 1 + randn(rng, shape[-1:], 0.1)
    ref = F.rms_norm(torch.from_numpy(x), shape[-1:], weight=torch.from_numpy(w), eps=eps)
    close_to_torch(rms_norm(x, w, eps=eps), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scale", [1.0, 50.0])
def test_silu_matches_torch(shape, scale):
    x = randn(np.random.default_rng(4), shape, scale)
    close_to_torch(silu(x), F.silu(torch.from_numpy(x)), atol=1e-6, rtol=1e-6)


# --- known answers -----------------------------------------------------------------------

def test_linear_known_answer():
    x = np.array([[1.0, 2.0]], dtype=np.float32)
    w = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]], dtype=np.float32)  # [out 3, in 2]
    np.testing.assert_array_equal(linear(x, w), [[1.0, 3.0, 4.0]])


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
@pytest.mark.parametrize("value", [-50.0, 0.0, 3.0])
def test_softmax_of_equal_logits_is_uniform(n, value):
    p = softmax(np.full((2, n), value, dtype=np.float32))
    assert p.dtype == np.float32
    np.testing.assert_allclose(p, 1.0 / n, rtol=1e-6)


def test_softmax_rows_sum_to_one_and_keep_order():
    x = randn(np.random.default_rng(5), (6, 9), 4.0)
    p = softmax(x)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-6)
    assert (np.argsort(p, axis=-1) == np.argsort(x, axis=-1)).all()


def test_softmax_known_answer():
    p = softmax(np.array([np.log(1.0), np.log(3.0)], dtype=np.float32))
    np.testing.assert_allclose(p, [0.25, 0.75], rtol=1e-6)


def test_rms_norm_known_answer():
    x = np.array([3.0, 4.0], dtype=np.float32)  # mean square 12.5
    expected = np.array([3.0, 4.0]) / np.sqrt(12.5 + 1e-5) * np.array([1.0, 2.0])
    np.testing.assert_allclose(rms_norm(x, np.array([1.0, 2.0], dtype=np.float32)), expected, rtol=1e-6)


def test_rms_norm_gives_unit_rms_and_ignores_scale():
    x = randn(np.random.default_rng(6), (4, 64))
    ones = np.ones(64, dtype=np.float32)
    y = rms_norm(x, ones)
    np.testing.assert_allclose(np.sqrt(np.mean(y.astype(np.float64) ** 2, axis=-1)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(rms_norm(np.float32(1000) * x, ones), y, rtol=1e-5, atol=1e-6)


def test_silu_known_answers():
    x = np.array([0.0, 1.0, -1.0, 20.0], dtype=np.float32)
    np.testing.assert_allclose(silu(x), [0.0, 1 / (1 + np.exp(-1.0)), -1 / (1 + np.e), 20.0], rtol=1e-6)


# --- edge cases with defined behaviour ---------------------------------------------------

def test_softmax_large_logits_stay_finite():
    p = softmax(np.array([1000.0, 0.0], dtype=np.float32))
    np.testing.assert_array_equal(p, [1.0, 0.0])


def test_softmax_very_negative_rows_stay_finite():
    x = np.array([[-1000.0, -1001.0, -1e30], [-3e38, -3e38, -3e38]], dtype=np.float32)
    p = softmax(x)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p[0], softmax(np.array([1.0, 0.0, -np.inf], dtype=np.float32)), rtol=1e-6)
    np.testing.assert_allclose(p[1], 1 / 3, rtol=1e-6)


def test_softmax_minus_inf_entries_get_zero():
    p = softmax(np.array([[0.0, -np.inf, 0.0]], dtype=np.float32))
    np.testing.assert_array_equal(p, [[0.5, 0.0, 0.5]])


def test_softmax_all_minus_inf_slice_raises():
    x = np.array([[0.0, 1.0], [-np.inf, -np.inf]], dtype=np.float32)
    with pytest.raises(ValueError, match="entirely -inf"):
        softmax(x)  # row 1 is fully masked
    with pytest.raises(ValueError, match="entirely -inf"):
        softmax(x.T, axis=0)
    np.testing.assert_array_equal(softmax(x, axis=0), [[1.0, 1.0], [0.0, 0.0]])  # no column is


@pytest.mark.parametrize("bad, message", [(np.nan, "contains nan"), (np.inf, r"contains \+inf")])
def test_softmax_nan_or_plus_inf_raises_naming_it(bad, message):
    x = np.zeros((3, 4), dtype=np.float32)
    x[1, 2] = bad  # one entry of one row: the other rows are fine, the call still refuses
    with pytest.raises(ValueError, match=message):
        softmax(x)
    with pytest.raises(ValueError, match=message):
        softmax(x, axis=0)
    x[1] = -np.inf
    x[1, 2] = bad  # a masked row with one bad entry: the bad entry is named, not the mask
    with pytest.raises(ValueError, match=message):
        softmax(x)


def test_softmax_nan_beside_plus_inf_is_reported_as_nan():
    with pytest.raises(ValueError, match="contains nan"):
        softmax(np.array([np.inf, np.nan, 0.0], dtype=np.float32))


def test_rms_norm_of_zero_vector_is_zero():
    y = rms_norm(np.zeros((2, 16), dtype=np.float32), np.ones(16, dtype=np.float32))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, 0.0)


def test_silu_of_huge_inputs_is_finite_without_warnings():
    x = np.array([-1e4, -100.0, 100.0, 1e4], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = silu(x)
    np.testing.assert_array_equal(y, [-0.0, -0.0, 100.0, 1e4])


# --- float32 stays float32 ---------------------------------------------------------------

def test_float32_is_not_promoted_by_python_scalars():
    x = randn(np.random.default_rng(7), (3, 8))
    assert rms_norm(x, np.ones(8, dtype=np.float32), eps=1e-6).dtype == np.float32
    assert softmax(x / 8.0).dtype == np.float32


# --- bad input -----------------------------------------------------------------------------

@pytest.mark.parametrize("weight_shape", [(15,), (16, 1), (1, 16), ()])
def test_rms_norm_rejects_mismatched_weight(weight_shape):
    x = np.ones((3, 16), dtype=np.float32)
    with pytest.raises(ValueError, match=r"rms_norm: weight has shape .* expected \(16,\)"):
        rms_norm(x, np.ones(weight_shape, dtype=np.float32))


@pytest.mark.parametrize("weight_shape", [(4, 15), (16,), (16, 4)])
def test_linear_rejects_mismatched_weight(weight_shape):
    x = np.ones((3, 16), dtype=np.float32)
    with pytest.raises(ValueError, match=r"linear: x has shape \(3, 16\), weight has shape"):
        linear(x, np.ones(weight_shape, dtype=np.float32))
