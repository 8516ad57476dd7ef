# Promoted from notebooks/day5_model_session.ipynb by `python -m tinyllm_lab.promote`.
# Do not edit here: edit the notebook's `#| promote: model` cells and promote again.

"""Day 5 the transformer: pre-norm blocks, the forward pass from token ids to logits.

Follows Meta's llama/model.py and llama2.c's `forward`: embedding -> n_layers blocks ->
final RMSNorm -> output head. One code path for a prompt of many tokens (prefill) and for one
token at a time (decode): both write their keys and values into the KV cache and attend to
everything cached so far.
"""

from dataclasses import dataclass

import numpy as np

from tinyllm_lab.attention import attention, attention_weights, causal_mask, merge_heads, split_heads
from tinyllm_lab.config import ModelConfig
from tinyllm_lab.ffn import swiglu
from tinyllm_lab.kv_cache import KVCache
from tinyllm_lab.ops import linear, rms_norm
from tinyllm_lab.rope import apply_rope, rope_tables


@dataclass
class LayerWeights:
    attention_norm: np.ndarray  # [D]      RMSNorm weight before attention
    wq: np.ndarray              # [H*Dh, D] query projection
    wk: np.ndarray              # [K*Dh, D] key projection
    wv: np.ndarray              # [K*Dh, D] value projection
    wo: np.ndarray              # [D, H*Dh] output projection
    ffn_norm: np.ndarray        # [D]      RMSNorm weight before the feed-forward
    w1: np.ndarray              # [F, D]   gate projection (HF gate_proj)
    w2: np.ndarray              # [D, F]   down projection (HF down_proj)
    w3: np.ndarray              # [F, D]   up projection   (HF up_proj)


@dataclass
class ModelWeights:
    tok_embeddings: np.ndarray  # [V, D]
    layers: list                # n_layers LayerWeights
    norm: np.ndarray            # [D]      final RMSNorm weight
    output: np.ndarray          # [V, D]   output head (the same array as tok_embeddings when tied)


def expected_shapes(config):
    """{name: shape} of every weight the config needs, named like `layers.0.wq`."""
    c = config
    shapes = {"tok_embeddings": (c.vocab_size, c.dim), "norm": (c.dim,), "output": (c.vocab_size, c.dim)}
    for i in range(c.n_layers):
        shapes.update({f"layers.{i}.attention_norm": (c.dim,), f"layers.{i}.wq": (c.n_heads * c.head_dim, c.dim),
                       f"layers.{i}.wk": (c.n_kv_heads * c.head_dim, c.dim), f"layers.{i}.wv": (c.n_kv_heads * c.head_dim, c.dim),
                       f"layers.{i}.wo": (c.dim, c.n_heads * c.head_dim), f"layers.{i}.ffn_norm": (c.dim,),
                       f"layers.{i}.w1": (c.hidden_dim, c.dim), f"layers.{i}.w2": (c.dim, c.hidden_dim),
                       f"layers.{i}.w3": (c.hidden_dim, c.dim)})
    return shapes


def check_weights(config, weights):
    """Raise one ValueError listing every weight whose shape or dtype is not what `config` needs."""
    found = {"tok_embeddings": weights.tok_embeddings, "norm": weights.norm, "output": weights.output}
    if len(weights.layers) != config.n_layers:
        raise ValueError(f"weights have {len(weights.layers)} layers, config.n_layers = {config.n_layers}")
    for i, layer in enumerate(weights.layers):
        found.update({f"layers.{i}.{name}": getattr(layer, name) for name in LayerWeights.__dataclass_fields__})
    problems = [f"{name}: expected float32 {shape}, found {found[name].dtype} {found[name].shape}"
                for name, shape in expected_shapes(config).items()
                if found[name].shape != shape or found[name].dtype != np.float32]
    if problems:
        raise ValueError("weights do not fit the config:\n  " + "\n  ".join(problems))


def attention_block(x, layer, config, cos, sin, cache, i, maps=None):  # [T, D] -> [T, D]
    """Multi-head causal self-attention for layer i, reading and extending the KV cache.

    If `maps` is a list, the attention probabilities [H, T, S] of this layer are appended to it
    (for plots; computed again, so only when asked).

    torch: `self.wo(F.scaled_dot_product_attention(q, k, v, is_causal=True))`, with RoPE on q, k.
    """
    T, start = x.shape[0], cache.pos
    positions = np.arange(start, start + T)                           # absolute positions of the new tokens
    q = apply_rope(split_heads(linear(x, layer.wq), config.n_heads), cos, sin, positions)     # [T, H, Dh]
    k = apply_rope(split_heads(linear(x, layer.wk), config.n_kv_heads), cos, sin, positions)  # [T, K, Dh]
    v = split_heads(linear(x, layer.wv), config.n_kv_heads)                                   # [T, K, Dh]
    keys, values = cache.update(i, k, v)                              # [S, K, Dh] with S = start + T
    mask = causal_mask(T, start + T)                                  # [T, S]
    if maps is not None:
        maps.append(attention_weights(q, keys, mask))
    out = attention(q, keys, values, mask)                            # [T, H, Dh]
    return linear(merge_heads(out), layer.wo)


def block(x, layer, config, cos, sin, cache, i, maps=None):  # [T, D] -> [T, D]
    """One pre-norm transformer block: `h = x + attn(norm(x))`, `out = h + ffn(norm(h))`."""
    h = x + attention_block(rms_norm(x, layer.attention_norm, config.norm_eps), layer, config, cos, sin, cache, i, maps)
    return h + swiglu(rms_norm(h, layer.ffn_norm, config.norm_eps), layer.w1, layer.w3, layer.w2)


class Model:
    """A LLaMA-style decoder: config + weights + RoPE tables. `forward` maps token ids to logits."""

    def __init__(self, config, weights):
        check_weights(config, weights)
        self.config, self.weights = config, weights
        self.cos, self.sin = rope_tables(config.head_dim, config.max_seq_len, config.rope_theta)  # [S_max, Dh/2]

    def new_cache(self):
        c = self.config
        return KVCache(c.n_layers, c.max_seq_len, c.n_kv_heads, c.head_dim)

    def forward(self, tokens, cache, maps=None):  # [T] int, KVCache -> [T, V] float32
        """Logits for each of `tokens`, which continue the sequence already in `cache` (prefill or decode).

        Pass a list as `maps` to collect each layer's attention probabilities [H, T, S].
        """
        tokens = np.asarray(tokens)
        if tokens.ndim != 1 or tokens.size == 0 or not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"forward: tokens must be a non-empty 1-D array of ints, got {tokens.dtype} {tokens.shape}")
        if tokens.min() < 0 or tokens.max() >= self.config.vocab_size:
            bad = tokens[(tokens < 0) | (tokens >= self.config.vocab_size)]
            raise ValueError(f"forward: token ids {bad.tolist()} are outside the vocabulary 0..{self.config.vocab_size - 1}")
        if cache.pos + len(tokens) > self.config.max_seq_len:
            raise ValueError(f"forward: {len(tokens)} tokens at position {cache.pos} would pass "
                             f"max_seq_len = {self.config.max_seq_len}")
        w = self.weights
        x = w.tok_embeddings[tokens]                                   # [T, D]
        for i, layer in enumerate(w.layers):
            x = block(x, layer, self.config, self.cos, self.sin, cache, i, maps)
        cache.advance(len(tokens))                                     # every layer wrote: move on
        return linear(rms_norm(x, w.norm, self.config.norm_eps), w.output)  # [T, V]
