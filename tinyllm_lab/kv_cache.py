# Promoted from notebooks/day4_kv_cache_ffn.ipynb by `python -m tinyllm_lab.promote`.
# Do not edit here: edit the notebook's `#| promote: kv_cache` cells and promote again.

"""Day 4 KV cache: the keys and values of every past position, kept so decoding never recomputes them.

One preallocated pair of arrays, `[n_layers, max_seq_len, K, Dh]` each. A forward pass of T new
tokens (a prompt of many, or one during decoding: the same code path) writes their keys and values
at positions `pos .. pos+T-1` of every layer with `update`, attends over positions `0 .. pos+T-1`,
and then moves `pos` on by T with `advance`, which checks that every layer wrote exactly those T.
`cached_self_attention` is day 3's attention layer doing this for one layer.

Every check runs before anything is written: sizes, layer numbers and counts must be integers
(TypeError for bool, float, str, ...), in range (ValueError); keys and values are stored float32
(`as_float32`: float16, float64 and integers are converted, bool and complex refused).
"""

import numpy as np

from tinyllm_lab.attention import attention, attention_weights, causal_mask, merge_heads, split_heads
from tinyllm_lab.ops import as_float32, linear
from tinyllm_lab.rope import apply_rope


def _check_integer(value, name):  # raise TypeError unless value is a Python or numpy integer (bool is not one)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")


def _allocate(n_layers, max_seq_len, n_kv_heads, head_dim):  # -> keys, values [n_layers, max_seq_len, K, Dh] float32
    sizes = {"n_layers": n_layers, "max_seq_len": max_seq_len, "n_kv_heads": n_kv_heads, "head_dim": head_dim}
    for name, size in sizes.items():
        _check_integer(size, f"KVCache: {name}")
        if size <= 0:
            raise ValueError(f"KVCache: {name} must be a positive integer, got {size!r}")
    # Stored head-major, [n_layers, K, max_seq_len, Dh]: one head's cached positions lie next to each
    # other, the order attention reads them in (q k^T and p v run per head over all positions). `keys`
    # and `values` show that memory as [n_layers, max_seq_len, K, Dh] (a transposed view, no copy).
    shape = (n_layers, n_kv_heads, max_seq_len, head_dim)
    keys = np.zeros(shape, dtype=np.float32).transpose(0, 2, 1, 3)  # allocated once, never grown
    values = np.zeros(shape, dtype=np.float32).transpose(0, 2, 1, 3)
    return keys, values


def _checked_update(cache, layer, k, v):  # -> k, v float32 [T, K, Dh]; raise unless `layer` may write them now
    _check_integer(layer, "KVCache.update: layer")
    k, v = as_float32(k, "k"), as_float32(v, "v")
    if not 0 <= layer < cache.keys.shape[0]:
        raise ValueError(f"KVCache.update: layer {layer} is out of range for {cache.keys.shape[0]} layers")
    if k.shape != v.shape or k.ndim != 3 or k.shape[1:] != cache.keys.shape[2:]:
        raise ValueError(f"KVCache.update: k has shape {k.shape}, v {v.shape}; expected both "
                         f"[T, {cache.keys.shape[2]}, {cache.keys.shape[3]}] = [T, K, Dh]")
    if cache.written[layer] != cache.pos:
        raise ValueError(f"KVCache.update: layer {layer} already wrote positions {cache.pos}.."
                         f"{cache.written[layer] - 1} since the last advance(): each layer writes the new "
                         f"tokens once, then advance(T) moves on")
    end = cache.pos + k.shape[0]
    if end > cache.max_seq_len:
        raise ValueError(f"KVCache.update: cannot write {k.shape[0]} token(s) at position {cache.pos}: that needs "
                         f"positions up to {end - 1}, past the limit max_seq_len={cache.max_seq_len} "
                         f"(positions 0..{cache.max_seq_len - 1})")
    return k, v


def _check_advance(cache, n):  # raise unless every layer wrote exactly positions pos .. pos+n-1
    _check_integer(n, "KVCache.advance: n")
    if n < 0 or cache.pos + n > cache.max_seq_len:
        raise ValueError(f"KVCache.advance: cannot move from position {cache.pos} by {n} "
                         f"with the limit max_seq_len={cache.max_seq_len}")
    end = cache.pos + n
    wrong = np.flatnonzero(cache.written != end).tolist()
    if wrong:  # moving on anyway would leave unwritten (zero) or half-written positions that later queries read
        counts = ", ".join(f"layer {i}: {w - cache.pos}" for i, w in enumerate(cache.written))
        raise ValueError(f"KVCache.advance({n}) from position {cache.pos}: layers {wrong} did not write exactly "
                         f"positions {cache.pos}..{end - 1} ({n} token(s)); tokens written since position "
                         f"{cache.pos}: {counts}")


class KVCache:
    """Keys and values of all layers: `keys`, `values` [n_layers, max_seq_len, K, Dh] float32.

    `pos`: positions filled by every layer; `written` [n_layers]: how far each layer has written.
    """

    def __init__(self, n_layers, max_seq_len, n_kv_heads, head_dim):
        self.keys, self.values = _allocate(n_layers, max_seq_len, n_kv_heads, head_dim)  # sizes checked first
        self.pos = 0  # positions 0 .. pos-1 hold keys and values of tokens already fed
        self.written = np.zeros(n_layers, dtype=np.int64)  # [n_layers]: layer i holds positions 0 .. written[i]-1

    @property
    def max_seq_len(self):
        return self.keys.shape[1]

    @property
    def nbytes(self):  # 2 * n_layers * max_seq_len * K * Dh * 4 bytes
        return self.keys.nbytes + self.values.nbytes

    def update(self, layer, k, v):  # [T, K, Dh], [T, K, Dh] -> keys [pos+T, K, Dh], values [pos+T, K, Dh]
        """Write the new tokens' k and v at positions pos .. pos+T-1 of `layer`; return all keys and values so far.

        Does not move `pos`: every layer writes the same positions, once, then `advance(T)` moves on.
        k and v are stored as float32 (`as_float32`).
        """
        k, v = _checked_update(self, layer, k, v)  # TypeError / ValueError before anything is written
        end = self.pos + k.shape[0]
        self.keys[layer, self.pos:end] = k
        self.values[layer, self.pos:end] = v
        self.written[layer] = end
        return self.keys[layer, :end], self.values[layer, :end]  # views, no copy

    def advance(self, n):
        """Move `pos` on by n, once every layer has written exactly positions pos .. pos+n-1."""
        _check_advance(self, n)
        end = self.pos + n
        self.pos = int(end)  # a Python int, whatever integer type n was

    def reset(self):
        """Forget everything: afterwards the cache equals a freshly built one."""
        self.keys.fill(0)
        self.values.fill(0)
        self.pos = 0
        self.written.fill(0)


def cached_self_attention(x, wq, wk, wv, wo, cos, sin, n_heads, n_kv_heads, cache, layer, maps=None):  # [T, D] -> [T, D]
    """Day 3's `self_attention` for T new tokens at positions cache.pos .. cache.pos+T-1, through the cache.

    Writes their keys and values into `layer` of `cache` (without advancing it) and attends over all
    S = cache.pos + T cached positions. If `maps` is a list, appends this layer's attention
    probabilities [H, T, S] to it (computed a second time, so only when asked).
    torch: `wo(F.scaled_dot_product_attention(q, keys, values, attn_mask))`, RoPE on q and k.
    Computes in float32 (`as_float32`); `cache` must be a KVCache (TypeError), `maps` None or a list.
    """
    if not isinstance(cache, KVCache):
        raise TypeError(f"cached_self_attention: cache must be a KVCache, got {type(cache).__name__}")
    if maps is not None and not isinstance(maps, list):
        raise TypeError(f"cached_self_attention: maps must be None or a list to append to, got {type(maps).__name__}")
    x = as_float32(x, "x")
    if x.ndim != 2:
        raise ValueError(f"cached_self_attention: x has shape {x.shape}, expected [T, D]")
    T, start = x.shape[0], cache.pos
    positions = np.arange(start, start + T)                                   # absolute positions of the new tokens
    q = apply_rope(split_heads(linear(x, wq), n_heads), cos, sin, positions)     # [T, H, Dh]
    k = apply_rope(split_heads(linear(x, wk), n_kv_heads), cos, sin, positions)  # [T, K, Dh]
    v = split_heads(linear(x, wv), n_kv_heads)                                   # [T, K, Dh]
    keys, values = cache.update(layer, k, v)                                     # [S, K, Dh] each, S = start + T
    mask = causal_mask(T, start + T)                                             # [T, S]: new queries are the last T
    if maps is not None:
        maps.append(attention_weights(q, keys, mask))                            # [H, T, S]
    out = attention(q, keys, values, mask)                                       # [T, H, Dh]
    return linear(merge_heads(out), wo)                                          # [T, D]
