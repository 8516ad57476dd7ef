"""Day 4 KV cache: its invariants, one test each, and cached attention == one full causal pass."""

import re

import numpy as np
import pytest

from tinyllm_lab.attention import self_attention
from tinyllm_lab.kv_cache import KVCache, cached_self_attention
from tinyllm_lab.ops import rms_norm
from tinyllm_lab.rope import rope_tables


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# --- construction and memory ----------------------------------------------------------------------

def test_a_new_cache_is_preallocated_empty_float32():
    cache = KVCache(2, 16, 4, 8)
    assert cache.pos == 0 and cache.written.tolist() == [0, 0]
    for a in (cache.keys, cache.values):
        assert a.shape == (2, 16, 4, 8) and a.dtype == np.float32 and not a.any()
    assert cache.keys is not cache.values and not np.shares_memory(cache.keys, cache.values)


@pytest.mark.parametrize("n_layers,max_seq_len,K,Dh", [(1, 1, 1, 2), (2, 64, 2, 16), (2, 1024, 4, 64), (4, 2048, 8, 128)])
def test_memory_is_two_n_layers_max_seq_len_kv_heads_head_dim_times_four_bytes(n_layers, max_seq_len, K, Dh):
    cache = KVCache(n_layers, max_seq_len, K, Dh)
    assert cache.nbytes == 2 * n_layers * max_seq_len * K * Dh * 4
    assert cache.nbytes == cache.keys.nbytes + cache.values.nbytes


def test_course_model_cache_is_four_mebibytes():
    assert KVCache(2, 1024, 4, 64).nbytes == 4 * 2**20  # 2 * 2 * 1024 * 4 * 64 * 4 bytes


@pytest.mark.parametrize("bad", [dict(n_layers=0), dict(max_seq_len=-1), dict(head_dim=0)])
def test_constructor_rejects_non_positive_sizes(bad):
    sizes = dict(n_layers=2, max_seq_len=8, n_kv_heads=2, head_dim=4) | bad
    name = next(iter(bad))
    with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
        KVCache(**sizes)


# --- position bookkeeping -------------------------------------------------------------------------

def test_update_writes_at_pos_returns_everything_so_far_and_does_not_advance():
    rng = np.random.default_rng(0)
    cache = KVCache(2, 10, 2, 4)
    k0, v0 = randn(rng, 3, 2, 4), randn(rng, 3, 2, 4)
    keys, values = cache.update(1, k0, v0)
    assert cache.pos == 0, "update must not move pos: every layer writes the same positions"
    assert np.array_equal(keys, k0) and np.array_equal(values, v0)
    assert not cache.keys[0].any(), "layer 0 was not written"
    assert cache.written.tolist() == [0, 3]
    cache.update(0, k0, v0)
    cache.advance(3)
    k1, v1 = randn(rng, 1, 2, 4), randn(rng, 1, 2, 4)
    keys, values = cache.update(1, k1, v1)
    assert keys.shape == (4, 2, 4)
    assert np.array_equal(keys, np.concatenate([k0, k1])) and np.array_equal(values, np.concatenate([v0, v1]))
    assert np.shares_memory(keys, cache.keys), "reads are views of the preallocated array, not copies"


@pytest.mark.parametrize("chunks", [[64], [10] + [1] * 54, [1] * 64, [5, 20, 1, 1, 37]])
def test_pos_advances_by_exactly_the_tokens_fed(chunks):
    cache, fed = KVCache(2, 64, 1, 2), 0
    for T in chunks:
        for layer in range(2):
            keys, _ = cache.update(layer, np.ones((T, 1, 2), np.float32), np.ones((T, 1, 2), np.float32))
            assert keys.shape[0] == fed + T
        cache.advance(T)
        fed += T
        assert cache.pos == fed and cache.written.tolist() == [fed, fed]
    assert cache.pos == 64 and cache.keys.all()


@pytest.mark.parametrize("writes,n,layers", [
    ({0: 3}, 5, r"\[0, 1\]"),        # the reviewer's case: layer 1 skipped, positions 3-4 never written
    ({0: 3}, 3, r"\[1\]"),           # layer 1 skipped
    ({0: 3, 1: 3}, 5, r"\[0, 1\]"),  # fewer tokens written than advanced over
    ({0: 3, 1: 3}, 2, r"\[0, 1\]"),  # more written than advanced over: position 2 would be overwritten later
    ({0: 3, 1: 2}, 3, r"\[1\]"),     # the layers disagree
    ({}, 1, r"\[0, 1\]"),            # nothing written at all
])
def test_advance_refuses_unless_every_layer_wrote_exactly_the_n_positions(writes, n, layers):
    cache = KVCache(2, 8, 1, 2)
    for layer, T in writes.items():
        cache.update(layer, np.ones((T, 1, 2), np.float32), np.ones((T, 1, 2), np.float32))
    written = cache.written.copy()
    with pytest.raises(ValueError, match=rf"advance\({n}\) from position 0: layers {layers} .* positions 0\.\.{n - 1}"):
        cache.advance(n)
    assert cache.pos == 0 and np.array_equal(cache.written, written)  # nothing moved


def test_advance_names_what_each_layer_wrote():
    cache = KVCache(3, 8, 1, 2)
    cache.advance(0)  # no tokens: nothing to write, a no-op
    for layer in range(3):
        cache.update(layer, np.ones((2, 1, 2), np.float32), np.ones((2, 1, 2), np.float32))
    cache.advance(2)
    cache.update(0, np.ones((4, 1, 2), np.float32), np.ones((4, 1, 2), np.float32))
    cache.update(1, np.ones((1, 1, 2), np.float32), np.ones((1, 1, 2), np.float32))
    with pytest.raises(ValueError, match=r"advance\(1\) from position 2: layers \[0, 2\] did not write exactly positions "
                                         r"2\.\.2 \(1 token\(s\)\); tokens written since position 2: "
                                         r"layer 0: 4, layer 1: 1, layer 2: 0"):
        cache.advance(1)


def test_a_layer_cannot_write_twice_before_advance():
    rng = np.random.default_rng(7)
    cache = KVCache(2, 8, 2, 4)
    k = randn(rng, 3, 2, 4)
    cache.update(0, k, k)
    keys = cache.keys.copy()
    with pytest.raises(ValueError, match=r"layer 0 already wrote positions 0\.\.2 .* advance\(\)"):
        cache.update(0, randn(rng, 2, 2, 4), randn(rng, 2, 2, 4))
    assert np.array_equal(cache.keys, keys) and cache.written.tolist() == [3, 0]  # the refused write changed nothing
    cache.update(1, k, k)
    cache.advance(3)
    cache.update(0, k[:1], k[:1])  # after advance, each layer writes again, at the new position
    assert cache.written.tolist() == [4, 3]


# --- overflow -------------------------------------------------------------------------------------

def test_writing_past_max_seq_len_raises_naming_position_and_limit_and_changes_nothing():
    rng = np.random.default_rng(1)
    cache = KVCache(1, 8, 2, 4)
    cache.update(0, randn(rng, 6, 2, 4), randn(rng, 6, 2, 4))
    cache.advance(6)
    keys, values = cache.keys.copy(), cache.values.copy()
    with pytest.raises(ValueError, match=r"3 token\(s\) at position 6: .* up to 8, past the limit max_seq_len=8"):
        cache.update(0, randn(rng, 3, 2, 4), randn(rng, 3, 2, 4))
    assert cache.pos == 6 and np.array_equal(cache.keys, keys) and np.array_equal(cache.values, values)
    assert cache.written.tolist() == [6]  # the refused write is not recorded: the layer may still write once
    cache.update(0, randn(rng, 2, 2, 4), randn(rng, 2, 2, 4))  # filling exactly up to the limit is fine
    cache.advance(2)
    with pytest.raises(ValueError, match=r"1 token\(s\) at position 8: .* max_seq_len=8"):
        cache.update(0, randn(rng, 1, 2, 4), randn(rng, 1, 2, 4))


def test_advance_past_max_seq_len_or_backwards_raises():
    cache = KVCache(1, 4, 1, 2)
    cache.update(0, np.ones((3, 1, 2), np.float32), np.ones((3, 1, 2), np.float32))
    cache.advance(3)
    with pytest.raises(ValueError, match=r"from position 3 by 2 .* max_seq_len=4"):
        cache.advance(2)
    with pytest.raises(ValueError, match="by -1"):
        cache.advance(-1)
    assert cache.pos == 3


@pytest.mark.parametrize("layer,k_shape,v_shape,match", [
    (2, (1, 2, 4), (1, 2, 4), "layer 2 is out of range for 2 layers"),
    (-1, (1, 2, 4), (1, 2, 4), "layer -1 is out of range"),
    (0, (1, 3, 4), (1, 3, 4), r"k has shape \(1, 3, 4\).*\[T, 2, 4\]"),
    (0, (1, 2, 4), (2, 2, 4), r"v \(2, 2, 4\)"),
])
def test_update_rejects_bad_layer_and_shapes(layer, k_shape, v_shape, match):
    cache = KVCache(2, 8, 2, 4)
    with pytest.raises(ValueError, match=match):
        cache.update(layer, np.zeros(k_shape, np.float32), np.zeros(v_shape, np.float32))


# --- reset ----------------------------------------------------------------------------------------

def test_reset_makes_the_cache_equal_to_a_new_one():
    rng = np.random.default_rng(2)
    cache, fresh = KVCache(2, 8, 2, 4), KVCache(2, 8, 2, 4)
    for layer in range(2):
        cache.update(layer, randn(rng, 5, 2, 4), randn(rng, 5, 2, 4))
    cache.advance(5)
    cache.update(0, randn(rng, 2, 2, 4), randn(rng, 2, 2, 4))  # a half-done step: layer 0 wrote, layer 1 not
    cache.reset()
    assert cache.pos == fresh.pos == 0 and np.array_equal(cache.written, fresh.written)
    assert np.array_equal(cache.keys, fresh.keys) and np.array_equal(cache.values, fresh.values)
    assert cache.nbytes == fresh.nbytes
    k, v = randn(rng, 8, 2, 4), randn(rng, 8, 2, 4)  # the whole length is available again
    assert all(np.array_equal(a, b) for a, b in zip(cache.update(0, k, v), fresh.update(0, k, v)))


# --- cached decoding == full recomputation --------------------------------------------------------

D, H, K, Dh, N_LAYERS, N = 32, 4, 2, 8, 2, 64


def tiny_stack(seed):
    """Random weights of a 2-layer attention-only stack (pre-norm, residual), GQA with K < H."""
    rng = np.random.default_rng(seed)
    s = np.float32(1 / np.sqrt(D))
    return [(randn(rng, H * Dh, D) * s, randn(rng, K * Dh, D) * s, randn(rng, K * Dh, D) * s,
             randn(rng, D, H * Dh) * s) for _ in range(N_LAYERS)]


def full_pass(x, layers, cos, sin):  # [T, D] -> [T, D]: every position recomputed, no cache
    norm = np.ones(D, np.float32)
    for wq, wk, wv, wo in layers:
        x = x + self_attention(rms_norm(x, norm), wq, wk, wv, wo, cos, sin, np.arange(len(x)), H, K)
    return x


def cached_pass(x, layers, cache, cos, sin):  # [T, D] -> [T, D]: the T new tokens only, through the cache
    norm = np.ones(D, np.float32)
    for layer, (wq, wk, wv, wo) in enumerate(layers):
        x = x + cached_self_attention(rms_norm(x, norm), wq, wk, wv, wo, cos, sin, H, K, cache, layer)
    cache.advance(len(x))
    return x


@pytest.mark.parametrize("prompt_len", [1, 10, 63, 64])
def test_prompt_then_single_tokens_through_the_cache_equals_one_full_pass(prompt_len):
    rng = np.random.default_rng(3)
    layers, x = tiny_stack(4), randn(rng, N, D)
    cos, sin = rope_tables(Dh, N)
    expected = full_pass(x, layers, cos, sin)
    cache = KVCache(N_LAYERS, N, K, Dh)
    outputs = [cached_pass(x[:prompt_len], layers, cache, cos, sin)]
    outputs += [cached_pass(x[t:t + 1], layers, cache, cos, sin) for t in range(prompt_len, N)]
    out = np.concatenate(outputs)
    assert cache.pos == N
    assert out.dtype == np.float32
    assert np.abs(out - expected).max() < 1e-5


def test_a_reset_cache_reproduces_the_first_run():
    rng = np.random.default_rng(5)
    layers, x = tiny_stack(6), randn(rng, 12, D)
    cos, sin = rope_tables(Dh, 16)
    cache = KVCache(N_LAYERS, 16, K, Dh)
    first = np.concatenate([cached_pass(x[:4], layers, cache, cos, sin)] +
                           [cached_pass(x[t:t + 1], layers, cache, cos, sin) for t in range(4, 12)])
    cache.reset()
    second = np.concatenate([cached_pass(x[:4], layers, cache, cos, sin)] +
                            [cached_pass(x[t:t + 1], layers, cache, cos, sin) for t in range(4, 12)])
    assert np.array_equal(first, second)


def test_cached_self_attention_with_an_empty_cache_is_day3_self_attention():
    rng = np.random.default_rng(8)
    (wq, wk, wv, wo), x = tiny_stack(9)[0], randn(rng, 11, D)
    cos, sin = rope_tables(Dh, 16)
    cache = KVCache(N_LAYERS, 16, K, Dh)
    out = cached_self_attention(x, wq, wk, wv, wo, cos, sin, H, K, cache, 1)
    expected = self_attention(x, wq, wk, wv, wo, cos, sin, np.arange(11), H, K)
    assert out.shape == (11, D) and out.dtype == np.float32
    assert np.abs(out - expected).max() < 1e-6
    assert cache.pos == 0 and cache.written.tolist() == [0, 11]  # wrote layer 1; advancing is the caller's job
    assert cache.keys[1, :11].any() and not cache.keys[0].any()


def test_cached_self_attention_uses_the_cache_positions_and_collects_maps():
    rng = np.random.default_rng(10)
    (wq, wk, wv, wo), x = tiny_stack(11)[0], randn(rng, 9, D)
    cos, sin = rope_tables(Dh, 16)
    full_maps, step_maps = [], []
    full = cached_self_attention(x, wq, wk, wv, wo, cos, sin, H, K, KVCache(1, 16, K, Dh), 0, full_maps)
    cache = KVCache(1, 16, K, Dh)
    cached_self_attention(x[:6], wq, wk, wv, wo, cos, sin, H, K, cache, 0)
    cache.advance(6)
    step = cached_self_attention(x[6:], wq, wk, wv, wo, cos, sin, H, K, cache, 0, step_maps)  # positions 6, 7, 8
    assert np.abs(step - full[6:]).max() < 1e-6
    assert full_maps[0].shape == (H, 9, 9) and step_maps[0].shape == (H, 3, 9) and step_maps[0].dtype == np.float32
    assert np.abs(step_maps[0] - full_maps[0][:, 6:]).max() < 1e-6


# --- arguments of the wrong type are refused by name, before anything changes -----------------------

@pytest.mark.parametrize("bad", [dict(n_kv_heads=2.5), dict(n_layers=True), dict(max_seq_len="8"),
                                 dict(head_dim=np.float32(4)), dict(max_seq_len=None)])
def test_constructor_rejects_sizes_that_are_not_integers(bad):
    sizes = dict(n_layers=2, max_seq_len=8, n_kv_heads=2, head_dim=4) | bad
    name = next(iter(bad))
    with pytest.raises(TypeError, match=re.escape(f"KVCache: {name} must be an integer, got {bad[name]!r}")):
        KVCache(**sizes)


def test_numpy_integer_sizes_make_the_same_cache():
    cache = KVCache(np.int64(2), np.int32(8), np.uint8(2), np.int16(4))
    assert cache.keys.shape == (2, 8, 2, 4) and cache.keys.dtype == np.float32


def snapshot(cache):
    return cache.keys.copy(), cache.values.copy(), cache.pos, cache.written.copy()


def assert_unchanged(cache, before):
    keys, values, pos, written = before
    np.testing.assert_array_equal(cache.keys, keys)
    np.testing.assert_array_equal(cache.values, values)
    assert cache.pos == pos
    np.testing.assert_array_equal(cache.written, written)


@pytest.mark.parametrize("layer, error, match", [(True, TypeError, "layer must be an integer, got True"),
                                                 (0.0, TypeError, "layer must be an integer, got 0.0"),
                                                 ("0", TypeError, "layer must be an integer, got '0'")])
def test_update_rejects_a_layer_that_is_not_an_integer_and_writes_nothing(layer, error, match):
    cache = KVCache(2, 8, 2, 4)
    before = snapshot(cache)
    with pytest.raises(error, match=f"KVCache.update: {match}"):
        cache.update(layer, np.ones((1, 2, 4), np.float32), np.ones((1, 2, 4), np.float32))
    assert_unchanged(cache, before)


@pytest.mark.parametrize("k, name, dtype", [(np.ones((1, 2, 4), bool), "k", "bool"),
                                            (np.ones((1, 2, 4), complex), "k", "complex128")])
def test_update_rejects_keys_that_are_not_real_numbers(k, name, dtype):
    cache = KVCache(2, 8, 2, 4)
    before = snapshot(cache)
    with pytest.raises(TypeError, match=f"{name} must hold real numbers .*{dtype}"):
        cache.update(0, k, np.ones((1, 2, 4), np.float32))
    assert_unchanged(cache, before)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int64])
def test_update_stores_float32_whatever_it_is_given(dtype):
    cache = KVCache(1, 8, 2, 4)
    k = (3 * np.random.default_rng(5).standard_normal((2, 2, 4))).astype(dtype)
    keys, values = cache.update(0, k, k)
    assert keys.dtype == values.dtype == np.float32
    np.testing.assert_array_equal(keys, k.astype(np.float32))


@pytest.mark.parametrize("n", [1.0, True, np.float64(1), "1"])
def test_advance_rejects_a_count_that_is_not_an_integer(n):
    # advance(1.0) used to make pos the float 1.0; advance(True) moved by one
    cache = KVCache(1, 8, 1, 2)
    cache.update(0, np.ones((1, 1, 2), np.float32), np.ones((1, 1, 2), np.float32))
    before = snapshot(cache)
    with pytest.raises(TypeError, match=re.escape(f"KVCache.advance: n must be an integer, got {n!r}")):
        cache.advance(n)
    assert_unchanged(cache, before)


def test_advance_by_a_numpy_integer_keeps_pos_a_python_int():
    cache = KVCache(1, 8, 1, 2)
    cache.update(0, np.ones((2, 1, 2), np.float32), np.ones((2, 1, 2), np.float32))
    cache.advance(np.int64(2))
    assert cache.pos == 2 and type(cache.pos) is int


def test_cached_self_attention_rejects_a_cache_that_is_not_a_kvcache():
    wq = np.ones((8, 8), np.float32)
    cos, sin = rope_tables(4, 8)
    for bad in (None, {"keys": None}, np.zeros((1, 8, 2, 4), np.float32)):
        with pytest.raises(TypeError, match="cached_self_attention: cache must be a KVCache, got"):
            cached_self_attention(np.ones((2, 8), np.float32), wq, wq, wq, wq, cos, sin, 2, 2, bad, 0)


def test_cached_self_attention_rejects_maps_that_is_not_a_list_before_writing():
    wq = np.ones((8, 8), np.float32)
    cos, sin = rope_tables(4, 8)
    cache = KVCache(1, 8, 2, 4)
    before = snapshot(cache)
    with pytest.raises(TypeError, match="maps must be None or a list to append to, got tuple"):
        cached_self_attention(np.ones((2, 8), np.float32), wq, wq, wq, wq, cos, sin, 2, 2, cache, 0, maps=())
    assert_unchanged(cache, before)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_cached_self_attention_computes_in_float32(dtype):
    rng = np.random.default_rng(6)
    D_, H_, Dh_ = 16, 2, 8
    ws = [randn(rng, D_, D_) / np.float32(4) for _ in range(4)]
    cos, sin = rope_tables(Dh_, 8)
    x = randn(rng, 3, D_)
    ours = cached_self_attention(x.astype(dtype), *[w.astype(dtype) for w in ws], cos, sin, H_, H_, KVCache(1, 8, H_, Dh_), 0)
    as32 = cached_self_attention(x.astype(dtype).astype(np.float32), *[w.astype(dtype).astype(np.float32) for w in ws],
                                 cos, sin, H_, H_, KVCache(1, 8, H_, Dh_), 0)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, as32)


def test_each_heads_positions_are_contiguous_behind_the_position_first_view():
    cache = KVCache(2, 16, 4, 8)  # seen as [n_layers, max_seq_len, K, Dh], stored [n_layers, K, max_seq_len, Dh]
    assert cache.keys.shape == cache.values.shape == (2, 16, 4, 8)
    for a in (cache.keys, cache.values):
        assert a.strides == (4 * 16 * 8 * 4, 8 * 4, 16 * 8 * 4, 4)  # position after position within a head
        assert a[1, :, 2].flags.c_contiguous  # layer 1, head 2: all 16 positions, one block
    k = np.arange(3 * 4 * 8, dtype=np.float32).reshape(3, 4, 8)
    keys, _ = cache.update(1, k, -k)
    np.testing.assert_array_equal(keys, k)  # read back through the same view as written
    np.testing.assert_array_equal(cache.keys[1, :3, 2], k[:, 2])
