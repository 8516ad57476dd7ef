# Promoted from notebooks/day1_math_primitives.ipynb by `python -m tinyllm_lab.promote`.
# Do not edit here: edit the notebook's `#| promote: ops` cells and promote again.

"""Day 1 math primitives: the element-wise and row-wise functions every layer is built from.

Shapes use the course alphabet (see `tinyllm_lab`): `T` tokens, `D` model dim, `V` vocab, ...
`...` stands for any leading axes.

The dtype rule, for every primitive of the package (here and in rope, attention, kv_cache, ffn):
it computes in float32 whatever numbers it is given. float16, float64 and integer arrays (and
Python lists) are converted once, at entry, by `as_float32`; a float32 array is used as it is,
without a copy; the result is float32. Nothing is promoted to float64, and float16 input does not
overflow in intermediate sums. Input that is not real numbers (bool, complex, strings) raises a
TypeError naming the argument. Day 5's sampler reads its logits by the same rule, then works out
the probabilities in float64 on purpose (tiny probabilities keep their digits).
"""

import numpy as np


def as_float32(x, name="x"):  # array-like [...] -> float32 [...]
    """The dtype rule: `x` as a float32 array; float16/float64/integer input is converted, float32 passes as is.

    `as_float32([1, 2]) -> array([1., 2.], dtype=float32)`; a float32 array comes back itself (no
    copy). Raises TypeError naming `name` for anything but real numbers (bool, complex, str, object),
    and ValueError for finite values beyond float32's range (|x| > 3.4e38), which would become inf.
    """
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":  # float, signed or unsigned integer
        raise TypeError(f"{name} must hold real numbers (a float or integer array), got dtype {a.dtype}")
    if a.dtype == np.float32:
        return a
    if a.dtype.kind == "f" and a.dtype.itemsize > 4:  # float64 (or wider) may hold numbers float32 cannot
        finite = np.isfinite(a)
        if np.any(np.abs(a[finite]) > np.finfo(np.float32).max):
            raise ValueError(f"{name} holds values beyond float32's range (|x| > 3.4e38), which would become inf")
    return a.astype(np.float32)


def linear(x, weight):  # [..., in], [out, in] -> [..., out]
    """A bias-free linear layer, `x @ W.T`, with `W` stored `[out, in]` as in PyTorch and checkpoints.

    torch: `F.linear(x, W)`. `[[1., 2.]] @ [[1., 0.], [1., 1.], [0., 2.]].T -> [[1., 3., 4.]]`.
    Computes in float32 (`as_float32`); a shape mismatch raises ValueError naming both shapes.
    """
    x, weight = as_float32(x, "x"), as_float32(weight, "weight")
    if x.ndim == 0 or weight.ndim != 2 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: x has shape {x.shape}, weight has shape {weight.shape}; "
                         f"expected x [..., in] and weight [out, in]")
    return x @ weight.T  # torch: F.linear(x, W)


def softmax(x, axis=-1):  # [..., N] -> [..., N]
    """Numerically stable softmax: `exp(x - max) / sum(exp(x - max))` along `axis`.

    torch: `torch.softmax(x, dim=axis)`. `[0., 0.] -> [0.5, 0.5]`; `[1000., 0.] -> [1., 0.]`
    (the naive formula gives nan). `-inf` entries get probability 0. A slice that is entirely
    `-inf` (0 / 0), or that holds a nan or a +inf (inf - inf), has no distribution: it raises
    ValueError instead of silently returning nan. Computes in float32 (`as_float32`); `axis` must
    be an integer axis of x (TypeError, ValueError otherwise).
    """
    x = as_float32(x, "x")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"softmax: axis must be an integer, got {axis!r}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"softmax: axis {axis} is out of range for x of shape {x.shape}")
    x_max = np.max(x, axis=axis, keepdims=True)  # nan if the slice holds a nan, +inf if it holds +inf
    if not np.all(np.isfinite(x_max)):  # one check per slice, on its maximum, not on every entry
        if np.any(np.isnan(x_max)):
            raise ValueError("softmax: the input contains nan, so it has no probability distribution")
        if np.any(x_max == np.inf):
            raise ValueError("softmax: the input contains +inf; exp(x - max) would be exp(inf - inf) = nan, "
                             "so it has no probability distribution")
        raise ValueError("softmax: a slice along the axis is entirely -inf (every entry masked), "
                         "so it has no probability distribution")
    e = np.exp(x - x_max)  # the largest entry becomes exp(0) = 1: no overflow, sum >= 1
    return e / np.sum(e, axis=axis, keepdims=True)


def rms_norm(x, weight, eps=1e-5):  # [..., D], [D] -> [..., D]
    """RMSNorm (Zhang & Sennrich, 2019): `x / sqrt(mean(x^2) + eps) * weight`, over the last axis.

    torch: `F.rms_norm(x, (D,), weight, eps)`. eps sits inside the square root, so a zero
    vector gives 0, not nan. `rms_norm([3., 4.], [1., 1.]) -> [0.849, 1.131]` (RMS 1).
    Computes in float32 (`as_float32`), so float16 input does not overflow in `x * x`. eps must be
    a finite number > 0 (TypeError / ValueError naming eps); weight must be [D] (ValueError).
    """
    x, weight = as_float32(x, "x"), as_float32(weight, "weight")
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)):
        raise TypeError(f"rms_norm: eps must be a number, got {eps!r}")
    if not 0 < eps < np.inf:  # also false for nan
        raise ValueError(f"rms_norm: eps must be finite and > 0, got {eps!r}")
    with np.errstate(over="ignore", under="ignore"):
        eps32 = np.float32(eps)
    if not 0 < eps32 < np.inf:  # 1e-300 is 0 in float32 (a zero vector would give nan), 1e39 is inf
        raise ValueError(f"rms_norm: eps = {eps!r} is {float(eps32)} in float32; it must be between 1.4e-45 and 3.4e38")
    if x.ndim == 0 or weight.shape != x.shape[-1:]:
        raise ValueError(f"rms_norm: weight has shape {weight.shape}, expected ({x.shape[-1] if x.ndim else 'D'},) "
                         f"to match the last axis of x {x.shape}")
    ms = np.mean(x * x, axis=-1, keepdims=True)  # [..., 1]: mean square of each vector
    return x / np.sqrt(ms + eps32) * weight  # eps32 = np.float32(eps): keep float32


def silu(x):  # [...] -> [...]
    """SiLU (a.k.a. swish): `x * sigmoid(x) = x / (1 + exp(-x))`. torch: `F.silu(x)`.

    `silu([0., 1., -1000.]) -> [0., 0.731, -0.]`. Computes in float32 (`as_float32`).
    """
    x = as_float32(x, "x")
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for x < -88: x / inf = -0, correct
        return x / (np.float32(1) + np.exp(-x))
