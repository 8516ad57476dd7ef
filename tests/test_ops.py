"""Day 1 primitives (tinyllm_lab.ops): parity with PyTorch, known answers, edge cases, bad input."""

import re
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinyllm_lab.ops import as_float32, linear, rms_norm, silu, softmax

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


# --- the dtype rule: every primitive computes in float32 whatever real numbers it is given --

NON_FLOAT32 = [np.float16, np.float64, np.int64, np.int32, np.uint8]


def all_primitives(x, w):  # x [2, 8] and w [4, 8] of one dtype -> {name: output}
    return {"linear": linear(x, w), "softmax": softmax(x), "rms_norm": rms_norm(x, w[0]), "silu": silu(x)}


@pytest.mark.parametrize("dtype", NON_FLOAT32)
def test_every_primitive_computes_in_float32_for_any_real_dtype(dtype):
    rng = np.random.default_rng(11)
    x, w = (4 * rng.standard_normal((2, 8))).astype(dtype), (2 * rng.standard_normal((4, 8))).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warning on the way
        ours = all_primitives(x, w)
    expected = all_primitives(x.astype(np.float32), w.astype(np.float32))  # the same numbers, given as float32
    for name, out in ours.items():
        assert out.dtype == np.float32, name
        np.testing.assert_array_equal(out, expected[name], err_msg=name)


def test_rms_norm_on_float16_matches_torch_in_float32_without_warnings():
    # |x| in the hundreds: x * x overflows float16 (max 65504); computed in float16 the output was all zeros
    x16 = (300 * np.random.default_rng(12).standard_normal((3, 64))).astype(np.float16)
    g16 = np.ones(64, dtype=np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = rms_norm(x16, g16)
    assert y.dtype == np.float32
    expected = F.rms_norm(torch.from_numpy(x16.astype(np.float32)), (64,), torch.ones(64), 1e-5).numpy()
    np.testing.assert_allclose(y, expected, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(np.sqrt(np.mean(y.astype(np.float64) ** 2, axis=-1)), 1.0, atol=1e-4)


def test_as_float32_does_not_copy_float32_and_converts_the_rest():
    x = np.ones((2, 3), dtype=np.float32)
    assert as_float32(x) is x
    for given in (np.ones(3, dtype=np.float64), np.ones(3, dtype=np.float16), [1, 1, 1], np.ones(3, dtype=np.int64)):
        out = as_float32(given)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, [1.0, 1.0, 1.0])


def test_as_float32_refuses_float64_beyond_float32_range_instead_of_making_inf():
    with pytest.raises(ValueError, match=r"x holds values beyond float32's range"):
        as_float32(np.array([1.0, 1e300]))
    np.testing.assert_array_equal(as_float32(np.array([-np.inf, np.inf])), [-np.inf, np.inf])  # inf stays inf


@pytest.mark.parametrize("bad, dtype", [(np.array([True, False]), "bool"), (np.array([1 + 2j]), "complex128"),
                                        (np.array(["1.5"]), "<U3"), (np.array([1.0, None]), "object")])
@pytest.mark.parametrize("call", ["linear", "softmax", "rms_norm", "silu"])
def test_every_primitive_refuses_what_is_not_real_numbers_naming_the_argument(bad, dtype, call):
    good = np.ones((1, bad.size), dtype=np.float32)
    calls = {"linear": lambda: linear(bad, good), "softmax": lambda: softmax(bad),
             "rms_norm": lambda: rms_norm(good[0], bad), "silu": lambda: silu(bad)}
    name = "weight" if call == "rms_norm" else "x"
    with pytest.raises(TypeError, match=f"{name} must hold real numbers .*got dtype {dtype}"):
        calls[call]()


# --- bad input -----------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [0.0, -1e-5, np.inf, np.nan])
def test_rms_norm_rejects_eps_not_finite_and_positive(eps):
    with pytest.raises(ValueError, match=f"rms_norm: eps must be finite and > 0, got {eps!r}"):
        rms_norm(np.ones((2, 4), dtype=np.float32), np.ones(4, dtype=np.float32), eps)


@pytest.mark.parametrize("eps", ["1e-5", True, None, [1e-5]])
def test_rms_norm_rejects_eps_that_is_not_a_number(eps):
    with pytest.raises(TypeError, match="rms_norm: eps must be a number"):
        rms_norm(np.ones((2, 4), dtype=np.float32), np.ones(4, dtype=np.float32), eps)


@pytest.mark.parametrize("axis, error, message", [(2, ValueError, "axis 2 is out of range for x of shape"),
                                                  (-3, ValueError, "axis -3 is out of range"),
                                                  (1.0, TypeError, "axis must be an integer, got 1.0"),
                                                  (True, TypeError, "axis must be an integer, got True")])
def test_softmax_rejects_bad_axis_by_name(axis, error, message):
    with pytest.raises(error, match=f"softmax: {message}"):
        softmax(np.ones((2, 3), dtype=np.float32), axis=axis)


def test_zero_dimensional_input_is_refused_by_linear_and_rms_norm():
    with pytest.raises(ValueError, match=r"linear: x has shape \(\)"):
        linear(np.float32(1), np.ones((2, 1), dtype=np.float32))
    with pytest.raises(ValueError, match=r"rms_norm: weight has shape \(1,\), expected \(D,\)"):
        rms_norm(np.float32(1), np.ones(1, dtype=np.float32))


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


@pytest.mark.parametrize("eps, as_float32", [(1e-300, "0.0"), (1e39, "inf")])
def test_rms_norm_rejects_eps_that_float32_cannot_hold(eps, as_float32):
    # eps = 1e-300 is 0 in float32: a zero vector gave nan; 1e39 is inf: every output was 0
    with pytest.raises(ValueError, match=re.escape(f"rms_norm: eps = {eps!r} is {as_float32} in float32")):
        rms_norm(np.zeros((1, 4), dtype=np.float32), np.ones(4, dtype=np.float32), eps)
