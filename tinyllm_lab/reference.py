"""The PyTorch reference: the course model written the way a PyTorch user would write it.

Hand-written, NOT promoted, and never imported by the numpy engine: `import tinyllm_lab` stays
numpy-only, and only tests, the export, training and the notebooks say
`from tinyllm_lab import reference`. It follows Meta's `llama/model.py` (names, the complex-number
RoPE on interleaved pairs, `forward(tokens, start_pos)` through a preallocated KV cache) and is an
independent second opinion on every number the numpy engine computes.

Shapes (the package alphabet, plus B for the batch): B batch, T tokens in this call, D dim,
H query heads, K key/value heads, Dh head dim, F hidden dim, V vocab, S cached positions.

Hugging Face interop lives here too, in one place: `hf_state_dict` / `from_hf_state_dict` translate
names and apply the one named weight permutation (`interleaved_to_half_split`); `save_hf_folder` /
`load_hf_folder` write and read a folder that `transformers.LlamaForCausalLM` also loads.
The name table (`HF_NAMES`, `HF_LAYER_NAMES`) and the permutation (`half_split_to_interleaved`)
repeat what `tinyllm_lab.weights` does, deliberately: the reference is an independent
implementation, so its export and import cross-check the engine's loader (and `transformers`
loading `weights/` checks both). Only config.json is read through the engine's
`weights.config_from_hf`, shared on purpose so that both engines build the same `ModelConfig`;
`transformers`, which reads config.json its own way, guards it in tests/test_weights.py.
"""

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from tinyllm_lab.config import ModelConfig
from tinyllm_lab.weights import config_from_hf  # config.json -> ModelConfig, read one way for both engines


# ----------------------------------------------------------------------------------------------
# RoPE, Meta style: each interleaved pair (x[2i], x[2i+1]) is the complex number x[2i] + 1j*x[2i+1],
# and rotating it by the angle m * theta_i is one complex multiplication by exp(1j * m * theta_i).

def precompute_freqs_cis(head_dim, max_seq_len, rope_theta=10000.0):  # -> [S_max, Dh/2] complex64
    """exp(1j * m * theta_i) for every position m and pair i, with theta_i = rope_theta ** (-2i / Dh).

    The angles and their cos / sin are computed in float64 and only then rounded to float32, so
    the table equals the numpy engine's `rope_tables` (a float32 angle at m = 1000 is already off
    by ~5e-5 rad).
    """
    theta = rope_theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # [Dh/2]
    angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float64), theta)           # [S_max, Dh/2]
    return torch.complex(angles.cos().float(), angles.sin().float())


def apply_rotary_emb(x, freqs_cis):  # [B, T, n, Dh], [T, Dh/2] complex -> [B, T, n, Dh]
    """Rotate every interleaved pair of every head: view as complex, multiply, view back as real."""
    x_complex = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))  # [B, T, n, Dh/2]
    rotated = x_complex * freqs_cis[None, :, None, :]                          # broadcast over B, n
    return torch.view_as_real(rotated).flatten(-2).type_as(x)


# ----------------------------------------------------------------------------------------------
# The model: Meta's module tree and names.

class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, over the last axis (Zhang & Sennrich 2019)."""

    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):  # [..., D] -> [..., D]
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class Attention(nn.Module):
    """Grouped-query self-attention with RoPE and its own preallocated KV cache."""

    def __init__(self, config: ModelConfig, max_batch_size):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        self.wq = nn.Linear(config.dim, config.n_heads * config.head_dim, bias=False)
        self.wk = nn.Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False)
        self.wv = nn.Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False)
        self.wo = nn.Linear(config.n_heads * config.head_dim, config.dim, bias=False)
        # The cache: buffers so that .to(device) moves them, non-persistent so they stay out of state_dict.
        cache_shape = (max_batch_size, config.max_seq_len, config.n_kv_heads, config.head_dim)
        self.register_buffer("cache_k", torch.zeros(cache_shape), persistent=False)  # [B_max, S_max, K, Dh]
        self.register_buffer("cache_v", torch.zeros(cache_shape), persistent=False)

    def forward(self, x, freqs_cis, start_pos=None):  # [B, T, D], [T, Dh/2] -> [B, T, D]
        """start_pos=None: attend within x only (training, uncached). An int: x holds positions
        start_pos .. start_pos+T-1; write their keys / values into the cache and attend to 0 .. start_pos+T-1."""
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim)
        q, k = apply_rotary_emb(q, freqs_cis), apply_rotary_emb(k, freqs_cis)
        offset = 0
        if start_pos is not None:
            self.cache_k[:B, start_pos:start_pos + T] = k
            self.cache_v[:B, start_pos:start_pos + T] = v
            k, v = self.cache_k[:B, :start_pos + T], self.cache_v[:B, :start_pos + T]  # [B, S, K, Dh]
            offset = start_pos
        # repeat_kv: query head h reads kv head h // (H // K), as in Meta's code.
        n_rep = self.n_heads // self.n_kv_heads
        k, v = k.repeat_interleave(n_rep, dim=2), v.repeat_interleave(n_rep, dim=2)  # [B, S, H, Dh]
        S = k.shape[1]
        # Query t sits at absolute position offset + t and may see keys 0 .. offset + t.
        mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=offset)  # [T, S]
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             attn_mask=mask)  # [B, H, T, Dh]
        return self.wo(out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))


class FeedForward(nn.Module):
    """SwiGLU (Shazeer 2020): w2(silu(w1(x)) * w3(x)); w1 is the gate, w3 the up, w2 the down projection."""

    def __init__(self, dim, hidden_dim):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def forward(self, x):  # [B, T, D] -> [B, T, D]
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    """Pre-norm residual block: h = x + attention(norm(x)); out = h + feed_forward(norm(h))."""

    def __init__(self, config: ModelConfig, max_batch_size):
        super().__init__()
        self.attention_norm = RMSNorm(config.dim, config.norm_eps)
        self.attention = Attention(config, max_batch_size)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)
        self.feed_forward = FeedForward(config.dim, config.hidden_dim)

    def forward(self, x, freqs_cis, start_pos=None):  # [B, T, D] -> [B, T, D]
        h = x + self.attention(self.attention_norm(x), freqs_cis, start_pos)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    """tokens -> embedding -> blocks -> final norm -> output head -> logits.

    `model(tokens)` is the uncached full forward (training, checks); `model(tokens, start_pos)`
    runs through the KV cache (prefill with start_pos=0, then decode one token at a time).
    Batches up to `max_batch_size` can use the cache; the uncached path takes any batch. Run the
    cached path under `torch.inference_mode()`, as Meta's generate does: the cache is plain state.
    """

    def __init__(self, config: ModelConfig, max_batch_size=1):
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(TransformerBlock(config, max_batch_size) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight  # one [V, D] matrix, read two ways
        freqs_cis = precompute_freqs_cis(config.head_dim, config.max_seq_len, config.rope_theta)
        self.register_buffer("freqs_cis", freqs_cis, persistent=False)

    def forward(self, tokens, start_pos=None):  # [B, T] int64 -> [B, T, V] float32
        B, T = tokens.shape
        first = 0 if start_pos is None else start_pos
        if start_pos is not None and B > self.layers[0].attention.cache_k.shape[0]:
            raise ValueError(f"a batch of {B} does not fit the KV cache, built for max_batch_size="
                             f"{self.layers[0].attention.cache_k.shape[0]}")
        if first + T > self.config.max_seq_len:
            raise ValueError(f"positions {first}..{first + T - 1} do not fit max_seq_len={self.config.max_seq_len}")
        freqs_cis = self.freqs_cis[first:first + T]  # [T, Dh/2]
        h = self.tok_embeddings(tokens)
        for layer in self.layers:
            h = layer(h, freqs_cis, start_pos)
        return self.output(self.norm(h)).float()


def init_model(config: ModelConfig, seed=0, max_batch_size=1):  # -> Transformer, on the CPU
    """A freshly initialised model, the same bits for the same seed.

    Every weight matrix ~ N(0, 0.02^2), the projections that write into the residual stream (wo, w2)
    scaled down by sqrt(2 * n_layers) as in GPT-2 / nanoGPT; every norm weight = 1. The draws come
    from one CPU generator, parameter by parameter in `named_parameters()` order (a tied output head
    is the embedding and is drawn once).
    """
    torch.manual_seed(seed)  # anything else a caller draws afterwards is seeded too
    generator = torch.Generator(device="cpu").manual_seed(seed)
    model = Transformer(config, max_batch_size)
    residual_std = 0.02 / math.sqrt(2 * config.n_layers)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                nn.init.ones_(p)
            elif name.endswith(("attention.wo.weight", "feed_forward.w2.weight")):
                nn.init.normal_(p, 0.0, residual_std, generator=generator)
            else:
                nn.init.normal_(p, 0.0, 0.02, generator=generator)
    return model


# ----------------------------------------------------------------------------------------------
# Hugging Face interop: names, the RoPE permutation, config.json.

def interleaved_to_half_split(w, n_heads, head_dim):  # [n*Dh, D] -> [n*Dh, D]
    """Reorder the rows of wq or wk from Meta's interleaved RoPE pairs to Hugging Face's half-split pairs.

    Meta rotates pairs (x[2i], x[2i+1]) of each head; Hugging Face's `rotate_half` rotates
    (x[i], x[i + Dh/2]). Both compute the same attention scores if, inside each head, the rows of
    wq and wk are listed as [0, 2, 4, ..., Dh-2, 1, 3, ..., Dh-1]: even rows (first of each pair)
    then odd rows (second of each pair). With Dh = 4: rows [0, 1, 2, 3] -> [0, 2, 1, 3].
    This is `permute` in transformers' convert_llama_weights_to_hf.py.
    """
    return w.reshape(n_heads, head_dim // 2, 2, -1).transpose(1, 2).reshape(w.shape)


def half_split_to_interleaved(w, n_heads, head_dim):  # [n*Dh, D] -> [n*Dh, D]
    """The inverse of `interleaved_to_half_split`: per head, rows [0, Dh/2, 1, Dh/2+1, ...]."""
    return w.reshape(n_heads, 2, head_dim // 2, -1).transpose(1, 2).reshape(w.shape)


# Meta name -> Hugging Face name. Per layer, with {i} the layer index; the RoPE-permuted ones are wq, wk.
HF_NAMES = {
    "tok_embeddings.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
HF_LAYER_NAMES = {
    "attention_norm.weight": "input_layernorm.weight",
    "attention.wq.weight": "self_attn.q_proj.weight",
    "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
}


def _name_table(config: ModelConfig):  # -> {Meta name: HF name}, the tied head left out
    table = {meta: hf for meta, hf in HF_NAMES.items() if not (config.tie_embeddings and meta == "output.weight")}
    for i in range(config.n_layers):
        for meta, hf in HF_LAYER_NAMES.items():
            table[f"layers.{i}.{meta}"] = f"model.layers.{i}.{hf}"
    return table


def hf_state_dict(model: Transformer):  # -> {HF name: tensor}
    """The model's weights under Hugging Face Llama names, wq / wk rows in the half-split RoPE layout.

    A tied output head is not stored (Hugging Face re-ties lm_head to embed_tokens on load).
    """
    config, sd = model.config, model.state_dict()
    out = {}
    for meta, hf in _name_table(config).items():
        w = sd[meta].detach().cpu()
        if meta.endswith("attention.wq.weight"):
            w = interleaved_to_half_split(w, config.n_heads, config.head_dim)
        elif meta.endswith("attention.wk.weight"):
            w = interleaved_to_half_split(w, config.n_kv_heads, config.head_dim)
        out[hf] = w.contiguous()
    return out


def from_hf_state_dict(sd, config: ModelConfig):  # -> {Meta name: tensor}, for Transformer.load_state_dict
    """The inverse of `hf_state_dict`; raises ValueError listing every missing or unexpected HF name."""
    table = _name_table(config)
    missing = sorted(set(table.values()) - set(sd))
    unexpected = sorted(set(sd) - set(table.values()))
    if missing or unexpected:
        raise ValueError(f"Hugging Face state dict does not match the config: missing {missing}, unexpected {unexpected}")
    out = {}
    for meta, hf in table.items():
        w = sd[hf]
        if meta.endswith("attention.wq.weight"):
            w = half_split_to_interleaved(w, config.n_heads, config.head_dim)
        elif meta.endswith("attention.wk.weight"):
            w = half_split_to_interleaved(w, config.n_kv_heads, config.head_dim)
        out[meta] = w.contiguous()
    if config.tie_embeddings:
        out["output.weight"] = out["tok_embeddings.weight"]
    return out


def bos_eos_ids(config: ModelConfig):  # -> (bos, eos)
    """The special tokens sit at the top of the vocabulary: BOS = V - 2, EOS = V - 1 (16382, 16383)."""
    return config.vocab_size - 2, config.vocab_size - 1


def hf_config(config: ModelConfig):  # -> dict, the contents of config.json
    """A `LlamaForCausalLM` config.json for this model (rope_theta both top-level, transformers 4.x,
    and in rope_parameters, transformers 5.x)."""
    bos, eos = bos_eos_ids(config)
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": config.dim,
        "intermediate_size": config.hidden_dim,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.head_dim,
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.max_seq_len,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "tie_word_embeddings": config.tie_embeddings,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": "float32",
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
    }


def save_hf_folder(model: Transformer, folder):
    """Write `config.json` and `model.safetensors` (float32, HF names) into folder, byte-identical on rerun.

    The tied head is stored once, as model.embed_tokens.weight. safetensors writes tensors in a fixed
    order with no timestamp; the metadata is one key (several would come out in hash-map order),
    {"format": "pt"}, which transformers expects.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(hf_config(model.config), indent=2, sort_keys=True) + "\n"
    (folder / "config.json").write_text(text, encoding="utf-8")
    tensors = {name: t.float().contiguous() for name, t in sorted(hf_state_dict(model).items())}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def load_hf_folder(folder, max_batch_size=1):  # -> Transformer, on the CPU, in eval mode
    """Read a folder written by `save_hf_folder` (or any plain HF Llama folder with one safetensors file)."""
    folder = Path(folder)
    config = config_from_hf(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    model = Transformer(config, max_batch_size)
    model.load_state_dict(from_hf_state_dict(load_file(str(folder / "model.safetensors")), config))
    return model.eval()
