"""Day 2 RoPE (tinyllm_lab.rope): parity with Meta's complex formulation and with Hugging Face's
rotate_half (after the weight-row permutation), known answers, bad input."""

import math

import numpy as np
import pytest
import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb  # HF's rotate_half RoPE

from tinyllm_lab.ops import linear
from tinyllm_lab.rope import apply_rope, half_split_to_interleaved_rows, rope_frequencies, rope_tables


def randn(rng, shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def torch_angles(head_dim, positions, rope_theta=10000.0):  # -> [T, Dh/2] float64, Meta's formula
    inv_freq = 1.0 / (rope_theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    return torch.outer(torch.as_tensor(positions, dtype=torch.float64), inv_freq)


def meta_rope(x, positions, rope_theta=10000.0):  # [T, H, Dh] -> [T, H, Dh], Meta's complex form
    """llama/model.py's precompute_freqs_cis + apply_rotary_emb (torch.polar, view_as_complex),
    with float64 angles."""
    angles = torch_angles(x.shape[-1], positions, rope_theta)
    freqs_cis = torch.polar(torch.ones_like(angles), angles).to(torch.complex64)   # [T, Dh/2]
    x_ = torch.view_as_complex(torch.from_numpy(x).reshape(*x.shape[:-1], -1, 2))  # [T, H, Dh/2]
    return torch.view_as_real(x_ * freqs_cis[:, None, :]).flatten(-2).numpy()


def hf_cos_sin(head_dim, positions):  # -> cos, sin [1, T, Dh] float32 in HF's layout (halves repeated)
    angles = torch_angles(head_dim, positions)
    emb = torch.cat((angles, angles), dim=-1)[None]
    return emb.cos().float(), emb.sin().float()


def hf_permute(w, n_heads, dim1, dim2):  # HF's convert_llama_weights_to_hf.py: Meta rows -> half-split rows
    return w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)


# --- frequencies and tables -------------------------------------------------------------

def test_frequencies_known_answer():
    theta = rope_frequencies(8)
    assert theta.dtype == np.float64
    np.testing.assert_allclose(theta, [1.0, 0.1, 0.01, 0.001], rtol=1e-14)
    np.testing.assert_allclose(rope_frequencies(4, rope_theta=100.0), [1.0, 0.1], rtol=1e-14)


@pytest.mark.parametrize("head_dim", [2, 64, 128])
@pytest.mark.parametrize("rope_theta", [10000.0, 500000.0])
def test_tables_match_torch(head_dim, rope_theta):
    cos, sin = rope_tables(head_dim, 1024, rope_theta)
    assert cos.dtype == sin.dtype == np.float32
    assert cos.shape == sin.shape == (1024, head_dim // 2)
    angles = torch_angles(head_dim, range(1024), rope_theta)
    np.testing.assert_allclose(cos, angles.cos().numpy(), atol=1e-7)
    np.testing.assert_allclose(sin, angles.sin().numpy(), atol=1e-7)


def test_tables_use_float64_angles():
    """At position 10^5 float32 angles are off by ~1e-3; the table must stay at float32 rounding."""
    cos, sin = rope_tables(64, 100_001)
    exact = np.outer([100_000], 10000.0 ** (-np.arange(0, 64, 2) / 64))
    np.testing.assert_allclose(cos[-1], np.cos(exact[0]), atol=1e-7)
    np.testing.assert_allclose(sin[-1], np.sin(exact[0]), atol=1e-7)


# --- apply_rope vs Meta's complex formulation -------------------------------------------

SHAPES = [(1, 1, 2), (5, 3, 8), (64, 4, 64), (17, 2, 128)]


@pytest.mark.parametrize("shape", SHAPES)
def test_apply_rope_matches_meta_at_every_position(shape):
    T, _, head_dim = shape
    x = randn(np.random.default_rng(0), shape)
    cos, sin = rope_tables(head_dim, 1024)
    for positions in [np.arange(T), np.arange(1024 - T, 1024), np.random.default_rng(1).permutation(1024)[:T]]:
        y = apply_rope(x, cos, sin, positions)
        assert y.dtype == np.float32 and y.shape == shape
        np.testing.assert_allclose(y, meta_rope(x, positions), atol=1e-6)


def test_apply_rope_at_every_position_of_the_course_model():
    x = randn(np.random.default_rng(2), (1024, 4, 64))  # [T, H, Dh] of the course model, positions 0..1023
    cos, sin = rope_tables(64, 1024)
    np.testing.assert_allclose(apply_rope(x, cos, sin, np.arange(1024)), meta_rope(x, np.arange(1024)), atol=1e-6)


# --- known answers -------------------------------------------------------------------------

def test_position_zero_is_identity():
    x = randn(np.random.default_rng(3), (3, 2, 16))
    cos, sin = rope_tables(16, 8)
    np.testing.assert_array_equal(apply_rope(x, cos, sin, [0, 0, 0]), x)


def test_one_pair_turns_by_position_times_theta():
    cos, sin = rope_tables(2, 10)  # head_dim 2: one pair, theta_0 = 1 rad per position
    x = np.array([[[1.0, 0.0]]] * 3, dtype=np.float32)
    y = apply_rope(x, cos, sin, [1, 3, 9])
    np.testing.assert_allclose(y[:, 0], [[math.cos(m), math.sin(m)] for m in (1, 3, 9)], atol=1e-7)


def test_apply_rope_preserves_norms_and_input():
    x = randn(np.random.default_rng(4), (50, 4, 64), 3.0)
    x_before = x.copy()
    cos, sin = rope_tables(64, 1024)
    y = apply_rope(x, cos, sin, np.arange(0, 1000, 20))
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)
    np.testing.assert_array_equal(x, x_before)


def test_scores_depend_only_on_the_offset():
    rng = np.random.default_rng(5)
    q, k = randn(rng, (1, 1, 64)), randn(rng, (1, 1, 64))
    cos, sin = rope_tables(64, 1024)

    def score(m, n):
        return float(np.sum(apply_rope(q, cos, sin, [m]) * apply_rope(k, cos, sin, [n])))

    by_offset = {offset: [score(n + offset, n) for n in (0, 13, 500, 1023 - offset)] for offset in (0, 1, 7, 100)}
    for offset, scores in by_offset.items():
        np.testing.assert_allclose(scores, scores[0], atol=1e-4, err_msg=f"offset {offset}")
    firsts = [scores[0] for scores in by_offset.values()]
    assert len(set(np.round(firsts, 3))) == len(firsts), "different offsets should give different scores"


# --- Hugging Face's half-split layout ------------------------------------------------------

def test_half_split_rows_known_answer():
    rows = np.arange(8, dtype=np.float32)[:, None]  # two heads of head_dim 4, each row holds its number
    out = half_split_to_interleaved_rows(rows, n_heads=2)
    np.testing.assert_array_equal(out[:, 0], [0, 2, 1, 3, 4, 6, 5, 7])
    assert out.dtype == np.float32


@pytest.mark.parametrize("n_heads, head_dim, dim", [(1, 2, 3), (4, 8, 32), (4, 64, 256), (2, 128, 16)])
def test_half_split_rows_undo_hf_converter(n_heads, head_dim, dim):
    w = randn(np.random.default_rng(6), (n_heads * head_dim, dim))
    w_hf = hf_permute(torch.from_numpy(w), n_heads, n_heads * head_dim, dim).numpy()
    assert not np.array_equal(w_hf, w) or head_dim == 2  # head_dim 2: the permutation is the identity
    np.testing.assert_array_equal(half_split_to_interleaved_rows(w_hf, n_heads), w)


def _scores(q, k, n_heads, n_kv_heads):  # [T, H, Dh], [T, K, Dh] -> [H, T, T] (GQA: head h uses kv head h // (H//K))
    k = np.repeat(k, n_heads // n_kv_heads, axis=1)
    return np.einsum("thd,shd->hts", q.astype(np.float64), k.astype(np.float64))


@pytest.mark.parametrize("n_heads, n_kv_heads, head_dim", [(4, 4, 16), (4, 2, 64), (2, 1, 8)])
def test_permuted_hf_weights_give_hf_scores(n_heads, n_kv_heads, head_dim):
    """HF checkpoint weights + HF's rotate_half RoPE == permuted weights + our interleaved apply_rope."""
    T, dim = 24, 64
    rng = np.random.default_rng(7)
    x = randn(rng, (T, dim))
    wq_hf = randn(rng, (n_heads * head_dim, dim), dim ** -0.5)
    wk_hf = randn(rng, (n_kv_heads * head_dim, dim), dim ** -0.5)
    positions = np.arange(T)

    # Hugging Face: [batch, heads, T, Dh] and transformers' own apply_rotary_pos_emb
    q = torch.from_numpy(x @ wq_hf.T).view(T, n_heads, head_dim).transpose(0, 1)[None]
    k = torch.from_numpy(x @ wk_hf.T).view(T, n_kv_heads, head_dim).transpose(0, 1)[None]
    q_hf, k_hf = apply_rotary_pos_emb(q, k, *hf_cos_sin(head_dim, positions))
    reference = _scores(q_hf[0].transpose(0, 1).numpy(), k_hf[0].transpose(0, 1).numpy(), n_heads, n_kv_heads)

    cos, sin = rope_tables(head_dim, T)

    def ours(wq, wk):
        q = apply_rope(linear(x, wq).reshape(T, n_heads, head_dim), cos, sin, positions)
        k = apply_rope(linear(x, wk).reshape(T, n_kv_heads, head_dim), cos, sin, positions)
        return _scores(q, k, n_heads, n_kv_heads)

    permuted = ours(half_split_to_interleaved_rows(wq_hf, n_heads), half_split_to_interleaved_rows(wk_hf, n_kv_heads))
    np.testing.assert_allclose(permuted, reference, atol=1e-5)

    mixed = ours(wq_hf, wk_hf)  # HF weights without the permutation: right at position 0 only
    np.testing.assert_allclose(mixed[:, 0, 0], reference[:, 0, 0], atol=1e-5)
    assert np.abs(mixed - reference).max() > 1e-2


# --- bad input -----------------------------------------------------------------------------

def test_odd_head_dim_rejected_by_tables():
    with pytest.raises(ValueError, match="even head dimension.*head_dim=7"):
        rope_tables(7, 16)


@pytest.mark.parametrize("head_dim", [0, -2])
def test_nonpositive_head_dim_rejected_by_tables(head_dim):
    with pytest.raises(ValueError, match=f"head_dim must be positive, got {head_dim}"):
        rope_tables(head_dim, 16)


@pytest.mark.parametrize("head_dim", [8.0, True, "8", None])
def test_head_dim_that_is_not_an_integer_rejected(head_dim):
    with pytest.raises(TypeError, match=f"head_dim must be an integer, got {head_dim!r}"):
        rope_tables(head_dim, 16)


def test_nonpositive_max_seq_len_rejected():
    with pytest.raises(ValueError, match="max_seq_len must be positive, got 0"):
        rope_tables(8, 0)


@pytest.mark.parametrize("max_seq_len", [16.0, False, np.float64(16)])
def test_max_seq_len_that_is_not_an_integer_rejected(max_seq_len):
    with pytest.raises(TypeError, match="rope_tables: max_seq_len must be an integer"):
        rope_tables(8, max_seq_len)


def test_numpy_integer_sizes_accepted():
    np.testing.assert_array_equal(np.stack(rope_tables(np.int64(8), np.int32(16))), np.stack(rope_tables(8, 16)))


@pytest.mark.parametrize("rope_theta", [math.inf, math.nan, 0.0, -10000.0])
def test_rope_theta_not_finite_and_positive_rejected(rope_theta):
    with pytest.raises(ValueError, match=f"rope_theta must be finite and > 0, got {rope_theta!r}"):
        rope_frequencies(8, rope_theta)


@pytest.mark.parametrize("rope_theta", ["10000", True, None])
def test_rope_theta_that_is_not_a_number_rejected(rope_theta):
    with pytest.raises(TypeError, match="rope_theta must be a number"):
        rope_tables(8, 16, rope_theta)


# --- the dtype rule: computes in float32 whatever numbers it is given -----------------------

@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int64, np.int8])
def test_apply_rope_computes_in_float32_for_any_real_input(dtype):
    cos, sin = rope_tables(8, 16)
    x = (4 * np.random.default_rng(7).standard_normal((3, 2, 8))).astype(dtype)
    out = apply_rope(x, cos, sin, [0, 5, 9])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, apply_rope(x.astype(np.float32), cos, sin, [0, 5, 9]))
    # float64 tables are converted too
    out64 = apply_rope(x, cos.astype(np.float64), sin.astype(np.float64), [0, 5, 9])
    assert out64.dtype == np.float32
    np.testing.assert_array_equal(out64, out)


@pytest.mark.parametrize("bad, name", [(np.ones((2, 1, 8), dtype=bool), "x"), (np.ones((2, 1, 8), dtype=complex), "x"),
                                       ("x", "x")])
def test_apply_rope_refuses_input_that_is_not_real_numbers(bad, name):
    cos, sin = rope_tables(8, 16)
    with pytest.raises(TypeError, match=f"{name} must hold real numbers"):
        apply_rope(bad, cos, sin, [0, 1])


def test_apply_rope_refuses_tables_that_are_not_numbers():
    cos, sin = rope_tables(8, 16)
    with pytest.raises(TypeError, match="sin must hold real numbers.*got dtype bool"):
        apply_rope(np.ones((2, 1, 8), dtype=np.float32), cos, sin > 0, [0, 1])


@pytest.mark.parametrize("shape", [(8,), (2, 8), (1, 2, 1, 8)])
def test_apply_rope_refuses_x_that_is_not_three_dimensional(shape):
    cos, sin = rope_tables(8, 16)
    with pytest.raises(ValueError, match=r"apply_rope: x has shape .*expected \[T, H, Dh\]"):
        apply_rope(np.ones(shape, dtype=np.float32), cos, sin, [0, 1])


def test_apply_rope_float32_input_is_not_copied_on_entry():
    cos, sin = rope_tables(8, 16)
    x = np.ones((2, 1, 8), dtype=np.float32)
    out = apply_rope(x, cos, sin, [0, 1])
    assert out.dtype == np.float32 and not np.shares_memory(out, x)  # the output is new, the input untouched
    np.testing.assert_array_equal(x, 1)


def test_apply_rope_rejects_odd_head_dim():
    cos, sin = rope_tables(8, 16)
    x = np.ones((2, 1, 7), dtype=np.float32)
    with pytest.raises(ValueError, match=r"head dimension must be even.*\(2, 1, 7\)"):
        apply_rope(x, cos[:, :3], sin[:, :3], [0, 1])


@pytest.mark.parametrize("positions", [[14, 16], [0, 99], [-1, 3]])
def test_apply_rope_rejects_positions_outside_table(positions):
    cos, sin = rope_tables(8, 16)
    x = np.ones((2, 1, 8), dtype=np.float32)
    with pytest.raises(ValueError, match=r"outside the precomputed table of 16 positions \(0\.\.15\)"):
        apply_rope(x, cos, sin, positions)


@pytest.mark.parametrize("positions, dtype", [(np.array([0.0, 1.0]), "float64"), ([0.0, 1.0], "float64"),
                                              (np.array([0, 1], dtype=np.float32), "float32"),
                                              (np.array([True, False]), "bool")])
def test_apply_rope_rejects_positions_that_are_not_integers(positions, dtype):
    cos, sin = rope_tables(8, 16)
    with pytest.raises(ValueError, match=f"positions must be integers.*got dtype {dtype}"):
        apply_rope(np.ones((2, 1, 8), dtype=np.float32), cos, sin, positions)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8])
def test_apply_rope_takes_any_integer_positions(dtype):
    cos, sin = rope_tables(8, 16)
    x = randn(np.random.default_rng(4), (3, 2, 8))
    np.testing.assert_array_equal(apply_rope(x, cos, sin, np.array([0, 5, 9], dtype=dtype)),
                                  apply_rope(x, cos, sin, [0, 5, 9]))


def test_apply_rope_rejects_tables_of_the_wrong_width():
    cos, sin = rope_tables(16, 16)  # made for head_dim 16
    with pytest.raises(ValueError, match=r"cos/sin tables have shapes \(16, 8\), \(16, 8\); expected \[S, 4\]"):
        apply_rope(np.ones((2, 1, 8), dtype=np.float32), cos, sin, [0, 1])


def test_apply_rope_rejects_positions_of_the_wrong_length():
    cos, sin = rope_tables(8, 16)
    with pytest.raises(ValueError, match=r"positions has shape \(3,\), expected \(2,\)"):
        apply_rope(np.ones((2, 1, 8), dtype=np.float32), cos, sin, [0, 1, 2])


@pytest.mark.parametrize("n_heads, error, message", [(0, ValueError, "n_heads must be positive, got 0"),
                                                     (2.0, TypeError, "n_heads must be an integer, got 2.0"),
                                                     (True, TypeError, "n_heads must be an integer, got True")])
def test_half_split_rows_rejects_bad_n_heads(n_heads, error, message):
    with pytest.raises(error, match=f"half_split_to_interleaved_rows: {message}"):
        half_split_to_interleaved_rows(np.ones((8, 4), dtype=np.float32), n_heads)


def test_half_split_rows_keeps_the_dtype_it_is_given():  # a permutation of rows: row numbers stay integers
    for dtype in (np.float16, np.float32, np.int64):
        assert half_split_to_interleaved_rows(np.arange(8, dtype=dtype)[:, None], 1).dtype == dtype


@pytest.mark.parametrize("shape, n_heads", [((10, 4), 4), ((12, 4), 4), ((8,), 2)])
def test_half_split_rows_rejects_bad_shapes(shape, n_heads):
    with pytest.raises(ValueError, match=r"half_split_to_interleaved_rows: w has shape .*even head_dim"):
        half_split_to_interleaved_rows(np.ones(shape, dtype=np.float32), n_heads)
