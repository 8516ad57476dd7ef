"""The model: weights checks, forward shapes and dtype, cached == uncached, parity with the PyTorch reference.

Small random configs (grouped-query, multi-query, multi-head untied) keep every test fast. The
weights are drawn with std 0.2 rather than 0.02, so that attention is far from uniform and a wrong
position, mask or cache entry changes the logits visibly.
"""

import numpy as np
import pytest
import torch

import tinyllm_lab.kv_cache
import tinyllm_lab.model
from tinyllm_lab.attention import causal_mask, self_attention
from tinyllm_lab.config import ModelConfig
from tinyllm_lab.ffn import swiglu
from tinyllm_lab.kv_cache import KVCache
from tinyllm_lab.model import LayerWeights, Model, ModelWeights, block, check_weights, expected_shapes, random_weights
from tinyllm_lab.ops import rms_norm

SMALL = dict(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, hidden_dim=64, vocab_size=97, max_seq_len=80)
CONFIGS = {
    "gqa": ModelConfig(**SMALL),                                            # K = 2 kv heads for H = 4
    "mqa": ModelConfig(**{**SMALL, "n_kv_heads": 1}),                       # one kv head for all
    "mha-untied": ModelConfig(**{**SMALL, "n_kv_heads": 4, "n_layers": 3, "tie_embeddings": False}),
}


def make_model(config, seed=0, std=0.2):
    return Model(config, random_weights(config, np.random.default_rng(seed), std=std))


def tokens(n, config, seed=1):
    return np.random.default_rng(seed).integers(0, config.vocab_size, size=n)


@pytest.fixture(params=list(CONFIGS), scope="module")
def model(request):
    return make_model(CONFIGS[request.param])


# ---------------------------------------------------------------------------------------------
# weights

def test_expected_shapes_known_answer():
    shapes = expected_shapes(CONFIGS["gqa"])  # D 32, H 4, K 2, Dh 8, F 64, V 97, 2 layers
    assert len(shapes) == 3 + 9 * 2
    assert shapes["tok_embeddings"] == (97, 32) and shapes["output"] == (97, 32) and shapes["norm"] == (32,)
    assert [shapes[f"layers.1.{n}"] for n in LayerWeights.__dataclass_fields__] == [
        (32,), (32, 32), (16, 32), (16, 32), (32, 32), (32,), (64, 32), (32, 64), (64, 32)]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_random_weights_fit_and_are_seeded(name):
    config = CONFIGS[name]
    w = random_weights(config, np.random.default_rng(3))
    check_weights(config, w)  # does not raise
    again = random_weights(config, np.random.default_rng(3))
    assert all(np.array_equal(getattr(a, f), getattr(b, f)) for a, b in zip(w.layers, again.layers)
               for f in LayerWeights.__dataclass_fields__)
    assert not np.array_equal(random_weights(config, np.random.default_rng(4)).tok_embeddings, w.tok_embeddings)
    assert (w.output is w.tok_embeddings) == config.tie_embeddings
    assert np.all(w.norm == 1) and np.all(w.layers[0].attention_norm == 1) and np.all(w.layers[-1].ffn_norm == 1)
    assert w.layers[0].w1.dtype == np.float32 and abs(w.layers[0].w1.std() - 0.02) < 0.002


def test_check_weights_lists_every_problem():
    config = CONFIGS["gqa"]
    w = random_weights(config, np.random.default_rng(0))
    w.layers[0].wk = np.zeros((32, 32), np.float32)        # 4 kv heads' worth instead of 2
    w.layers[1].w2 = w.layers[1].w2.T.copy()               # transposed
    w.layers[1].attention_norm = np.ones(32)               # float64
    w.norm = None                                          # not an array at all
    w.output = w.tok_embeddings.copy()                     # tied config, but a copy
    with pytest.raises(ValueError) as error:
        check_weights(config, w)
    message = str(error.value)
    assert "(5 problems)" in message
    assert "layers.0.wk: expected float32 (16, 32), found float32 (32, 32)" in message
    assert "layers.1.w2: expected float32 (32, 64), found float32 (64, 32)" in message
    assert "layers.1.attention_norm: expected float32 (32,), found float64 (32,)" in message
    assert "norm: expected float32 (32,), found NoneType" in message
    assert "output: config.tie_embeddings is True" in message
    with pytest.raises(ValueError, match=r"layers\.0\.wk: expected float32 \(16, 32\)"):
        Model(config, w)  # the model refuses them too


def test_check_weights_layer_count():
    config = CONFIGS["gqa"]
    w = random_weights(config, np.random.default_rng(0))
    w.layers = w.layers[:1]
    with pytest.raises(ValueError, match=r"layers: expected 2 LayerWeights \(config.n_layers\), found 1"):
        check_weights(config, w)


def test_untied_config_accepts_any_head_of_the_right_shape():
    config = CONFIGS["mha-untied"]
    w = random_weights(config, np.random.default_rng(0))
    assert w.output is not w.tok_embeddings
    check_weights(config, w)
    w.output = w.tok_embeddings  # sharing the array is allowed too: the config only says what is stored
    check_weights(config, w)


# ---------------------------------------------------------------------------------------------
# forward

@pytest.mark.parametrize("n", [1, 5, 17])
def test_forward_shapes_and_dtype(model, n):
    cache = model.new_cache()
    logits = model.forward(tokens(n, model.config), cache)
    assert logits.shape == (n, model.config.vocab_size) and logits.dtype == np.float32
    assert cache.pos == n and np.isfinite(logits).all()


def test_forward_accepts_lists_and_any_int_dtype(model):
    ids = tokens(6, model.config)
    expected = model.forward(ids, model.new_cache())
    assert np.array_equal(model.forward(ids.tolist(), model.new_cache()), expected)
    assert np.array_equal(model.forward(ids.astype(np.int32), model.new_cache()), expected)


def test_block_with_an_empty_cache_is_day3_attention_then_swiglu():
    config = CONFIGS["gqa"]
    m = make_model(config)
    layer, eps = m.weights.layers[1], config.norm_eps
    x = np.random.default_rng(2).standard_normal((9, config.dim), dtype=np.float32)
    cache = m.new_cache()
    ours = block(x, layer, config, m.cos, m.sin, cache, 1)
    # h = x + attention(attention_norm(x)); out = h + feed_forward(ffn_norm(h)), with day 3's cache-free attention
    h = x + self_attention(rms_norm(x, layer.attention_norm, eps), layer.wq, layer.wk, layer.wv, layer.wo,
                           m.cos, m.sin, np.arange(9), config.n_heads, config.n_kv_heads)
    expected = h + swiglu(rms_norm(h, layer.ffn_norm, eps), layer.w1, layer.w3, layer.w2)
    assert ours.dtype == np.float32 and np.abs(ours - expected).max() < 1e-5
    assert cache.pos == 0 and cache.written.tolist() == [0, 9]  # wrote layer 1's positions 0..8; forward advances


def test_the_model_attends_through_day4_cached_self_attention(model, monkeypatch):
    """One attention path: the model calls the promoted kv_cache.cached_self_attention, once per layer."""
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[10])  # the layer index
        return tinyllm_lab.kv_cache.cached_self_attention(*args, **kwargs)

    monkeypatch.setattr(tinyllm_lab.model, "cached_self_attention", counting)
    seq = tokens(5, model.config)
    logits = model.forward(seq, model.new_cache())
    assert calls == list(range(model.config.n_layers))
    monkeypatch.undo()
    assert np.array_equal(logits, model.forward(seq, model.new_cache()))


@pytest.mark.parametrize("chunks", [[64], [16] + [1] * 48, [1] * 64, [63, 1], [7, 1, 20, 1, 1, 30, 4]],
                         ids=["uncached", "prefill16+decode48", "decode64", "prefill63+1", "uneven"])
def test_cached_equals_uncached(model, chunks):
    """A 64-token sequence fed in pieces through the cache gives the logits of one uncached forward."""
    seq = tokens(sum(chunks), model.config)
    full = model.forward(seq, model.new_cache())  # [64, V]
    cache, start, pieces = model.new_cache(), 0, []
    for n in chunks:
        pieces.append(model.forward(seq[start:start + n], cache))
        start += n
    got = np.concatenate(pieces)
    assert got.shape == full.shape and got.dtype == np.float32 and cache.pos == 64
    assert np.abs(got - full).max() < 1e-5


def test_tokens_out_of_range_raise_and_leave_the_cache(model):
    V = model.config.vocab_size
    cache = model.new_cache()
    model.forward(tokens(4, model.config), cache)
    keys = cache.keys.copy()
    for bad, shown in [([1, V, 2], rf"\[{V}\]"), ([-1], r"\[-1\]"), ([V + 5, -3], rf"\[{V + 5}, -3\]")]:
        with pytest.raises(ValueError, match=rf"token ids {shown} are outside the vocabulary 0\.\.{V - 1}"):
            model.forward(bad, cache)
    assert cache.pos == 4 and np.array_equal(cache.keys, keys)


@pytest.mark.parametrize("bad", [[], [[1, 2]], np.zeros((2, 2), np.int64)])
def test_tokens_must_be_a_nonempty_1d_int_array(model, bad):
    with pytest.raises(ValueError, match="tokens must be a non-empty 1-D array of ints"):
        model.forward(bad, model.new_cache())


@pytest.mark.parametrize("bad, shown", [([1.0, 2.0], "float64"), (np.array([True]), "bool"), ([1, None], "object"),
                                        (np.array([1, 2], np.float32), "float32")])
def test_tokens_that_are_not_integers_raise_a_type_error(model, bad, shown):
    cache = model.new_cache()
    with pytest.raises(TypeError, match=f"forward: tokens must be integer token ids, got {shown}"):
        model.forward(bad, cache)
    assert cache.pos == 0 and not cache.keys.any()


@pytest.mark.parametrize("text", ["To be", b"To be"])
def test_text_instead_of_ids_says_to_encode_it_first(model, text):
    with pytest.raises(TypeError, match=r"forward: tokens must be token ids, got the text .*To be.*tokenizer\.encode\(text\)"):
        model.forward(text, model.new_cache())


@pytest.mark.parametrize("cache", [None, "cache", np.zeros((2, 80, 2, 8), np.float32)])
def test_a_cache_that_is_not_a_kvcache_raises_a_type_error(model, cache):
    with pytest.raises(TypeError, match="forward: cache must be a KVCache \\(model.new_cache\\(\\)\\), got"):
        model.forward([1, 2], cache)


def test_maps_that_is_not_a_list_is_refused_before_anything_is_written(model):
    cache = model.new_cache()
    with pytest.raises(TypeError, match="forward: maps must be None or a list to append to, got dict"):
        model.forward([1, 2], cache, maps={})
    assert cache.pos == 0 and not cache.keys.any() and not cache.written.any()


def test_a_half_written_cache_is_refused_by_name(model):
    # a forward that failed half-way (or a layer written by hand) leaves written != pos: refuse it, don't build on it
    cache = model.new_cache()
    c = model.config
    cache.update(0, np.ones((3, c.n_kv_heads, c.head_dim), np.float32), np.ones((3, c.n_kv_heads, c.head_dim), np.float32))
    with pytest.raises(ValueError, match=r"forward: the cache is half-written \(layers wrote up to \[3, 0.*pos = 0\): "
                                         r"call cache.reset\(\)"):
        model.forward([1, 2], cache)
    cache.reset()
    assert model.forward([1, 2], cache).shape == (2, c.vocab_size)


@pytest.mark.parametrize("config", [None, {"dim": 32}, "gqa"])
def test_model_refuses_a_config_that_is_not_a_model_config(config):
    weights = random_weights(CONFIGS["gqa"], np.random.default_rng(0))
    with pytest.raises(TypeError, match="config must be a ModelConfig, got"):
        Model(config, weights)


@pytest.mark.parametrize("weights", [None, {"tok_embeddings": 1}, [1, 2]])
def test_model_refuses_weights_that_are_not_model_weights(weights):
    with pytest.raises(TypeError, match="weights must be a ModelWeights, got"):
        Model(CONFIGS["gqa"], weights)


def test_check_weights_refuses_layers_that_are_not_a_list_and_names_a_malformed_layer():
    config = CONFIGS["gqa"]
    weights = random_weights(config, np.random.default_rng(0))
    weights.layers = {0: weights.layers[0]}
    with pytest.raises(TypeError, match="weights.layers must be a list of LayerWeights, got dict"):
        check_weights(config, weights)
    weights = random_weights(config, np.random.default_rng(0))
    weights.layers[1] = "layer one"
    with pytest.raises(ValueError, match=r"layers\.1: expected a LayerWeights, found str"):
        check_weights(config, weights)


@pytest.mark.parametrize("rng, std, error, match", [
    (42, 0.02, TypeError, "rng must be a np.random.Generator"),
    (np.random.RandomState(0), 0.02, TypeError, "rng must be a np.random.Generator"),
    (np.random.default_rng(0), "0.02", TypeError, "std must be a number"),
    (np.random.default_rng(0), True, TypeError, "std must be a number"),
    (np.random.default_rng(0), -0.02, ValueError, "std must be finite and >= 0"),
    (np.random.default_rng(0), float("nan"), ValueError, "std must be finite and >= 0"),
])
def test_random_weights_checks_its_arguments(rng, std, error, match):
    with pytest.raises(error, match=f"random_weights: {match}"):
        random_weights(CONFIGS["gqa"], rng, std)


def test_overflow_raises_without_corrupting_the_cache(model):
    limit = model.config.max_seq_len  # 80
    seq = tokens(limit, model.config)
    cache = model.new_cache()
    first = model.forward(seq[:limit - 3], cache)
    keys, values = cache.keys.copy(), cache.values.copy()
    with pytest.raises(ValueError, match=rf"4 tokens at positions 77\.\.80 do not fit max_seq_len = {limit}"):
        model.forward(seq[limit - 3:limit + 1].tolist() + [0], cache)
    assert cache.pos == limit - 3
    assert np.array_equal(cache.keys, keys) and np.array_equal(cache.values, values)
    # the cache still works: the last 3 positions fill it exactly, as if nothing had happened
    last = model.forward(seq[limit - 3:], cache)
    full = model.forward(seq, model.new_cache())
    assert cache.pos == limit and np.abs(np.concatenate([first, last]) - full).max() < 1e-5
    with pytest.raises(ValueError, match="1 tokens at positions 80..80 do not fit"):
        model.forward([0], cache)


def test_a_cache_of_another_shape_is_refused(model):
    c = model.config
    with pytest.raises(ValueError, match=r"the cache has shape .* use model.new_cache\(\)"):
        model.forward([1, 2], KVCache(c.n_layers, c.max_seq_len, c.n_kv_heads, c.head_dim * 2))


def test_attention_maps_are_collected(model):
    c = model.config
    seq = tokens(12, c)
    maps = []
    logits = model.forward(seq, model.new_cache(), maps=maps)
    assert np.array_equal(logits, model.forward(seq, model.new_cache()))  # asking for maps changes nothing
    assert len(maps) == c.n_layers
    for m in maps:
        assert m.shape == (c.n_heads, 12, 12) and m.dtype == np.float32
        assert np.allclose(m.sum(-1), 1, atol=1e-6) and not m[:, ~causal_mask(12, 12)].any()
    # a decode step's map is the last row of the prefill map over the same 12 tokens
    cache, step_maps = model.new_cache(), []
    model.forward(seq[:11], cache)
    model.forward(seq[11:], cache, maps=step_maps)
    assert [m.shape for m in step_maps] == [(c.n_heads, 1, 12)] * c.n_layers
    assert max(np.abs(s[:, 0] - m[:, -1]).max() for s, m in zip(step_maps, maps)) < 1e-6


# ---------------------------------------------------------------------------------------------
# parity with the PyTorch reference (an independent nn.Module implementation)

REFERENCE_NAMES = {"attention_norm": "attention_norm.weight", "wq": "attention.wq.weight",
                   "wk": "attention.wk.weight", "wv": "attention.wv.weight", "wo": "attention.wo.weight",
                   "ffn_norm": "ffn_norm.weight", "w1": "feed_forward.w1.weight",
                   "w2": "feed_forward.w2.weight", "w3": "feed_forward.w3.weight"}


def to_reference(config, weights):  # ModelWeights -> reference.Transformer with the same numbers
    from tinyllm_lab import reference

    state = {"tok_embeddings.weight": weights.tok_embeddings, "norm.weight": weights.norm,
             "output.weight": weights.output}
    for i, layer in enumerate(weights.layers):
        state.update({f"layers.{i}.{ref}": getattr(layer, ours) for ours, ref in REFERENCE_NAMES.items()})
    ref = reference.Transformer(config)
    ref.load_state_dict({name: torch.from_numpy(w) for name, w in state.items()})
    return ref.eval()


def test_matches_pytorch_reference(model):
    ref = to_reference(model.config, model.weights)
    seq = tokens(40, model.config)
    with torch.inference_mode():
        ref_full = ref(torch.from_numpy(seq)[None])[0].numpy()
        ref_steps = [ref(torch.from_numpy(seq[:10])[None], 0)[0]]
        ref_steps += [ref(torch.from_numpy(seq[t:t + 1])[None], t)[0] for t in range(10, 40)]
    cache = model.new_cache()
    ours_steps = [model.forward(seq[:10], cache)] + [model.forward(seq[t:t + 1], cache) for t in range(10, 40)]
    ours_full = model.forward(seq, model.new_cache())
    assert ours_full.dtype == np.float32 and ref_full.dtype == np.float32
    assert np.abs(ours_full - ref_full).max() < 1e-5
    assert np.abs(np.concatenate(ours_steps) - torch.cat(ref_steps).numpy()).max() < 1e-5


def test_model_weights_dataclass_fields():  # the field names the loader and the reference mapping rely on
    assert list(ModelWeights.__dataclass_fields__) == ["tok_embeddings", "layers", "norm", "output"]
    assert list(LayerWeights.__dataclass_fields__) == list(REFERENCE_NAMES)


def test_a_huge_token_id_is_out_of_the_vocabulary(model):
    cache = model.new_cache()
    with pytest.raises(ValueError, match=r"forward: token ids \[1180591620717411303424\] are outside the vocabulary"):
        model.forward([2**70], cache)
    assert cache.pos == 0


# ---------------------------------------------------------------------------------------------
# memory order (issue 11): the head stored column-major, same shapes and values, the caller's weights untouched

@pytest.mark.parametrize("name", ["gqa", "mha-untied"])
def test_model_stores_the_head_column_major_with_the_same_shape_and_values(name):
    config = CONFIGS[name]
    weights = random_weights(config, np.random.default_rng(0), std=0.2)
    head_before = weights.output.copy()
    model = Model(config, weights)
    head = model.weights.output
    assert head.shape == (config.vocab_size, config.dim) and head.dtype == np.float32
    assert head.flags.f_contiguous and head.T.flags.c_contiguous  # x @ head.T reads head.T row by row
    np.testing.assert_array_equal(head, head_before)
    assert weights.output.flags.c_contiguous and weights.output is not head  # the caller's ModelWeights as given
    if config.tie_embeddings:
        assert model.weights.tok_embeddings is head  # still tied: one array
    else:
        assert model.weights.tok_embeddings is weights.tok_embeddings
    assert model.weights.layers is weights.layers and model.weights.norm is weights.norm  # nothing else copied
    check_weights(config, model.weights)

