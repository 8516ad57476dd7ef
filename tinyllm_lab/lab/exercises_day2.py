"""Day 2 exercises (tinyllm_lab/rope.py): the cases `check` runs, and the catalogue of common mistakes.

The cases use positions past 0 (position 0 is the identity, so it hides most RoPE mistakes),
an offset as after a KV cache, and positions near 20000, where float32 angles drift.
"""

import numpy as np

from tinyllm_lab.lab.check import Case, Exercise, Mistake
from tinyllm_lab.lab.exercises_day1 import randn
from tinyllm_lab.rope import rope_frequencies, rope_tables


# --- rope_frequencies -------------------------------------------------------------------------

def frequencies_missing_two(head_dim, rope_theta=10000.0):
    return rope_theta ** (-np.arange(head_dim // 2) / head_dim)


def frequencies_positive_exponent(head_dim, rope_theta=10000.0):
    return rope_theta ** (2.0 * np.arange(head_dim // 2) / head_dim)


def frequencies_fixed_theta(head_dim, rope_theta=10000.0):
    return 10000.0 ** (-2.0 * np.arange(head_dim // 2) / head_dim)


def frequencies_from_one(head_dim, rope_theta=10000.0):
    return rope_theta ** (-2.0 * np.arange(1, head_dim // 2 + 1) / head_dim)


def frequencies_float32(head_dim, rope_theta=10000.0):
    return np.float32(rope_theta) ** (-2 * np.arange(head_dim // 2, dtype=np.float32) / np.float32(head_dim))


ROPE_FREQUENCIES = Exercise(2, "rope", "rope_frequencies", cases=[
    Case("head_dim 8", lambda rope_frequencies: rope_frequencies(8)),
    Case("head_dim 16, rope_theta 500000", lambda rope_frequencies: rope_frequencies(16, 500000.0),
         note="Llama 3's rope_theta, passed as an argument"),
    Case("head_dim 64", lambda rope_frequencies: rope_frequencies(64)),
], mistakes=[
    Mistake("rope_frequencies.missing_two",
            "the exponent is -i / Dh; the course's is -2i / Dh (i counts pairs, 2i counts coordinates), "
            "so the last pair turns by about 1 / rope_theta per position.",
            frequencies_missing_two),
    Mistake("rope_frequencies.positive_exponent",
            "the exponent's sign is flipped: theta_i = rope_theta ** (-2i / Dh) gets slower with i "
            "(pair 0 turns by 1 radian per position, the last by about 1e-4).",
            frequencies_positive_exponent),
    Mistake("rope_frequencies.ignores_theta",
            "the rope_theta argument is ignored (10000 is written in the body): use the rope_theta passed in.",
            frequencies_fixed_theta),
    Mistake("rope_frequencies.starts_at_one",
            "i starts at 1: pairs are numbered i = 0 .. Dh/2 - 1, so pair 0 turns by exactly 1 radian per "
            "position (theta_0 = rope_theta ** 0 = 1).",
            frequencies_from_one),
    Mistake("rope_frequencies.float32",
            "returns float32: the frequencies stay float64 (they only feed the angle table, which is computed "
            "in float64; section 7 of day 2 shows why).",
            frequencies_float32),
])


# --- rope_tables ------------------------------------------------------------------------------

def tables_float32_angles(head_dim, max_seq_len, rope_theta=10000.0):
    angles = np.outer(np.arange(max_seq_len, dtype=np.float32), rope_frequencies(head_dim, rope_theta).astype(np.float32))
    return np.cos(angles), np.sin(angles)


def tables_float64(head_dim, max_seq_len, rope_theta=10000.0):
    angles = np.outer(np.arange(max_seq_len), rope_frequencies(head_dim, rope_theta))
    return np.cos(angles), np.sin(angles)


def tables_swapped(head_dim, max_seq_len, rope_theta=10000.0):
    cos, sin = rope_tables(head_dim, max_seq_len, rope_theta)
    return sin, cos


def tables_from_position_one(head_dim, max_seq_len, rope_theta=10000.0):
    angles = np.outer(np.arange(1, max_seq_len + 1, dtype=np.float64), rope_frequencies(head_dim, rope_theta))
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def tables_full_width(head_dim, max_seq_len, rope_theta=10000.0):
    cos, sin = rope_tables(head_dim, max_seq_len, rope_theta)
    return np.concatenate([cos, cos], axis=1), np.concatenate([sin, sin], axis=1)


ROPE_TABLES = Exercise(2, "rope", "rope_tables", cases=[
    Case("head_dim 8, 6 positions", lambda rope_tables: rope_tables(8, 6)),
    Case("head_dim 16, rope_theta 500000", lambda rope_tables: rope_tables(16, 10, 500000.0)),
    Case("20000 positions", lambda rope_tables: rope_tables(8, 20000), atol=2e-6, rtol=0.0,
         note="angles m * theta_i up to 20000 radians: computed in float32 they drift by ~1e-4"),
], mistakes=[
    Mistake("rope_tables.float32_angles",
            "the angles m * theta_i are computed in float32: at position 10^4 an angle is already off by "
            "~3e-4 rad (day 2, section 7). Compute them in float64 (np.arange without dtype, float64 frequencies) and cast only "
            "cos and sin to float32.",
            tables_float32_angles),
    Mistake("rope_tables.float64_tables",
            "the tables are float64: compute the angles in float64, then cast cos and sin to float32 "
            "(.astype(np.float32)), or every q and k they rotate turns float64.",
            tables_float64),
    Mistake("rope_tables.sin_cos_swapped",
            "returns (sin, cos); the order is cos, sin.",
            tables_swapped),
    Mistake("rope_tables.positions_from_one",
            "the positions start at 1: row m of the tables is position m = 0, 1, ..., and position 0 is the "
            "identity (cos 1, sin 0).",
            tables_from_position_one),
    Mistake("rope_tables.full_width",
            "the tables are [S, Dh], each frequency twice (Hugging Face's cat((freqs, freqs)) for rotate_half); "
            "the course's are [S, Dh/2], one column per pair.",
            tables_full_width),
])


# --- apply_rope -------------------------------------------------------------------------------

def rope_half_split(x, cos, sin, positions):
    half = x.shape[-1] // 2
    c, s = cos[positions][:, None, :], sin[positions][:, None, :]
    x0, x1 = x[..., :half], x[..., half:]
    return np.concatenate([x0 * c - x1 * s, x0 * s + x1 * c], axis=-1)


def rope_ignores_positions(x, cos, sin, positions):
    c, s = cos[: x.shape[0]][:, None, :], sin[: x.shape[0]][:, None, :]
    out = np.empty_like(x)
    out[..., 0::2] = x[..., 0::2] * c - x[..., 1::2] * s
    out[..., 1::2] = x[..., 0::2] * s + x[..., 1::2] * c
    return out


def rope_wrong_direction(x, cos, sin, positions):
    c, s = cos[positions][:, None, :], sin[positions][:, None, :]
    out = np.empty_like(x)
    out[..., 0::2] = x[..., 0::2] * c + x[..., 1::2] * s
    out[..., 1::2] = -x[..., 0::2] * s + x[..., 1::2] * c
    return out


def rope_in_place(x, cos, sin, positions):
    c, s = cos[positions][:, None, :], sin[positions][:, None, :]
    x = x.copy()
    x[..., 0::2] = x[..., 0::2] * c - x[..., 1::2] * s
    x[..., 1::2] = x[..., 0::2] * s + x[..., 1::2] * c  # reads the pair's first member already rotated
    return x


def rope_float64_buffer(x, cos, sin, positions):
    c, s = cos[positions][:, None, :], sin[positions][:, None, :]
    out = np.zeros(x.shape)
    out[..., 0::2] = x[..., 0::2] * c - x[..., 1::2] * s
    out[..., 1::2] = x[..., 0::2] * s + x[..., 1::2] * c
    return out


def rope_case(seed, T, H, head_dim, positions):  # -> run(apply_rope)
    def run(apply_rope):
        cos, sin = rope_tables(head_dim, 32)
        return apply_rope(randn(seed, (T, H, head_dim)), cos, sin, np.array(positions))
    return run


APPLY_ROPE = Exercise(2, "rope", "apply_rope", cases=[
    Case("positions 0..3", rope_case(40, 4, 2, 8, [0, 1, 2, 3])),
    Case("positions 5..7 (after 5 cached tokens)", rope_case(41, 3, 2, 8, [5, 6, 7]),
         note="the tokens sit at positions 5, 6, 7: row t of the tables is not position positions[t] = t"),
    Case("one token at position 20", rope_case(42, 1, 3, 16, [20]), note="a decoding step, head_dim 16"),
], mistakes=[
    Mistake("apply_rope.half_split",
            "this is the half-split RoPE layout (Hugging Face's rotate_half pairs x[i] with x[i + Dh/2]); "
            "the course pairs interleaved rows: (x[2i], x[2i+1]), i.e. x[..., 0::2] and x[..., 1::2].",
            rope_half_split),
    Mistake("apply_rope.ignores_positions",
            "the positions are ignored (rows 0..T-1 of the tables are used): token t must be rotated by the "
            "angle of positions[t], e.g. 5, 6, 7 after 5 cached tokens. Index the tables: cos[positions].",
            rope_ignores_positions),
    Mistake("apply_rope.rotates_backwards",
            "the rotation goes the wrong way (sin with the wrong sign): [[c, -s], [s, c]] @ [x0, x1] is "
            "x0*c - x1*s and x0*s + x1*c.",
            rope_wrong_direction),
    Mistake("apply_rope.overwrites_pair",
            "the first member of each pair is overwritten before the second is computed from it: compute both "
            "new values from the old x0 and x1 (take x0, x1 = x[..., 0::2], x[..., 1::2] and write into a new array).",
            rope_in_place),
    Mistake("apply_rope.float64_buffer",
            "computed in float64: most often the output array was made with np.zeros(x.shape) or np.empty(x.shape), "
            "whose default dtype is float64; use np.empty_like(x) (or dtype=np.float32). Any float64 array or "
            "numpy scalar in the computation does the same.",
            rope_float64_buffer),
])


EXERCISES = [ROPE_FREQUENCIES, ROPE_TABLES, APPLY_ROPE]
