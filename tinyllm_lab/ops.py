# Promoted from notebooks/day1_math_primitives.ipynb by `python -m tinyllm_lab.promote`.
# Do not edit here: edit the notebook's `#| promote: ops` cells and promote again.

"""Day 1 math primitives: the element-wise and row-wise functions every layer is built from.

Shapes use the course alphabet (see `tinyllm_lab`): `T` tokens, `D` model dim, `V` vocab, ...
`...` stands for any leading axes. Given float32 arrays, every function returns float32:
nothing is promoted to float64.
"""

import numpy as np


def linear(x, weight):  # [..., in], [out, in] -> [..., out]
    """A bias-free linear layer, `x @ W.T`, with `W` stored `[out, in]` as in PyTorch and checkpoints.

    torch: `F.linear(x, W)`. `[[1., 2.]] @ [[1., 0.], [1., 1.], [0., 2.]].T -> [[1., 3., 4.]]`.
    """
    if weight.ndim != 2 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: x has shape {x.shape}, weight has shape {weight.shape}; "
                         f"expected weight [out, {x.shape[-1]}]")
    return x @ weight.T  # torch: F.linear(x, W)


def softmax(x, axis=-1):  # [..., N] -> [..., N]
    """Numerically stable softmax: `exp(x - max) / sum(exp(x - max))` along `axis`.

    torch: `torch.softmax(x, dim=axis)`. `[0., 0.] -> [0.5, 0.5]`; `[1000., 0.] -> [1., 0.]`
    (the naive formula gives nan). `-inf` entries get probability 0. A slice that is entirely
    `-inf` (0 / 0), or that holds a nan or a +inf (inf - inf), has no distribution: it raises
    ValueError instead of silently returning nan.
    """
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
    """
    if weight.shape != x.shape[-1:]:
        raise ValueError(f"rms_norm: weight has shape {weight.shape}, expected ({x.shape[-1]},) "
                         f"to match the last axis of x {x.shape}")
    ms = np.mean(x * x, axis=-1, keepdims=True)  # [..., 1]: mean square of each vector
    return x / np.sqrt(ms + np.float32(eps)) * weight  # np.float32(eps): keep float32


def silu(x):  # [...] -> [...]
    """SiLU (a.k.a. swish): `x * sigmoid(x) = x / (1 + exp(-x))`. torch: `F.silu(x)`.

    `silu([0., 1., -1000.]) -> [0., 0.731, -0.]`.
    """
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for x < -88: x / inf = -0, correct
        return x / (np.float32(1) + np.exp(-x))
