"""Day 1 exercises (tinyllm_lab/ops.py): the cases `check` runs, and the catalogue of common mistakes.

Each case calls the function under test on seeded float32 inputs built afresh. Each mistake is a
wrong version written the way people really get it wrong; `check` names the one whose output
equals yours. Every wrong version has the signature and the shapes of the course's function
(`tinyllm_lab.ops`), so their `def` lines carry no shape comments of their own.
"""

import numpy as np

from tinyllm_lab.lab.check import Case, Exercise, Mistake


def randn(seed, shape, scale=1.0, shift=0.0):  # seeded float32 normal numbers: shift + scale * N(0, 1)
    return (shift + scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def shown(run, inputs):  # a case's run, with the inputs in words for the report (see `case_shown`)
    run.inputs = inputs
    return run


def case_shown(name, run, **kwargs):  # a Case whose inputs are the ones its run shows
    return Case(name, run, inputs=run.inputs, **kwargs)


def half_and_double(seed, shape, scale=1.0, shift=0.0):  # the same numbers as float16 and as float64
    x = randn(seed, shape, scale, shift)
    return x.astype(np.float16), x.astype(np.float64)


def raises_value_error(call, *shapes):  # -> the output, or what the ValueError it raised says in words
    """For the cases that feed bad input: a ValueError becomes a sentence (naming the given shapes or not);
    any other outcome is returned as it is, so the check shows what came back instead."""
    try:
        return call()
    except ValueError as error:
        said = str(error).replace(" ", "")
        named = all(str(tuple(s)).replace(" ", "") in said or str(list(s)).replace(" ", "") in said for s in shapes)
        return "raises ValueError" + (" naming the shapes" if named else " (not naming the shapes)") * bool(shapes)


# --- linear -----------------------------------------------------------------------------------

def linear_no_transpose(x, weight):
    return x @ weight


def linear_output_transposed(x, weight):
    return weight @ x.T


def linear_flattens_leading_axes(x, weight):
    return x.reshape(-1, x.shape[-1]) @ weight.T


def linear_no_dtype_rule(x, weight):  # the shape check, but no as_float32 at entry
    if x.ndim == 0 or weight.ndim != 2 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: x has shape {x.shape}, weight has shape {weight.shape}")
    return x @ weight.T


def linear_no_shape_check(x, weight):  # as_float32, but numpy's matmul error (or none) for bad shapes
    return np.asarray(x, dtype=np.float32) @ np.asarray(weight, dtype=np.float32).T


def linear_mismatch(linear):  # x [3, 8] with a weight [5, 6]: the in axes differ
    return raises_value_error(lambda: linear(randn(8, (3, 8)), randn(9, (5, 6))), (3, 8), (5, 6))


LINEAR = Exercise(1, "ops", "linear", cases=[
    Case("square weight", lambda linear: linear(randn(0, (4, 8)), randn(1, (8, 8))),
         note="with a square weight, x @ W and x @ W.T have the same shape: only the values tell them apart"),
    Case("one vector", lambda linear: linear(randn(2, (8,)), randn(3, (5, 8)))),
    Case("rows", lambda linear: linear(randn(4, (3, 8)), randn(5, (6, 8)))),
    Case("leading axes", lambda linear: linear(randn(6, (2, 3, 8)), randn(7, (5, 8))),
         note="[..., in] -> [..., out]: every leading axis is kept"),
    Case("float16 and float64 input", lambda linear: tuple(linear(x, w) for x, w in zip(
        half_and_double(40, (3, 8)), half_and_double(41, (5, 8)))),
         atol=1e-3, rtol=4e-3,  # two float16 computations differ by a float16 rounding
         note="the dtype rule (day 1, section 7): float16 or float64 in, computed in float32, float32 out"),
    Case("shapes that do not fit", linear_mismatch, inputs="x [3, 8] float32, weight [5, 6] float32",
         note="x's last axis (8) is not weight's in axis (6): the course raises ValueError naming both shapes"),
], mistakes=[
    Mistake("linear.no_transpose",
            "x @ W instead of x @ W.T: the weight is stored [out, in] (row j holds the weights of output j), "
            "so the layer is x @ W.T. A square weight hides it: the shapes work, the numbers are wrong.",
            linear_no_transpose),
    Mistake("linear.output_transposed",
            "W @ x.T gives [out, T], the output transposed: x @ W.T keeps the tokens on the first axis, [T, out].",
            linear_output_transposed),
    Mistake("linear.flattens_leading_axes",
            "the leading axes were flattened to [N, in] and never restored: [..., in] -> [..., out] keeps every "
            "leading axis (x @ W.T does that by itself, no reshape needed).",
            linear_flattens_leading_axes),
    Mistake("linear.no_dtype_rule",
            "float16 or float64 input comes back float16 or float64: the dtype rule (day 1, section 7) converts "
            "every argument once, at entry, with `as_float32`, so the result is always float32.",
            linear_no_dtype_rule),
    Mistake("linear.no_shape_check",
            "shapes that do not fit give numpy's matmul error, which does not say which tensor is wrong: check "
            "`x.shape[-1] == weight.shape[1]` first and raise ValueError naming both shapes.",
            linear_no_shape_check),
])


# --- softmax ----------------------------------------------------------------------------------

def softmax_naive(x, axis=-1):
    e = np.exp(x)
    return e / np.sum(e, axis=axis, keepdims=True)


def softmax_global_max(x, axis=-1):
    e = np.exp(x - np.max(x))
    return e / np.sum(e, axis=axis, keepdims=True)


def softmax_sums_everything(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e)


def softmax_ignores_axis(x, axis=-1):
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def softmax_whole_array(x, axis=-1):
    e = np.exp(x - np.max(x))
    return e / np.sum(e)


def softmax_no_distribution_check(x, axis=-1):  # the stable formula, without the ValueError for a masked row
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def softmax_no_dtype_rule(x, axis=-1):  # every check, but no as_float32 at entry
    x_max = np.max(x, axis=axis, keepdims=True)
    if not np.all(np.isfinite(x_max)):
        raise ValueError("softmax: a slice has no probability distribution")
    e = np.exp(x - x_max)
    return e / np.sum(e, axis=axis, keepdims=True)


def no_distribution(softmax, row):  # logits [2, 4] whose second row is `row`: the course raises ValueError
    x = randn(16, (2, 4))
    x[1] = row
    return raises_value_error(lambda: softmax(x))


def mixed_scale_rows():  # row 0 near 0, row 1 near 200: exp overflows in row 1 unless its own max is subtracted
    return np.stack([randn(12, 6), randn(13, 6, shift=200.0)])


SOFTMAX = Exercise(1, "ops", "softmax", cases=[
    Case("small logits", lambda softmax: softmax(randn(10, (3, 8)))),
    Case("large logits", lambda softmax: softmax(randn(11, (3, 8), scale=10.0, shift=500.0)),
         note="logits near 500: exp(500) overflows float32 to inf, and inf / inf = nan"),
    Case("rows of different scale", lambda softmax: softmax(mixed_scale_rows()),
         note="one row near 0, one near 200: each row needs its own maximum"),
    Case("masked entries", lambda softmax: softmax(np.where(np.tri(4, 5, dtype=bool), randn(14, (4, 5)), -np.inf)),
         note="-inf entries (masked) get probability exactly 0"),
    Case("axis=0", lambda softmax: softmax(randn(15, (5, 4)), axis=0),
         note="the probabilities run down each column: axis=0"),
    Case("float16 and float64 input", lambda softmax: tuple(softmax(x) for x in half_and_double(17, (3, 8), 3.0)),
         atol=1e-3, rtol=4e-3,  # two float16 computations differ by a float16 rounding
         note="the dtype rule (day 1, section 7): float16 or float64 in, computed in float32, float32 out"),
    Case("a row entirely -inf", lambda softmax: no_distribution(softmax, -np.inf),
         inputs="x [2, 4] float32, its second row all -inf",
         note="every entry masked: 0 / 0 has no distribution, so the course raises ValueError instead of nan"),
    Case("a nan logit", lambda softmax: no_distribution(softmax, [0.5, np.nan, 1.0, 2.0]),
         inputs="x [2, 4] float32, a nan in its second row",
         note="a nan has no distribution: the course raises ValueError instead of returning nan"),
], mistakes=[
    Mistake("softmax.no_max_subtraction",
            "exp(x) without subtracting the maximum first: exp overflows to inf for logits above 88.7, and "
            "inf / inf = nan. Compute exp(x - max) / sum(exp(x - max)), the max taken along the axis.",
            softmax_naive),
    Mistake("softmax.global_max",
            "the maximum is taken over the whole array (np.max(x)) instead of along the axis "
            "(np.max(x, axis=axis, keepdims=True)): a row far below the largest logit underflows to 0 / 0 = nan.",
            softmax_global_max),
    Mistake("softmax.sum_over_everything",
            "divides by the sum over the whole array instead of along the axis: each row must sum to 1 "
            "(np.sum(e, axis=axis, keepdims=True)).",
            softmax_sums_everything),
    Mistake("softmax.ignores_axis",
            "the axis argument is ignored: it always normalizes the last axis. Use axis=axis in the max and the sum.",
            softmax_ignores_axis),
    Mistake("softmax.whole_array",
            "the softmax is taken over the whole array (np.max(x) and np.sum(e) with no axis) instead of along "
            "the axis: every row must sum to 1 on its own. Pass axis=axis, keepdims=True to the max and the sum.",
            softmax_whole_array),
    Mistake("softmax.no_distribution_check",
            "a slice with no distribution (every entry -inf, or a nan) comes back as nan: the course checks the "
            "maximum of each slice and raises ValueError (`not np.all(np.isfinite(x_max))`), so a fully masked "
            "row is an error you see, not nan flowing into the model.",
            softmax_no_distribution_check),
    Mistake("softmax.no_dtype_rule",
            "float16 or float64 input comes back float16 or float64: the dtype rule (day 1, section 7) converts "
            "x once, at entry, with `as_float32`, so the result is always float32.",
            softmax_no_dtype_rule),
])


# --- rms_norm ---------------------------------------------------------------------------------

def rms_norm_eps_outside(x, weight, eps=1e-5):
    return x / (np.sqrt(np.mean(x * x, axis=-1, keepdims=True)) + np.float32(eps)) * weight


def rms_norm_layer_norm(x, weight, eps=1e-5):
    centred = x - np.mean(x, axis=-1, keepdims=True)
    return centred / np.sqrt(np.mean(centred * centred, axis=-1, keepdims=True) + np.float32(eps)) * weight


def rms_norm_no_weight(x, weight, eps=1e-5):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float32(eps))


def rms_norm_whole_array(x, weight, eps=1e-5):
    return x / np.sqrt(np.mean(x * x) + np.float32(eps)) * weight


def rms_norm_length(x, weight, eps=1e-5):
    return x / np.sqrt(np.sum(x * x, axis=-1, keepdims=True) + np.float32(eps)) * weight


def rms_norm_fixed_eps(x, weight, eps=1e-5):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float32(1e-5)) * weight


def rms_norm_float64_eps(x, weight, eps=1e-5):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float64(eps)) * weight


def rms_norm_no_dtype_rule(x, weight, eps=1e-5):  # no as_float32 at entry
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float32(eps)) * weight


def tiny_rows():  # a zero row and rows of length ~4e-3, where eps dominates the mean square
    x = randn(22, (3, 16), scale=1e-3)
    x[0] = 0.0
    return x


RMS_NORM = Exercise(1, "ops", "rms_norm", cases=[
    Case("rows", lambda rms_norm: rms_norm(randn(20, (4, 16), shift=0.5), randn(21, 16, shift=1.0))),
    Case("a zero row and tiny rows", lambda rms_norm: rms_norm(tiny_rows(), randn(23, 16, shift=1.0)),
         note="for tiny vectors eps is as large as the mean square, so where it sits matters"),
    Case("eps=1e-2", lambda rms_norm: rms_norm(randn(24, (2, 16), scale=0.1), randn(25, 16, shift=1.0), eps=1e-2),
         note="a larger eps, passed as an argument"),
    Case("leading axes", lambda rms_norm: rms_norm(randn(26, (2, 3, 8), scale=3.0), randn(27, 8, shift=1.0)),
         note="[..., D]: each vector along the last axis is normalized on its own"),
    Case("float16 and float64 input", lambda rms_norm: tuple(rms_norm(x, w) for x, w in zip(
        half_and_double(28, (3, 16), 2.0), half_and_double(29, 16, shift=1.0))),
         atol=1e-3, rtol=4e-3,  # two float16 computations differ by a float16 rounding
         note="the dtype rule (day 1, section 7): float16 or float64 in, computed in float32, float32 out"),
], mistakes=[
    Mistake("rms_norm.eps_outside_sqrt",
            "eps is added after the square root, x / (sqrt(mean(x^2)) + eps); the course (Meta, torch) puts it "
            "inside: x / sqrt(mean(x^2) + eps). It only shows on tiny vectors.",
            rms_norm_eps_outside),
    Mistake("rms_norm.subtracts_mean",
            "the mean is subtracted first: that is LayerNorm. RMSNorm does no centring: x / sqrt(mean(x^2) + eps) * weight.",
            rms_norm_layer_norm),
    Mistake("rms_norm.no_weight",
            "the learned gain `weight` is not applied: multiply the normalized x by weight.",
            rms_norm_no_weight),
    Mistake("rms_norm.mean_over_whole_array",
            "the mean square is taken over the whole array instead of each vector (axis=-1, keepdims=True): "
            "every token is normalized by its own RMS.",
            rms_norm_whole_array),
    Mistake("rms_norm.divides_by_length",
            "divides by the vector's length sqrt(sum(x^2)) instead of its RMS sqrt(mean(x^2)): the output is "
            "sqrt(D) times too small.",
            rms_norm_length),
    Mistake("rms_norm.ignores_eps",
            "the eps argument is ignored (1e-5 is written in the body): use the eps that is passed in.",
            rms_norm_fixed_eps),
    Mistake("rms_norm.float64_eps",
            "computed in float64: a float64 numpy scalar such as np.float64(eps) promotes the float32 arrays "
            "(numpy 2, day 1 section 2). Use np.float32(eps) or the plain Python float.",
            rms_norm_float64_eps),
    Mistake("rms_norm.no_dtype_rule",
            "float16 or float64 input comes back float16 or float64 (and float16 computes x * x in float16): the "
            "dtype rule (day 1, section 7) converts x and weight once, at entry, with `as_float32`.",
            rms_norm_no_dtype_rule),
])


# --- silu -------------------------------------------------------------------------------------

def silu_sigmoid_only(x):
    return 1 / (1 + np.exp(-x))


def silu_sign_flipped(x):
    return x / (1 + np.exp(x))


def silu_exp_ratio(x):
    return x * np.exp(x) / (1 + np.exp(x))


def silu_no_dtype_rule(x):  # no as_float32 at entry
    return x / (1 + np.exp(-x))


def silu_warns(x):  # the right numbers, but exp(-x) overflows with a RuntimeWarning
    x = np.asarray(x, dtype=np.float32)
    return x / (np.float32(1) + np.exp(-x))


def silu_quietly(silu):  # with numpy's overflow made an error: the course silences the one it expects
    with np.errstate(over="raise"):
        return silu(np.array([-1000.0, -100.0, 0.0, 100.0], np.float32))


SILU = Exercise(1, "ops", "silu", cases=[
    Case("moderate values", lambda silu: silu(randn(30, (4, 8), scale=3.0))),
    Case("huge values", lambda silu: silu(np.array([-1000.0, -100.0, -1.0, 0.0, 1.0, 100.0, 1000.0], np.float32)),
         note="exp(1000) overflows float32 to inf"),
    Case("float16 and float64 input", lambda silu: tuple(silu(x) for x in half_and_double(31, (3, 8), 3.0)),
         atol=1e-3, rtol=4e-3,  # two float16 computations differ by a float16 rounding
         note="the dtype rule (day 1, section 7): float16 or float64 in, computed in float32, float32 out"),
    Case("no overflow warning", silu_quietly, inputs="x [4] float32 = [-1000, -100, 0, 100], numpy overflow as an error",
         note="exp(1000) overflows to inf (x / inf = -0 is right), and numpy prints a RuntimeWarning unless told not to"),
], mistakes=[
    Mistake("silu.sigmoid_only",
            "returns sigmoid(x) = 1 / (1 + exp(-x)); SiLU is x times that: x * sigmoid(x) = x / (1 + exp(-x)).",
            silu_sigmoid_only),
    Mistake("silu.sign_flipped",
            "the sign in the exponent is flipped: sigmoid(x) = 1 / (1 + exp(-x)), so SiLU is x / (1 + exp(-x)), "
            "not x / (1 + exp(x)).",
            silu_sign_flipped),
    Mistake("silu.exp_overflow",
            "sigmoid written as exp(x) / (1 + exp(x)): for large x both overflow to inf and inf / inf = nan. "
            "x / (1 + exp(-x)) only overflows where the limit is right (x / inf = -0).",
            silu_exp_ratio),
    Mistake("silu.no_dtype_rule",
            "float16 or float64 input comes back float16 or float64: the dtype rule (day 1, section 7) converts "
            "x once, at entry, with `as_float32`, so the result is always float32.",
            silu_no_dtype_rule),
    Mistake("silu.overflow_warning",
            "the numbers are right, but exp(-x) overflows for x below -88 and numpy prints a RuntimeWarning in your "
            "notebook: the overflow is expected (x / inf = -0 is the right limit), so the course computes it inside "
            "`with np.errstate(over=\"ignore\"):`.",
            silu_warns),
])


EXERCISES = [LINEAR, SOFTMAX, RMS_NORM, SILU]
