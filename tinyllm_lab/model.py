# Promoted from notebooks/day5_model_session.ipynb by `python -m tinyllm_lab.promote`.
# Do not edit here: edit the notebook's `#| promote: model` cells and promote again.

"""Day 5 the transformer: pre-norm blocks, the forward pass from token ids to logits.

Follows Meta's llama/model.py and llama2.c's `forward`: embedding -> n_layers blocks ->
final RMSNorm -> output head. One code path for a prompt of many tokens (prefill) and for one
token at a time (decode): both write their keys and values into the KV cache and attend to
everything cached so far.

Arguments are checked before anything is written: a config or weights of the wrong kind, or a
cache that is not a KVCache, raise TypeError; token ids that are text, not integers, outside the
vocabulary or past max_seq_len raise TypeError / ValueError saying which, and the cache is unchanged.
"""

from dataclasses import dataclass

import numpy as np

from tinyllm_lab.ffn import swiglu
from tinyllm_lab.kv_cache import KVCache, cached_self_attention
from tinyllm_lab.ops import linear, rms_norm
from tinyllm_lab.rope import rope_tables


@dataclass
class LayerWeights:
    attention_norm: np.ndarray  # [D]       RMSNorm weight before attention
    wq: np.ndarray              # [H*Dh, D] query projection
    wk: np.ndarray              # [K*Dh, D] key projection
    wv: np.ndarray              # [K*Dh, D] value projection
    wo: np.ndarray              # [D, H*Dh] output projection
    ffn_norm: np.ndarray        # [D]       RMSNorm weight before the feed-forward
    w1: np.ndarray              # [F, D]    gate projection (HF gate_proj)
    w2: np.ndarray              # [D, F]    down projection (HF down_proj)
    w3: np.ndarray              # [F, D]    up projection   (HF up_proj)


@dataclass
class ModelWeights:
    tok_embeddings: np.ndarray  # [V, D]
    layers: list                # n_layers LayerWeights
    norm: np.ndarray            # [D]       final RMSNorm weight
    output: np.ndarray          # [V, D]    output head (the tok_embeddings array itself when tied)


_CONFIG_FIELDS = ("dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "hidden_dim", "vocab_size", "max_seq_len",
                 "norm_eps", "rope_theta", "tie_embeddings")


def _check_config(config):  # TypeError unless config looks like a ModelConfig (a learner's own class is welcome)
    if not all(hasattr(config, name) for name in _CONFIG_FIELDS):
        raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")


def expected_shapes(config):  # -> {name: shape}
    """The shape of every weight `config` needs, named like the fields: `{"tok_embeddings": (V, D), "layers.0.wq": (H*Dh, D), ...}`."""
    _check_config(config)
    c = config
    q, kv = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    layer = {"attention_norm": (c.dim,), "wq": (q, c.dim), "wk": (kv, c.dim), "wv": (kv, c.dim), "wo": (c.dim, q),
             "ffn_norm": (c.dim,), "w1": (c.hidden_dim, c.dim), "w2": (c.dim, c.hidden_dim), "w3": (c.hidden_dim, c.dim)}
    shapes = {"tok_embeddings": (c.vocab_size, c.dim)}
    for i in range(c.n_layers):
        shapes.update({f"layers.{i}.{name}": shape for name, shape in layer.items()})
    shapes.update({"norm": (c.dim,), "output": (c.vocab_size, c.dim)})
    return shapes


def check_weights(config, weights):
    """Raise one ValueError listing every weight that does not fit `config` (shape, dtype, layer count, tying).

    TypeError if `config` is not a ModelConfig or `weights` not a ModelWeights (with `layers` a list).
    """
    _check_config(config)
    if not all(hasattr(weights, name) for name in ModelWeights.__dataclass_fields__):
        raise TypeError(f"weights must be a ModelWeights, got {type(weights).__name__}")
    if not isinstance(weights.layers, (list, tuple)):
        raise TypeError(f"weights.layers must be a list of LayerWeights, got {type(weights.layers).__name__}")
    problems = []
    if len(weights.layers) != config.n_layers:
        problems.append(f"layers: expected {config.n_layers} LayerWeights (config.n_layers), found {len(weights.layers)}")
    found = {"tok_embeddings": weights.tok_embeddings, "norm": weights.norm, "output": weights.output}
    for i, layer in enumerate(weights.layers):
        if not all(hasattr(layer, name) for name in LayerWeights.__dataclass_fields__):
            problems.append(f"layers.{i}: expected a LayerWeights, found {type(layer).__name__}")
            continue
        found.update({f"layers.{i}.{name}": getattr(layer, name) for name in LayerWeights.__dataclass_fields__})
    for name, shape in expected_shapes(config).items():
        if name not in found:
            continue  # in a missing or malformed layer: reported above
        w = found[name]
        if not isinstance(w, np.ndarray) or w.shape != shape or w.dtype != np.float32:
            what = f"{w.dtype} {w.shape}" if isinstance(w, np.ndarray) else type(w).__name__
            problems.append(f"{name}: expected float32 {shape}, found {what}")
    if config.tie_embeddings and weights.output is not weights.tok_embeddings:
        problems.append("output: config.tie_embeddings is True, so output must be the tok_embeddings array itself")
    if problems:
        raise ValueError(f"weights do not fit the config ({len(problems)} problems):\n  " + "\n  ".join(problems))


def random_weights(config, rng, std=0.02):  # -> ModelWeights
    """Untrained weights for `config`: matrices ~ N(0, std^2) in float32, norm weights 1, the head tied if the config says so.

    Drawn from `rng` (a seeded `np.random.Generator`) in `expected_shapes` order: the same seed gives the same model.
    TypeError for an rng that is not a Generator or a std that is not a number; ValueError unless std is finite, >= 0.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"random_weights: rng must be a np.random.Generator (np.random.default_rng(seed)), got {rng!r}")
    if isinstance(std, bool) or not isinstance(std, (int, float, np.integer, np.floating)):
        raise TypeError(f"random_weights: std must be a number, got {std!r}")
    if not 0 <= std < np.inf:
        raise ValueError(f"random_weights: std must be finite and >= 0, got {std!r}")
    shapes = expected_shapes(config)

    def draw(name):  # the weight `name` (shape from expected_shapes): a norm weight of ones, or a matrix ~ N(0, std^2)
        shape = shapes[name]
        if len(shape) == 1:
            return np.ones(shape, np.float32)
        return rng.standard_normal(shape, np.float32) * np.float32(std)

    def layer(i):  # LayerWeights of block i, every field by name
        p = f"layers.{i}."
        return LayerWeights(attention_norm=draw(p + "attention_norm"), wq=draw(p + "wq"), wk=draw(p + "wk"),
                            wv=draw(p + "wv"), wo=draw(p + "wo"), ffn_norm=draw(p + "ffn_norm"),
                            w1=draw(p + "w1"), w2=draw(p + "w2"), w3=draw(p + "w3"))

    embeddings = draw("tok_embeddings")
    layers = [layer(i) for i in range(config.n_layers)]
    output = embeddings if config.tie_embeddings else draw("output")  # tied: the head is the embedding matrix itself
    return ModelWeights(tok_embeddings=embeddings, layers=layers, norm=draw("norm"), output=output)


def block(x, layer, config, cos, sin, cache, i, maps=None):  # [T, D] -> [T, D]
    """Pre-norm transformer block i: `h = x + attn(norm(x))`, `out = h + ffn(norm(h))`, writing layer i of `cache`.

    Meta: `h = x + self.attention(self.attention_norm(x), ...)`, `out = h + self.feed_forward(self.ffn_norm(h))`.
    A list `maps` collects the attention probabilities [H, T, S] (see `cached_self_attention`).
    """
    a = cached_self_attention(rms_norm(x, layer.attention_norm, config.norm_eps), layer.wq, layer.wk, layer.wv,
                              layer.wo, cos, sin, config.n_heads, config.n_kv_heads, cache, i, maps)
    h = x + a
    return h + swiglu(rms_norm(h, layer.ffn_norm, config.norm_eps), layer.w1, layer.w3, layer.w2)


def _with_column_major_head(weights):  # -> ModelWeights, same arrays, the output head [V, D] column-major
    # The output head [V, D] is the biggest product of a decode step (16 of the course model's 24 MiB).
    # Stored column-major (np.asfortranarray: the same shape and values, another order in memory),
    # `x @ output.T` reads output.T row after row, which BLAS streams fastest. Tied, the embedding is
    # that same array (a lookup then gathers one strided row per token: a negligible cost).
    head = np.asfortranarray(weights.output)
    embeddings = head if weights.output is weights.tok_embeddings else weights.tok_embeddings
    return ModelWeights(tok_embeddings=embeddings, layers=weights.layers, norm=weights.norm, output=head)


def _token_ids(tokens):  # -> np.ndarray; TypeError for text instead of token ids
    if isinstance(tokens, (str, bytes)):
        raise TypeError(f"forward: tokens must be token ids, got the text {tokens[:40]!r}: encode it first, "
                        f"e.g. tokens = tokenizer.encode(text)")
    return np.asarray(tokens)


def _check_forward_args(c, tokens, cache, maps):  # config, [T] -> raise unless the types, ids and cache shape fit
    if not isinstance(cache, KVCache):
        raise TypeError(f"forward: cache must be a KVCache (model.new_cache()), got {type(cache).__name__}")
    if maps is not None and not isinstance(maps, list):
        raise TypeError(f"forward: maps must be None or a list to append to, got {type(maps).__name__}")
    if tokens.dtype == object and all(isinstance(t, int) and not isinstance(t, bool) for t in tokens.flat):
        raise ValueError(f"forward: token ids {tokens.tolist()[:10]} are outside the vocabulary 0..{c.vocab_size - 1}")
    if tokens.size and not np.issubdtype(tokens.dtype, np.integer):  # bool, float, text, objects: not token ids
        raise TypeError(f"forward: tokens must be integer token ids, got {tokens.dtype} {tokens.shape}")
    if tokens.ndim != 1 or tokens.size == 0:
        raise ValueError(f"forward: tokens must be a non-empty 1-D array of ints, got {tokens.dtype} {tokens.shape}")
    bad = tokens[(tokens < 0) | (tokens >= c.vocab_size)]
    if bad.size:
        raise ValueError(f"forward: token ids {bad.tolist()} are outside the vocabulary 0..{c.vocab_size - 1}")
    if cache.keys.shape != (c.n_layers, c.max_seq_len, c.n_kv_heads, c.head_dim):
        raise ValueError(f"forward: the cache has shape {cache.keys.shape}, this model needs "
                         f"{(c.n_layers, c.max_seq_len, c.n_kv_heads, c.head_dim)}: use model.new_cache()")


class Model:
    """A LLaMA-style decoder: config + weights + RoPE tables. `forward` maps token ids to logits.

    Llama: `Transformer.forward`; llama2.c: `forward(transformer, token, pos)`.
    """

    def __init__(self, config, weights):
        check_weights(config, weights)  # TypeError / ValueError naming what does not fit
        weights = _with_column_major_head(weights)  # the same arrays, the head column-major (see there)
        self.config, self.weights = config, weights
        self.cos, self.sin = rope_tables(config.head_dim, config.max_seq_len, config.rope_theta)  # [S_max, Dh/2]

    def new_cache(self):  # -> an empty KVCache sized for this model
        c = self.config
        return KVCache(c.n_layers, c.max_seq_len, c.n_kv_heads, c.head_dim)

    def forward(self, tokens, cache, maps=None):  # [T] int, KVCache -> [T, V] float32
        """Logits for each of `tokens`, which continue the sequence already in `cache` (prefill or decode).

        Writes the tokens' keys and values into `cache` and advances it by T. Pass a list as
        `maps` to collect each layer's attention probabilities [H, T, S]. Checked first, the cache
        untouched on error: TypeError for text instead of ids, non-integer ids, a cache that is not
        a KVCache or maps that is not a list; ValueError for ids outside the vocabulary, a cache of
        another shape, a half-written cache, or more tokens than max_seq_len leaves room for.
        """
        tokens = _token_ids(tokens)  # TypeError for text
        self._check_inputs(tokens, cache, maps)
        w = self.weights
        x = w.tok_embeddings[tokens]                                   # [T, D]
        for i, layer in enumerate(w.layers):
            x = block(x, layer, self.config, self.cos, self.sin, cache, i, maps)
        cache.advance(len(tokens))                                     # every layer wrote: move on
        return linear(rms_norm(x, w.norm, self.config.norm_eps), w.output)  # [T, V]

    def _check_inputs(self, tokens, cache, maps):  # raise before any layer writes into the cache
        c = self.config
        _check_forward_args(c, tokens, cache, maps)  # types, token ids, the cache's shape
        if (cache.written != cache.pos).any():  # an earlier forward stopped half-way (an exception in a layer)
            raise ValueError(f"forward: the cache is half-written (layers wrote up to {cache.written.tolist()}, "
                             f"pos = {cache.pos}): call cache.reset() or use model.new_cache()")
        if cache.pos + len(tokens) > c.max_seq_len:
            raise ValueError(f"forward: {len(tokens)} tokens at positions {cache.pos}..{cache.pos + len(tokens) - 1} "
                             f"do not fit max_seq_len = {c.max_seq_len}")
