# Promoted from notebooks/day4_kv_cache_ffn.ipynb by `python -m tinyllm_lab.promote`.
# Do not edit here: edit the notebook's `#| promote: kv_cache` cells and promote again.

"""Day 4 KV cache: the keys and values of every past position, kept so decoding never recomputes them.

One preallocated pair of arrays, `[n_layers, max_seq_len, K, Dh]` each. A forward pass of T new
tokens (a prompt of many, or one during decoding: the same code path) writes their keys and values
at positions `pos .. pos+T-1` of every layer with `update`, attends over positions `0 .. pos+T-1`,
and then moves `pos` on by T with `advance`.
"""

import numpy as np


class KVCache:
    """Keys and values of all layers: `keys`, `values` [n_layers, max_seq_len, K, Dh] float32; `pos` filled."""

    def __init__(self, n_layers, max_seq_len, n_kv_heads, head_dim):
        sizes = {"n_layers": n_layers, "max_seq_len": max_seq_len, "n_kv_heads": n_kv_heads, "head_dim": head_dim}
        for name, size in sizes.items():
            if not isinstance(size, (int, np.integer)) or size <= 0:
                raise ValueError(f"KVCache: {name} must be a positive integer, got {size!r}")
        shape = (n_layers, max_seq_len, n_kv_heads, head_dim)
        self.keys = np.zeros(shape, dtype=np.float32)  # allocated once, never grown or reallocated
        self.values = np.zeros(shape, dtype=np.float32)
        self.pos = 0  # positions 0 .. pos-1 hold keys and values of tokens already fed

    @property
    def max_seq_len(self):
        return self.keys.shape[1]

    @property
    def nbytes(self):  # 2 * n_layers * max_seq_len * K * Dh * 4 bytes
        return self.keys.nbytes + self.values.nbytes

    def update(self, layer, k, v):  # [T, K, Dh], [T, K, Dh] -> keys [pos+T, K, Dh], values [pos+T, K, Dh]
        """Write the new tokens' k and v at positions pos .. pos+T-1 of `layer`; return all keys and values so far.

        Does not move `pos`: every layer writes the same positions, then `advance(T)` moves on once.
        """
        if not 0 <= layer < self.keys.shape[0]:
            raise ValueError(f"KVCache.update: layer {layer} is out of range for {self.keys.shape[0]} layers")
        if k.shape != v.shape or k.ndim != 3 or k.shape[1:] != self.keys.shape[2:]:
            raise ValueError(f"KVCache.update: k has shape {k.shape}, v {v.shape}; expected both "
                             f"[T, {self.keys.shape[2]}, {self.keys.shape[3]}] = [T, K, Dh]")
        end = self.pos + k.shape[0]
        if end > self.max_seq_len:
            raise ValueError(f"KVCache.update: cannot write {k.shape[0]} token(s) at position {self.pos}: that needs "
                             f"positions up to {end - 1}, past the limit max_seq_len={self.max_seq_len} "
                             f"(positions 0..{self.max_seq_len - 1})")
        self.keys[layer, self.pos:end] = k
        self.values[layer, self.pos:end] = v
        return self.keys[layer, :end], self.values[layer, :end]  # views, no copy

    def advance(self, n):
        """Move `pos` on by the n tokens just written to every layer."""
        if n < 0 or self.pos + n > self.max_seq_len:
            raise ValueError(f"KVCache.advance: cannot move from position {self.pos} by {n} "
                             f"with the limit max_seq_len={self.max_seq_len}")
        self.pos += n

    def reset(self):
        """Forget everything: afterwards the cache equals a freshly built one."""
        self.keys.fill(0)
        self.values.fill(0)
        self.pos = 0
