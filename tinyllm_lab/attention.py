# Promoted from notebooks/day3_attention.ipynb by `python -m tinyllm_lab.promote`.
# Do not edit here: edit the notebook's `#| promote: attention` cells and promote again.

"""Day 3 attention: scaled dot-product attention with a causal mask, multi-head and grouped-query.

`attention(q, k, v, mask)` is `softmax(q k^T / sqrt(Dh) + mask) v` for every head, where the
boolean `mask` (True = may attend) becomes `-inf` scores before the softmax. Grouped-query
attention (GQA, Ainslie et al. 2023): `K` key/value heads are shared by `H` query heads, query
head h reading kv head `h // (H // K)`; `K == H` is ordinary multi-head attention.

The dtype rule of day 1: every array argument goes through `as_float32` (float16, float64 and
integers become float32; bool, complex, strings raise TypeError naming the argument), and every
result is float32. Sizes (n_heads, n_rep, ...) must be integers (not bool): TypeError otherwise.
"""

import numpy as np

from tinyllm_lab.ops import as_float32, linear, softmax
from tinyllm_lab.rope import apply_rope


def _check_count(value, name, func, minimum=1):  # raise unless value is an integer (not bool) >= minimum
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{func}: {name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{func}: {name} must be >= {minimum}, got {value}")


def causal_mask(n_queries, n_keys):  # -> [T, S] bool, True = may attend
    """Query t (at absolute position `n_keys - n_queries + t`) may attend to keys at positions <= its own.

    `causal_mask(3, 3)` is lower-triangular; `causal_mask(1, 5)` (one new token after 4 cached
    ones) is a single row of True. Every row has at least one True (the query's own position).
    """
    _check_count(n_queries, "n_queries", "causal_mask", minimum=0)
    _check_count(n_keys, "n_keys", "causal_mask", minimum=0)
    if not n_queries <= n_keys:
        raise ValueError(f"causal_mask: need 0 <= n_queries <= n_keys (the queries are the last "
                         f"n_queries of the n_keys positions); got n_queries={n_queries}, n_keys={n_keys}")
    query_pos = np.arange(n_keys - n_queries, n_keys)[:, None]  # [T, 1]
    key_pos = np.arange(n_keys)[None, :]  # [1, S]
    return key_pos <= query_pos


def split_heads(x, n_heads):  # [T, n*Dh] -> [T, n, Dh]
    """Cut each row into `n_heads` consecutive chunks: `[T, 8] -> [T, 2, 4]` (head 0 = columns 0..3)."""
    x = as_float32(x, "x")
    _check_count(n_heads, "n_heads", "split_heads")
    if x.ndim != 2 or x.shape[1] % n_heads != 0:
        raise ValueError(f"split_heads: x has shape {x.shape}; expected [T, n_heads * Dh] "
                         f"with a width divisible by n_heads={n_heads}")
    T, width = x.shape
    return x.reshape(T, n_heads, width // n_heads)  # a view, no copy


def merge_heads(x):  # [T, n, Dh] -> [T, n*Dh]
    """The inverse of `split_heads`: lay the heads of each token side by side again."""
    x = as_float32(x, "x")
    if x.ndim != 3:
        raise ValueError(f"merge_heads: x has shape {x.shape}; expected [T, n_heads, Dh]")
    T, n, Dh = x.shape
    return x.reshape(T, n * Dh)


def repeat_kv(x, n_rep):  # [S, K, Dh] -> [S, K*n_rep, Dh]
    """Repeat each kv head `n_rep` times so kv head j serves query heads j*n_rep .. (j+1)*n_rep - 1.

    Meta's `repeat_kv`, torch `x.repeat_interleave(n_rep, dim=1)`. Query head h then reads
    kv head `h // n_rep`.
    """
    x = as_float32(x, "x")
    _check_count(n_rep, "n_rep", "repeat_kv")
    if x.ndim != 3:
        raise ValueError(f"repeat_kv: x has shape {x.shape}, expected [S, K, Dh]")
    return x if n_rep == 1 else np.repeat(x, n_rep, axis=1)


def _check_attention_shapes(q, k, mask):  # [T, H, Dh], [S, K, Dh], [T, S]: raise a ValueError naming the shapes
    if q.ndim != 3 or k.ndim != 3 or q.shape[2] != k.shape[2]:
        raise ValueError(f"attention: q has shape {q.shape}, k has shape {k.shape}; expected "
                         f"q [T, H, Dh] and k [S, K, Dh] with the same Dh")
    (T, H, _), (S, K, _) = q.shape, k.shape
    if K == 0 or H % K != 0:
        raise ValueError(f"attention: n_heads={H} (q {q.shape}) is not divisible by n_kv_heads={K} "
                         f"(k {k.shape}); every kv head must serve the same number of query heads")
    if mask.shape != (T, S) or mask.dtype != np.bool_:
        raise ValueError(f"attention: mask has shape {mask.shape} and dtype {mask.dtype}; expected "
                         f"a boolean [T, S] = [{T}, {S}] mask (True = may attend)")
    if not mask.any(axis=1).all():
        rows = np.flatnonzero(~mask.any(axis=1)).tolist()
        raise ValueError(f"attention: mask rows {rows} are all False: those queries may attend to no key, "
                         f"and their softmax would be 0/0 = nan")


def attention_weights(q, k, mask):  # [T, H, Dh], [S, K, Dh], [T, S] -> [H, T, S]
    """The attention probabilities `softmax(q k^T / sqrt(Dh))` of every head, masked entries 0."""
    q, k, mask = as_float32(q, "q"), as_float32(k, "k"), np.asarray(mask)
    _check_attention_shapes(q, k, mask)
    (T, H, _), (S, K, Dh) = q.shape, k.shape
    scale = np.float32(1 / np.sqrt(Dh))  # a float32 scalar: a float64 one would promote everything
    groups = q.transpose(1, 0, 2).reshape(K, H // K * T, Dh)  # [K, H/K*T, Dh]: kv head j's query heads together
    scores = (groups @ k.transpose(1, 2, 0)).reshape(H, T, S) * scale  # [K, H/K*T, Dh] @ [K, Dh, S] -> [H, T, S]
    scores = np.where(mask, scores, -np.inf)  # masked keys get probability exp(-inf) = 0
    return softmax(scores, axis=-1)


def attention(q, k, v, mask):  # [T, H, Dh], [S, K, Dh], [S, K, Dh], [T, S] -> [T, H, Dh]
    """Scaled dot-product attention, `softmax(q k^T / sqrt(Dh), masked) v`, for every head.

    Grouped-query: query head h reads kv head h // (H/K), without the copies `repeat_kv` makes.
    torch: `F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)` on
    `[H, T, Dh]` tensors. A mask row that is all False raises ValueError (it would give nan).
    Computes in float32 (`as_float32` on q, k, v); the mask must be a bool array.
    """
    q, k, v = as_float32(q, "q"), as_float32(k, "k"), as_float32(v, "v")
    if v.shape != k.shape:
        raise ValueError(f"attention: v has shape {v.shape}, expected the shape of k {k.shape}")
    weights = attention_weights(q, k, mask)  # [H, T, S], checks q, k and mask
    (T, H, Dh), (S, K, _) = q.shape, k.shape
    out = weights.reshape(K, H // K * T, S) @ v.transpose(1, 0, 2)  # [K, H/K*T, S] @ [K, S, Dh] -> [K, H/K*T, Dh]
    return out.reshape(H, T, Dh).transpose(1, 0, 2)  # [T, H, Dh]


def self_attention(x, wq, wk, wv, wo, cos, sin, positions, n_heads, n_kv_heads):  # [T, D] -> [T, D]
    """One causal attention layer without a cache: project, rotate (RoPE), attend, project back.

    Weights are stored `[out, in]`: wq [H*Dh, D], wk and wv [K*Dh, D], wo [D, H*Dh], with
    `D == H * Dh` (Llama) and Dh set by the RoPE tables (`cos` is [S_max, Dh/2]). Computes in
    float32 (`as_float32` on every array); wrong shapes raise ValueError naming them.
    """
    x, cos, sin = as_float32(x, "x"), as_float32(cos, "cos"), as_float32(sin, "sin")
    wq, wk, wv, wo = (as_float32(w, name) for w, name in ((wq, "wq"), (wk, "wk"), (wv, "wv"), (wo, "wo")))
    _check_count(n_heads, "n_heads", "self_attention")
    _check_count(n_kv_heads, "n_kv_heads", "self_attention")
    if x.ndim != 2 or cos.ndim != 2:
        raise ValueError(f"self_attention: x has shape {x.shape}, cos {cos.shape}; expected x [T, D], cos [S_max, Dh/2]")
    T, D = x.shape
    Dh = 2 * cos.shape[1]
    if n_heads % n_kv_heads != 0:
        raise ValueError(f"self_attention: n_heads={n_heads} is not divisible by n_kv_heads={n_kv_heads}")
    if n_heads * Dh != D:
        raise ValueError(f"self_attention: D != H * Dh: x {x.shape} has D={D}, but n_heads={n_heads} "
                         f"heads of Dh={Dh} (from cos {cos.shape}) make {n_heads * Dh}")
    expected = {"wq": (n_heads * Dh, D), "wk": (n_kv_heads * Dh, D), "wv": (n_kv_heads * Dh, D), "wo": (D, n_heads * Dh)}
    for name, w in zip(expected, (wq, wk, wv, wo)):
        if w.shape != expected[name]:
            raise ValueError(f"self_attention: {name} has shape {w.shape}, expected {expected[name]} "
                             f"for D={D}, n_heads={n_heads}, n_kv_heads={n_kv_heads}, Dh={Dh}")
    q = apply_rope(split_heads(linear(x, wq), n_heads), cos, sin, positions)  # [T, H, Dh]
    k = apply_rope(split_heads(linear(x, wk), n_kv_heads), cos, sin, positions)  # [T, K, Dh]
    v = split_heads(linear(x, wv), n_kv_heads)  # [T, K, Dh]
    out = attention(q, k, v, causal_mask(T, T))  # [T, H, Dh]
    return linear(merge_heads(out), wo)  # [T, D]
