# Promoted from notebooks/day2_rope.ipynb by `python -m tinyllm_lab.promote`.
# Do not edit here: edit the notebook's `#| promote: rope` cells and promote again.

"""Day 2 rotary position embeddings (RoPE, Su et al. 2021, "RoFormer").

Pair i of a head vector, at position m, is rotated by the angle `m * theta_i` with
`theta_i = rope_theta ** (-2i / Dh)`. Pairs are interleaved: (x[0], x[1]), (x[2], x[3]), ...,
as in the RoFormer paper, Meta's Llama code and llama2.c. Hugging Face checkpoints use the
half-split layout instead: `half_split_to_interleaved_rows` converts their q/k weights once, at
load time (day 6).

The dtype rule of day 1 holds here too: the arrays given to `apply_rope` go through `as_float32`
(float16, float64, integers -> float32), and the tables and rotated vectors are float32
(`half_split_to_interleaved_rows` only reorders rows and keeps the dtype it is given). Sizes must be Python or numpy integers (not bool), `rope_theta` a
finite number > 0: anything else raises TypeError or ValueError naming the argument.
"""

import numpy as np

from tinyllm_lab.ops import as_float32


def _check_size(value, name, func):  # raise unless value is a positive integer (bool is not a size)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{func}: {name} must be an integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{func}: {name} must be positive, got {value}")


def rope_frequencies(head_dim, rope_theta=10000.0):  # -> [Dh/2] float64
    """The rotation speed of each pair: `theta_i = rope_theta ** (-2i / Dh)`, i = 0 .. Dh/2 - 1.

    `rope_frequencies(8) -> [1., 0.1, 0.01, 0.001]` (radians per position). head_dim: a positive
    even integer; rope_theta: a finite number > 0 (TypeError / ValueError naming the argument).
    """
    _check_size(head_dim, "head_dim", "rope_frequencies")
    if isinstance(rope_theta, bool) or not isinstance(rope_theta, (int, float, np.integer, np.floating)):
        raise TypeError(f"rope_frequencies: rope_theta must be a number, got {rope_theta!r}")
    if not 0 < rope_theta < np.inf:  # also false for nan; inf would make every frequency 0 (no rotation at all)
        raise ValueError(f"rope_frequencies: rope_theta must be finite and > 0, got {rope_theta!r}")
    if head_dim % 2 != 0:
        raise ValueError(f"RoPE needs a positive, even head dimension to form pairs; got head_dim={head_dim}")
    i = np.arange(head_dim // 2, dtype=np.float64)
    return rope_theta ** (-2.0 * i / head_dim)


def rope_tables(head_dim, max_seq_len, rope_theta=10000.0):  # -> cos, sin: [S, Dh/2] float32
    """cos and sin of `m * theta_i` for every position m < max_seq_len and pair i.

    The angles are computed in float64 and only then cast to float32: at position 10^4 an angle
    computed in float32 is already off by ~3e-4 rad (see day 2), far above our tolerances.
    max_seq_len: a positive integer (TypeError / ValueError naming it); see `rope_frequencies`.
    """
    _check_size(max_seq_len, "max_seq_len", "rope_tables")
    angles = np.outer(np.arange(max_seq_len, dtype=np.float64), rope_frequencies(head_dim, rope_theta))
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def apply_rope(x, cos, sin, positions):  # [T, H, Dh], [S, Dh/2], [S, Dh/2], [T] -> [T, H, Dh]
    """Rotate each interleaved pair (x[2i], x[2i+1]) of every head by the angle of its position.

    Layout: INTERLEAVED pairs (RoFormer, Meta, llama2.c), i.e. in complex form
    `(x[2i] + 1j * x[2i+1]) * exp(1j * m * theta_i)`. Hugging Face's `rotate_half` pairs x[i]
    with x[i + Dh/2] instead: convert such q/k weights with `half_split_to_interleaved_rows`.
    `positions[t]` is the absolute position of token t, an integer; the tables from
    `rope_tables` must cover it. Position 0 is the identity. Computes in float32: x, cos and sin go
    through `as_float32` (TypeError for non-numbers); wrong shapes, non-integer or uncovered
    positions raise ValueError.
    """
    x, cos, sin = as_float32(x, "x"), as_float32(cos, "cos"), as_float32(sin, "sin")
    if x.ndim != 3:
        raise ValueError(f"apply_rope: x has shape {x.shape}, expected [T, H, Dh]")
    T, _, Dh = x.shape
    if Dh % 2 != 0:
        raise ValueError(f"apply_rope: head dimension must be even to form pairs, got x of shape {x.shape}")
    if cos.shape != sin.shape or cos.ndim != 2 or cos.shape[1] != Dh // 2:
        raise ValueError(f"apply_rope: cos/sin tables have shapes {cos.shape}, {sin.shape}; expected [S, {Dh // 2}]")
    positions = np.asarray(positions)
    if positions.shape != (T,):
        raise ValueError(f"apply_rope: positions has shape {positions.shape}, expected ({T},) for x of shape {x.shape}")
    if positions.dtype.kind not in "iu":  # they index rows of the tables: 2.0 or True is not a row
        raise ValueError(f"apply_rope: positions must be integers (token indices), got dtype {positions.dtype}")
    if T and (positions.min() < 0 or positions.max() >= cos.shape[0]):
        raise ValueError(f"apply_rope: positions {positions.min()}..{positions.max()} are outside the "
                         f"precomputed table of {cos.shape[0]} positions (0..{cos.shape[0] - 1}); "
                         f"build the tables with a larger max_seq_len")
    c = cos[positions][:, None, :]  # [T, 1, Dh/2], broadcast over heads
    s = sin[positions][:, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]  # [T, H, Dh/2] each: the two members of every pair
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s  # the 2x2 rotation [[c, -s], [s, c]] @ [x0, x1]
    out[..., 1::2] = x0 * s + x1 * c
    return out


def half_split_to_interleaved_rows(w, n_heads):  # [n_heads * Dh, D] -> [n_heads * Dh, D]
    """Reorder each head's rows of a q or k projection from the half-split RoPE layout to ours.

    Hugging Face's `rotate_half` pairs coordinate i of a head with i + Dh/2; `apply_rope` pairs
    2i with 2i+1. Taking each head's rows in the order 0, Dh/2, 1, Dh/2 + 1, ... moves HF's pair
    i to (2i, 2i+1), where it turns by the same angle, so every attention score is unchanged.
    Apply it once, at load time, to wq (n_heads) and wk (n_kv_heads); wv and wo stay as they are.
    It undoes the `permute` in HF's `convert_llama_weights_to_hf.py`. One head with Dh = 4:
    rows [r0, r1, r2, r3] -> [r0, r2, r1, r3]. It only moves rows, so it keeps w's dtype (it works
    on row numbers too, as below).
    """
    w = np.asarray(w)
    _check_size(n_heads, "n_heads", "half_split_to_interleaved_rows")
    if w.ndim != 2 or w.shape[0] % n_heads != 0 or (w.shape[0] // n_heads) % 2 != 0:
        raise ValueError(f"half_split_to_interleaved_rows: w has shape {w.shape}, expected "
                         f"[n_heads * head_dim, D] with n_heads={n_heads} and an even head_dim")
    head_dim = w.shape[0] // n_heads
    halves = w.reshape(n_heads, 2, head_dim // 2, w.shape[1])  # [heads, first/second half, Dh/2, D]
    return halves.swapaxes(1, 2).reshape(w.shape)  # [heads, Dh/2, 2, D]: rows i, i + Dh/2 -> 2i, 2i + 1


def llama3_rope_frequencies(freqs, factor, low_freq_factor, high_freq_factor, original_max_seq_len):  # [Dh/2] -> [Dh/2]
    """Llama 3's RoPE scaling (`"rope_type": "llama3"`): pairs slower than the original context turn `factor` times
    slower, fast pairs stay, the ones in between are blended. `freqs` from `rope_frequencies`; returns float64.

    Meta's `apply_scaling` (llama-models) and transformers' `_compute_llama3_parameters`; Llama 3.2 uses
    factor=32, low_freq_factor=1, high_freq_factor=4, original_max_seq_len=8192. ValueError unless every
    factor is finite and > 0 and high_freq_factor > low_freq_factor.
    """
    for name, value in [("factor", factor), ("low_freq_factor", low_freq_factor),
                        ("high_freq_factor", high_freq_factor), ("original_max_seq_len", original_max_seq_len)]:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not 0 < value < np.inf:
            raise ValueError(f"llama3_rope_frequencies: {name} must be a finite number > 0, got {value!r}")
    if not high_freq_factor > low_freq_factor:
        raise ValueError(f"llama3_rope_frequencies: high_freq_factor={high_freq_factor} must be larger than "
                         f"low_freq_factor={low_freq_factor}")
    wavelength = 2 * np.pi / np.asarray(freqs, dtype=np.float64)
    gamma = (original_max_seq_len / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor)
    gamma = np.clip(gamma, 0.0, 1.0)  # 0: slow pairs (divide by factor), 1: fast pairs (keep), blended between
    return (1 - gamma) * freqs / factor + gamma * freqs


def rope_tables_for(freqs, max_seq_len):  # [Dh/2] -> cos, sin: [S, Dh/2] float32
    """`rope_tables` for frequencies of your own (a scaled RoPE): cos and sin of `m * freqs[i]`, angles in float64.

    max_seq_len: a positive integer (TypeError / ValueError naming it), as for `rope_tables`.
    """
    _check_size(max_seq_len, "max_seq_len", "rope_tables_for")
    angles = np.outer(np.arange(max_seq_len, dtype=np.float64), np.asarray(freqs, dtype=np.float64))
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
