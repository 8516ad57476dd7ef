# Promoted from notebooks/day6_weights.ipynb by `python -m tinyllm_lab.promote`.
# Do not edit here: edit the notebook's `#| promote: weights` cells and promote again.

"""Day 6 the loader: a Hugging Face Llama folder (config.json + model.safetensors) -> a ready `Model`.

The one place where Hugging Face's names are translated into the Meta / llama2.c names the
engine uses, and where HF's half-split RoPE layout is converted to our interleaved one. Every
tensor is checked against the config first, and one ValueError lists all that do not fit:
`load_model("weights")` -> Model.
"""

import json
from pathlib import Path

import numpy as np

from tinyllm_lab import safetensors as st  # today's reader (not the `safetensors` library)
from tinyllm_lab.config import ModelConfig
from tinyllm_lab.model import LayerWeights, Model, ModelWeights, expected_shapes
from tinyllm_lab.rope import half_split_to_interleaved_rows

# Meta / llama2.c name -> Hugging Face name; {i} is the layer index.
HF_NAMES = {
    "tok_embeddings": "model.embed_tokens.weight",
    "layers.{i}.attention_norm": "model.layers.{i}.input_layernorm.weight",
    "layers.{i}.wq": "model.layers.{i}.self_attn.q_proj.weight",
    "layers.{i}.wk": "model.layers.{i}.self_attn.k_proj.weight",
    "layers.{i}.wv": "model.layers.{i}.self_attn.v_proj.weight",
    "layers.{i}.wo": "model.layers.{i}.self_attn.o_proj.weight",
    "layers.{i}.ffn_norm": "model.layers.{i}.post_attention_layernorm.weight",  # before the FFN
    "layers.{i}.w1": "model.layers.{i}.mlp.gate_proj.weight",
    "layers.{i}.w3": "model.layers.{i}.mlp.up_proj.weight",
    "layers.{i}.w2": "model.layers.{i}.mlp.down_proj.weight",
    "norm": "model.norm.weight",
    "output": "lm_head.weight",
}


def hf_name(name):  # our name -> Hugging Face's
    """`layers.3.wq` -> `model.layers.3.self_attn.q_proj.weight`; `norm` -> `model.norm.weight`."""
    parts = name.split(".")
    if parts[0] == "layers":
        return HF_NAMES[f"layers.{{i}}.{parts[2]}"].format(i=parts[1])
    return HF_NAMES[name]


def unsupported_features(hf):  # dict of config.json -> list of str
    """What a Hugging Face config asks for that this engine does not implement (empty: nothing)."""
    problems = []
    if hf.get("model_type", "llama") != "llama":
        problems.append(f"model_type={hf['model_type']!r} (expected 'llama')")
    if hf.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act={hf['hidden_act']!r} (expected 'silu')")
    for flag in ("attention_bias", "mlp_bias"):
        if hf.get(flag, False):
            problems.append(f"{flag}=true (this model has no biases)")
    for key in ("rope_scaling", "rope_parameters"):  # transformers 4.x, 5.x
        rope = hf.get(key) or {}
        if rope.get("rope_type", rope.get("type", "default")) != "default":
            problems.append(f"RoPE scaling {key}={rope!r} (only plain RoPE is supported)")
    return problems


def config_from_hf(hf):  # dict of config.json -> ModelConfig
    """A ModelConfig from a Hugging Face Llama config.json; ValueError for a missing key or an unsupported feature."""
    problems = unsupported_features(hf)
    if problems:
        raise ValueError("unsupported Hugging Face config: " + "; ".join(problems))
    required = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
                "max_position_embeddings", "rms_norm_eps")
    missing = [key for key in required if key not in hf]
    if missing:
        raise ValueError(f"config.json has no {', '.join(missing)}: is it a Hugging Face Llama config?")
    n_heads = hf["num_attention_heads"]
    rope_theta = hf.get("rope_theta", (hf.get("rope_parameters") or {}).get("rope_theta", 10000.0))
    return ModelConfig(
        dim=hf["hidden_size"], n_layers=hf["num_hidden_layers"], n_heads=n_heads,
        n_kv_heads=hf.get("num_key_value_heads") or n_heads,             # absent or null: one kv head per head
        head_dim=hf.get("head_dim") or hf["hidden_size"] // n_heads,
        hidden_dim=hf["intermediate_size"], vocab_size=hf["vocab_size"],
        max_seq_len=hf["max_position_embeddings"], norm_eps=float(hf["rms_norm_eps"]),
        rope_theta=float(rope_theta), tie_embeddings=bool(hf.get("tie_word_embeddings", False)))  # HF's default


def check_tensors(config, tensors):  # ModelConfig, {HF name: array} -> None
    """Raise one ValueError listing every tensor that is missing, unexpected, misshapen or not a float type."""
    wanted = {hf_name(name): shape for name, shape in expected_shapes(config).items()}
    if config.tie_embeddings:
        del wanted[hf_name("output")]  # the head IS the embedding matrix: not stored
    kinds = {"missing": [], "unexpected": [], "wrong shape": [], "wrong dtype": []}
    for name, shape in wanted.items():
        if name not in tensors:
            kinds["missing"].append(f"missing: {name} (expected shape {list(shape)})")
    for name, x in tensors.items():
        if name not in wanted:
            tied = " (config.json ties the head to model.embed_tokens.weight)" if name == hf_name("output") else ""
            kinds["unexpected"].append(f"unexpected: {name} {list(x.shape)}{tied}")
        elif x.shape != wanted[name]:
            kinds["wrong shape"].append(f"wrong shape: {name} expected {list(wanted[name])}, found {list(x.shape)}")
        elif x.dtype not in (np.float32, np.float16):
            kinds["wrong dtype"].append(f"wrong dtype: {name} is {x.dtype}, expected float32 (F32, F16, BF16 in a file)")
    problems = [line for lines in kinds.values() for line in lines]
    if problems:
        counts = ", ".join(f"{len(lines)} {kind}" for kind, lines in kinds.items() if lines)
        raise ValueError(f"the checkpoint does not fit the config ({counts}):\n  " + "\n  ".join(problems))
    st.check_finite(tensors)


def weights_from_tensors(config, tensors):  # ModelConfig, {HF name: array} -> ModelWeights
    """The engine's weights: checked (`check_tensors`), float32, wq / wk rows permuted for our RoPE, head tied if asked."""
    check_tensors(config, tensors)

    def get(name):  # our name -> float32 array (F16 widened exactly)
        return np.ascontiguousarray(tensors[hf_name(name)], dtype=np.float32)

    def layer(i):
        w = {field: get(f"layers.{i}.{field}") for field in LayerWeights.__dataclass_fields__}
        # HF's q/k rows are in the half-split RoPE layout; apply_rope pairs interleaved rows.
        w["wq"] = half_split_to_interleaved_rows(w["wq"], config.n_heads)
        w["wk"] = half_split_to_interleaved_rows(w["wk"], config.n_kv_heads)
        return LayerWeights(**w)

    embeddings = get("tok_embeddings")
    return ModelWeights(tok_embeddings=embeddings, layers=[layer(i) for i in range(config.n_layers)],
                        norm=get("norm"), output=embeddings if config.tie_embeddings else get("output"))


def load_model(folder):  # path of a Hugging Face Llama folder -> Model
    """A ready `Model` from a folder holding config.json and model.safetensors (one file, not sharded)."""
    folder = Path(folder)
    for name in ("config.json", "model.safetensors"):
        if not (folder / name).is_file():
            raise ValueError(f"{folder} has no {name}: expected a Hugging Face Llama folder "
                             "(config.json + model.safetensors)")
    try:
        hf = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except ValueError as e:  # not UTF-8, or not JSON
        raise ValueError(f"{folder / 'config.json'} is not a JSON file: {e}") from None
    if not isinstance(hf, dict):
        raise ValueError(f"{folder / 'config.json'} holds a JSON {type(hf).__name__}, expected an object")
    config = config_from_hf(hf)
    tensors, _ = st.load_file(folder / "model.safetensors")
    return Model(config, weights_from_tensors(config, tensors))
