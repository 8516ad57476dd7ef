"""Day 3 attention: known answers, parity with PyTorch's scaled_dot_product_attention, and bad input."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinyllm_lab.attention import (attention, attention_weights, causal_mask, merge_heads, repeat_kv,
                                   self_attention, split_heads)
from tinyllm_lab.rope import rope_tables


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def torch_sdpa(q, k, v, mask=None, is_causal=False):
    """torch's SDPA on our [T, H, Dh] layout: it wants [H, T, Dh]; GQA via enable_gqa."""
    q, k, v = (torch.from_numpy(a).transpose(0, 1) for a in (q, k, v))
    m = None if mask is None else torch.from_numpy(mask)  # bool: True = takes part, as ours
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=is_causal, enable_gqa=True)
    return out.transpose(0, 1).numpy()


# --- split_heads / merge_heads / repeat_kv --------------------------------------------------------

def test_split_heads_known_answer():
    x = np.arange(16, dtype=np.float32).reshape(2, 8)  # [T=2, H*Dh=8]
    heads = split_heads(x, 2)
    assert heads.shape == (2, 2, 4)
    assert heads[0, 0].tolist() == [0, 1, 2, 3] and heads[0, 1].tolist() == [4, 5, 6, 7]
    assert heads[1, 1].tolist() == [12, 13, 14, 15]


@pytest.mark.parametrize("T,n,Dh", [(1, 1, 2), (5, 4, 16), (3, 8, 64)])
def test_merge_heads_inverts_split_heads(T, n, Dh):
    x = randn(np.random.default_rng(0), T, n * Dh)
    assert np.array_equal(merge_heads(split_heads(x, n)), x)
    # the same layout as torch's x.view(T, n, Dh)
    assert np.array_equal(split_heads(x, n), torch.from_numpy(x).view(T, n, Dh).numpy())


def test_split_heads_rejects_a_width_not_divisible_by_heads():
    with pytest.raises(ValueError, match=r"\(3, 10\).*n_heads=4"):
        split_heads(np.zeros((3, 10), np.float32), 4)
    with pytest.raises(ValueError, match=r"\(3, 2, 5, 1\)"):
        merge_heads(np.zeros((3, 2, 5, 1), np.float32))


def test_repeat_kv_matches_repeat_interleave():
    x = randn(np.random.default_rng(1), 5, 2, 4)
    expected = torch.from_numpy(x).repeat_interleave(3, dim=1).numpy()
    assert np.array_equal(repeat_kv(x, 3), expected)
    assert repeat_kv(x, 1) is x


# --- causal_mask ----------------------------------------------------------------------------------

def test_causal_mask_known_answers():
    assert causal_mask(3, 3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert causal_mask(1, 5).tolist() == [[True] * 5]  # one new token after 4 cached: sees everything
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]
    assert causal_mask(0, 3).shape == (0, 3)
    assert causal_mask(4, 4).dtype == np.bool_


@pytest.mark.parametrize("T,S", [(1, 1), (4, 4), (3, 10), (1, 64), (64, 64)])
def test_causal_mask_matches_torch_and_never_has_an_empty_row(T, S):
    # torch's is_causal uses the top-left alignment, so compare against the explicit definition:
    # query t sits at absolute position S - T + t and sees keys 0 .. S - T + t.
    expected = torch.ones(T, S, dtype=torch.bool).tril(diagonal=S - T).numpy()
    assert np.array_equal(causal_mask(T, S), expected)
    assert causal_mask(T, S).any(axis=1).all(), "every query must see at least itself"


def test_causal_mask_rejects_more_queries_than_keys():
    with pytest.raises(ValueError, match="n_queries=5, n_keys=3"):
        causal_mask(5, 3)


# --- attention: known answers ---------------------------------------------------------------------

def test_zero_queries_average_the_visible_values():
    # q = 0 gives equal scores, so each query averages the values it may see: a running mean
    rng = np.random.default_rng(2)
    T, H, Dh = 6, 2, 4
    q, k, v = np.zeros((T, H, Dh), np.float32), randn(rng, T, H, Dh), randn(rng, T, H, Dh)
    out = attention(q, k, v, causal_mask(T, T))
    running_mean = np.cumsum(v, axis=0) / np.arange(1, T + 1, dtype=np.float32)[:, None, None]
    np.testing.assert_allclose(out, running_mean, rtol=0, atol=1e-6)


def test_a_matching_key_is_picked_out():
    # keys are scaled one-hot vectors; a query equal to key j puts ~all weight on value j
    Dh, S = 4, 4
    k = (20.0 * np.eye(S, Dh, dtype=np.float32))[:, None, :]  # [S, K=1, Dh]
    v = np.arange(S * Dh, dtype=np.float32).reshape(S, 1, Dh)
    q = k[[2]]  # [T=1, H=1, Dh]
    out = attention(q, k, v, np.ones((1, S), bool))
    np.testing.assert_allclose(out[0, 0], v[2, 0], atol=1e-4)


def test_weights_are_distributions_with_exact_zeros_where_masked():
    rng = np.random.default_rng(3)
    q, k = randn(rng, 7, 4, 8), randn(rng, 7, 2, 8)
    mask = causal_mask(7, 7)
    w = attention_weights(q, k, mask)
    assert w.shape == (4, 7, 7) and w.dtype == np.float32
    np.testing.assert_allclose(w.sum(axis=-1), 1.0, atol=1e-6)
    assert np.all(w[:, ~mask] == 0.0)


# --- attention: parity with torch -----------------------------------------------------------------

@pytest.mark.parametrize("H,K", [(4, 4), (4, 2), (4, 1), (8, 2)])
@pytest.mark.parametrize("T", [1, 2, 7, 33, 64])
@pytest.mark.parametrize("Dh", [16, 64])
def test_causal_attention_matches_torch(T, H, K, Dh):
    rng = np.random.default_rng(T * 100 + H * 10 + K)
    q, k, v = randn(rng, T, H, Dh), randn(rng, T, K, Dh), randn(rng, T, K, Dh)
    out = attention(q, k, v, causal_mask(T, T))
    assert out.shape == (T, H, Dh) and out.dtype == np.float32
    expected = torch_sdpa(q, k, v, is_causal=True)
    assert np.abs(out - expected).max() < 1e-5


@pytest.mark.parametrize("T,S", [(1, 1), (1, 17), (3, 20), (16, 64)])
@pytest.mark.parametrize("H,K", [(4, 4), (6, 2)])
def test_cache_style_attention_matches_torch_with_an_explicit_mask(T, S, H, K):
    # T new queries after S - T cached positions, the way day 4's decoding calls it
    rng = np.random.default_rng(S * 10 + T)
    q, k, v = randn(rng, T, H, 32), randn(rng, S, K, 32), randn(rng, S, K, 32)
    mask = causal_mask(T, S)
    out = attention(q, k, v, mask)
    assert out.dtype == np.float32
    assert np.abs(out - torch_sdpa(q, k, v, mask=mask)).max() < 1e-5


def test_gqa_equals_multi_head_attention_on_repeated_kv_heads():
    rng = np.random.default_rng(4)
    q, k, v = randn(rng, 9, 8, 16), randn(rng, 9, 2, 16), randn(rng, 9, 2, 16)
    mask = causal_mask(9, 9)
    kr = torch.from_numpy(k).repeat_interleave(4, dim=1).numpy()  # kv head j -> query heads 4j..4j+3
    vr = torch.from_numpy(v).repeat_interleave(4, dim=1).numpy()
    # the same dot products, batched by kv head instead of by query head: equal to float32 rounding
    assert np.abs(attention(q, k, v, mask) - attention(q, kr, vr, mask)).max() < 1e-6


def test_multi_head_attention_is_unchanged_by_the_grouping():
    # K == H: the groups are the heads themselves, the very products of plain multi-head attention
    rng = np.random.default_rng(14)
    q, k, v = randn(rng, 3, 4, 16), randn(rng, 10, 4, 16), randn(rng, 10, 4, 16)
    mask = causal_mask(3, 10)
    scores = q.transpose(1, 0, 2) @ k.transpose(1, 2, 0) * np.float32(1 / np.sqrt(16))
    weights = torch.softmax(torch.from_numpy(np.where(mask, scores, -np.inf)), dim=-1).numpy()
    assert np.abs(attention_weights(q, k, mask) - weights).max() < 1e-7
    assert np.abs(attention(q, k, v, mask) - (weights @ v.transpose(1, 0, 2)).transpose(1, 0, 2)).max() < 1e-6


def test_grouped_query_attention_does_not_copy_the_keys_and_values():
    # one decode step of a Llama-2-7B-like layer over a long cache: H = 32 query heads share K = 4 kv heads.
    # repeat_kv would copy k and v 8 times (2 x 16 MiB); the grouped matmuls need only the scores [H, 1, S]
    import tracemalloc
    rng = np.random.default_rng(15)
    q, k, v = randn(rng, 1, 32, 64), randn(rng, 4096, 4, 64), randn(rng, 4096, 4, 64)
    mask = causal_mask(1, 4096)
    expected = torch_sdpa(q, k, v, mask=mask)
    tracemalloc.start()
    try:
        out = attention(q, k, v, mask)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.abs(out - expected).max() < 1e-5
    assert peak < 4 * 2**20, f"attention allocated {peak / 2**20:.1f} MiB at its peak"  # k repeated alone: 16 MiB


def test_random_boolean_mask_matches_torch():
    rng = np.random.default_rng(5)
    q, k, v = randn(rng, 5, 2, 8), randn(rng, 11, 2, 8), randn(rng, 11, 2, 8)
    mask = rng.random((5, 11)) < 0.5
    mask[np.arange(5), rng.integers(0, 11, 5)] = True  # no empty row
    assert np.abs(attention(q, k, v, mask) - torch_sdpa(q, k, v, mask=mask)).max() < 1e-5


def test_scale_is_one_over_sqrt_head_dim_and_stays_float32():
    rng = np.random.default_rng(6)
    q, k = randn(rng, 3, 1, 64), randn(rng, 3, 1, 64)
    w = attention_weights(q, k, np.ones((3, 3), bool))
    scores = (q[:, 0].astype(np.float64) @ k[:, 0].T.astype(np.float64)) / 8.0
    expected = np.exp(scores - scores.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(w[0], expected, atol=1e-6)
    assert w.dtype == np.float32


# --- fully masked rows ----------------------------------------------------------------------------

def test_a_fully_masked_row_raises_instead_of_returning_nan():
    # causal_mask never makes such a row (every query sees itself, tested above); a hand-made mask can
    rng = np.random.default_rng(7)
    q, k, v = randn(rng, 3, 2, 4), randn(rng, 3, 2, 4), randn(rng, 3, 2, 4)
    mask = causal_mask(3, 3)
    mask[1] = False
    with pytest.raises(ValueError, match=r"rows \[1\] are all False"):
        attention(q, k, v, mask)
    with pytest.raises(ValueError, match="all False"):
        attention(q, k[:0], v[:0], np.zeros((3, 0), bool))  # no keys at all


# --- attention: bad input -------------------------------------------------------------------------

@pytest.mark.parametrize("q_shape,k_shape,v_shape,mask_shape,match", [
    ((3, 4, 8), (3, 3, 8), (3, 3, 8), (3, 3), r"n_heads=4 \(q \(3, 4, 8\)\) is not divisible by n_kv_heads=3"),
    ((3, 4, 8), (3, 2, 16), (3, 2, 16), (3, 3), r"q has shape \(3, 4, 8\), k has shape \(3, 2, 16\)"),
    ((3, 4, 8), (3, 2, 8), (3, 2, 4), (3, 3), r"v has shape \(3, 2, 4\).*\(3, 2, 8\)"),
    ((3, 4, 8), (5, 2, 8), (5, 2, 8), (3, 3), r"mask has shape \(3, 3\).*\[3, 5\]"),
    ((12, 8), (3, 2, 8), (3, 2, 8), (3, 3), r"q has shape \(12, 8\)"),
])
def test_attention_rejects_bad_shapes(q_shape, k_shape, v_shape, mask_shape, match):
    with pytest.raises(ValueError, match=match):
        attention(np.zeros(q_shape, np.float32), np.zeros(k_shape, np.float32), np.zeros(v_shape, np.float32),
                  np.ones(mask_shape, bool))


def test_attention_rejects_a_float_mask():
    # an additive float mask (0 / -inf, as some libraries use) would be misread as True/False
    z = np.zeros((2, 1, 4), np.float32)
    with pytest.raises(ValueError, match="dtype float32.*boolean"):
        attention(z, z, z, np.zeros((2, 2), np.float32))


# --- self_attention: the full layer ---------------------------------------------------------------

def torch_self_attention(x, wq, wk, wv, wo, n_heads, n_kv_heads, rope_theta=10000.0):
    """A reference layer in torch, written the way Meta's Llama code writes it (complex RoPE)."""
    x, wq, wk, wv, wo = (torch.from_numpy(a) for a in (x, wq, wk, wv, wo))
    T, Dh = x.shape[0], wq.shape[0] // n_heads
    freqs = rope_theta ** (-torch.arange(0, Dh, 2, dtype=torch.float64) / Dh)
    freqs_cis = torch.polar(torch.ones(T, Dh // 2, dtype=torch.float64),
                            torch.outer(torch.arange(T, dtype=torch.float64), freqs)).to(torch.complex64)

    def rope(t):  # [T, n, Dh]: interleaved pairs as complex numbers
        tc = torch.view_as_complex(t.reshape(*t.shape[:-1], -1, 2))
        return torch.view_as_real(tc * freqs_cis[:, None, :]).flatten(-2)

    q = rope(F.linear(x, wq).view(T, n_heads, Dh)).transpose(0, 1)
    k = rope(F.linear(x, wk).view(T, n_kv_heads, Dh)).transpose(0, 1)
    v = F.linear(x, wv).view(T, n_kv_heads, Dh).transpose(0, 1)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    return F.linear(out.transpose(0, 1).reshape(T, n_heads * Dh), wo).numpy()


def layer_weights(rng, D, H, K, Dh):
    s = np.float32(1 / np.sqrt(D))
    return (randn(rng, H * Dh, D) * s, randn(rng, K * Dh, D) * s, randn(rng, K * Dh, D) * s,
            randn(rng, D, H * Dh) * s)


@pytest.mark.parametrize("T,H,K,Dh", [(1, 4, 4, 16), (10, 4, 4, 64), (37, 4, 2, 16), (64, 8, 1, 8)])
def test_self_attention_matches_a_torch_llama_layer(T, H, K, Dh):
    rng = np.random.default_rng(T + H + K)
    D = H * Dh
    x = randn(rng, T, D)
    wq, wk, wv, wo = layer_weights(rng, D, H, K, Dh)
    cos, sin = rope_tables(Dh, 128)
    out = self_attention(x, wq, wk, wv, wo, cos, sin, np.arange(T), H, K)
    assert out.shape == (T, D) and out.dtype == np.float32
    assert np.abs(out - torch_self_attention(x, wq, wk, wv, wo, H, K)).max() < 1e-5


def test_self_attention_rejects_bad_configurations():
    rng = np.random.default_rng(8)
    wq, wk, wv, wo = layer_weights(rng, 64, 4, 2, 16)
    cos, sin = rope_tables(16, 32)
    x, pos = randn(rng, 5, 64), np.arange(5)
    with pytest.raises(ValueError, match="n_heads=4 is not divisible by n_kv_heads=3"):
        self_attention(x, wq, wk, wv, wo, cos, sin, pos, 4, 3)
    with pytest.raises(ValueError, match=r"D != H \* Dh: x \(5, 64\) has D=64.*8 heads of Dh=16"):
        self_attention(x, wq, wk, wv, wo, cos, sin, pos, 8, 2)
    with pytest.raises(ValueError, match=r"wk has shape \(32, 64\), expected \(64, 64\)"):
        self_attention(x, wq, wk, wv, wo, cos, sin, pos, 4, 4)
    with pytest.raises(ValueError, match=r"wo has shape \(64, 32\), expected \(64, 64\)"):
        self_attention(x, wq, wk, wv, wo[:, :32], cos, sin, pos, 4, 2)


# --- the dtype rule and argument types ------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int64])
def test_every_attention_function_computes_in_float32_for_any_real_dtype(dtype):
    rng = np.random.default_rng(9)
    T, H, K, Dh, D = 5, 4, 2, 8, 32
    q, k, v = (2 * rng.standard_normal(s) for s in ((T, H, Dh), (T, K, Dh), (T, K, Dh)))
    wq, wk, wv, wo = layer_weights(rng, D, H, K, Dh)
    x = 2 * rng.standard_normal((T, D))
    cos, sin = rope_tables(Dh, 16)
    mask, pos = causal_mask(T, T), np.arange(T)

    def run(convert):  # every function, on inputs passed through `convert`
        q_, k_, v_, x_, c_, s_ = (convert(a) for a in (q, k, v, x, cos, sin))
        w_ = [convert(w) for w in (wq, wk, wv, wo)]
        return {"split_heads": split_heads(x_, H), "merge_heads": merge_heads(q_), "repeat_kv": repeat_kv(k_, 2),
                "attention_weights": attention_weights(q_, k_, mask), "attention": attention(q_, k_, v_, mask),
                "self_attention": self_attention(x_, *w_, c_, s_, pos, H, K)}

    ours = run(lambda a: a.astype(dtype))
    expected = run(lambda a: a.astype(dtype).astype(np.float32))  # the same numbers, handed over as float32
    for name, out in ours.items():
        assert out.dtype == np.float32, name
        np.testing.assert_array_equal(out, expected[name], err_msg=name)


def test_attention_on_float16_equals_attention_on_its_values_in_float32():
    rng = np.random.default_rng(10)
    q, k, v = (rng.standard_normal(s).astype(np.float16) for s in ((4, 2, 8), (6, 2, 8), (6, 2, 8)))
    mask = causal_mask(4, 6)
    np.testing.assert_array_equal(attention(q, k, v, mask),
                                  attention(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32), mask))


@pytest.mark.parametrize("call, message", [
    (lambda: split_heads(np.ones((2, 8), dtype=bool), 2), "x must hold real numbers"),
    (lambda: attention(np.ones((2, 1, 4), dtype=complex), np.ones((2, 1, 4)), np.ones((2, 1, 4)), causal_mask(2, 2)),
     "q must hold real numbers"),
    (lambda: attention(np.ones((2, 1, 4)), np.ones((2, 1, 4)), np.array([["a"] * 4] * 2).reshape(2, 1, 4),
                       causal_mask(2, 2)), "v must hold real numbers"),
])
def test_attention_refuses_arrays_that_are_not_real_numbers_by_name(call, message):
    with pytest.raises(TypeError, match=message):
        call()


@pytest.mark.parametrize("call, error, message", [
    (lambda: split_heads(np.ones((2, 8), dtype=np.float32), 2.0), TypeError, "split_heads: n_heads must be an integer, got 2.0"),
    (lambda: split_heads(np.ones((2, 8), dtype=np.float32), True), TypeError, "split_heads: n_heads must be an integer, got True"),
    (lambda: split_heads(np.ones((2, 8), dtype=np.float32), -2), ValueError, "split_heads: n_heads must be >= 1, got -2"),
    (lambda: repeat_kv(np.ones((2, 2, 4), dtype=np.float32), 0), ValueError, "repeat_kv: n_rep must be >= 1, got 0"),
    (lambda: repeat_kv(np.ones((2, 2, 4), dtype=np.float32), 1.5), TypeError, "repeat_kv: n_rep must be an integer"),
    (lambda: repeat_kv(np.ones((2, 8), dtype=np.float32), 2), ValueError, r"repeat_kv: x has shape \(2, 8\), expected \[S, K, Dh\]"),
    (lambda: causal_mask(2.0, 3), TypeError, "causal_mask: n_queries must be an integer, got 2.0"),
    (lambda: causal_mask(1, True), TypeError, "causal_mask: n_keys must be an integer, got True"),
    (lambda: causal_mask(-1, 3), ValueError, "causal_mask: n_queries must be >= 0, got -1"),
])
def test_sizes_must_be_integers_in_range_named_in_the_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_numpy_integer_sizes_are_sizes():
    x = np.ones((2, 8), dtype=np.float32)
    np.testing.assert_array_equal(split_heads(x, np.int64(2)), split_heads(x, 2))
    np.testing.assert_array_equal(causal_mask(np.int32(2), np.int64(3)), causal_mask(2, 3))


def test_self_attention_refuses_head_counts_that_are_not_integers():
    rng = np.random.default_rng(8)
    wq, wk, wv, wo = layer_weights(rng, 64, 4, 4, 16)
    cos, sin = rope_tables(16, 32)
    x, pos = randn(rng, 5, 64), np.arange(5)
    with pytest.raises(TypeError, match="self_attention: n_heads must be an integer, got 4.0"):
        self_attention(x, wq, wk, wv, wo, cos, sin, pos, 4.0, 4)
    with pytest.raises(ValueError, match="self_attention: n_kv_heads must be >= 1, got 0"):
        self_attention(x, wq, wk, wv, wo, cos, sin, pos, 4, 0)
