# Promoted from notebooks/day6_weights.ipynb by `python -m tinyllm_lab.promote`.
# Do not edit here: edit the notebook's `#| promote: weights` cells and promote again.

"""Day 6 the loader: a Hugging Face Llama folder (config.json + model.safetensors) -> a ready `Model`.

The engine's one place where Hugging Face's names (weights and config.json keys) are translated
into the Meta / llama2.c names it uses, and where HF's half-split RoPE layout is converted to our
interleaved one (the PyTorch reference keeps an independent copy of both, to cross-check). Every
tensor is checked against the config first, and one ValueError lists all that do not fit:
`load_model("weights")` -> Model.
"""

import json
import re
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


# ModelConfig field -> (its config.json key, the JSON type its value must have): the config's name table.
HF_CONFIG_KEYS = {
    "dim": ("hidden_size", int),
    "n_layers": ("num_hidden_layers", int),
    "n_heads": ("num_attention_heads", int),
    "n_kv_heads": ("num_key_value_heads", int),
    "head_dim": ("head_dim", int),
    "hidden_dim": ("intermediate_size", int),
    "vocab_size": ("vocab_size", int),
    "max_seq_len": ("max_position_embeddings", int),
    "norm_eps": ("rms_norm_eps", float),
    "rope_theta": ("rope_theta", float),  # transformers 5.x writes it only inside rope_parameters
    "tie_embeddings": ("tie_word_embeddings", bool),
}
# The optional fields, with Hugging Face's default in words (for error messages); the rest are required.
DEFAULTS = {"n_kv_heads": "num_attention_heads", "head_dim": "hidden_size // num_attention_heads",
            "rope_theta": "10000.0", "tie_embeddings": "false"}


def _is_json(value, kind):
    """Is a parsed JSON value of this kind? `true` parses to True, an int in Python: not a count, not a number."""
    if kind is bool:
        return isinstance(value, bool)
    return isinstance(value, int if kind is int else (int, float)) and not isinstance(value, bool)


def hf_config_values(hf):  # dict of config.json -> {ModelConfig field: (key, value)}
    """Every value config.json gives (absent or null: not given), type-checked; one ValueError for all problems."""
    given, problems = {}, []
    for field, (key, kind) in HF_CONFIG_KEYS.items():
        value = hf.get(key)
        if field == "rope_theta" and value is None:  # transformers 5.x writes it only here
            key, value = "rope_parameters.rope_theta", (hf.get("rope_parameters") or {}).get("rope_theta")
        if value is None:
            if field not in DEFAULTS:
                problems.append(f"no {key} (absent or null)")
        elif not _is_json(value, kind):
            expected = {int: "an integer", float: "a number", bool: "true or false"}[kind]
            problems.append(f"{key}={value!r} (expected {expected})")
        else:
            given[field] = (key, value)
    if problems:
        raise ValueError("config.json: " + "; ".join(problems) + " (is it a Hugging Face Llama config?)")
    return given


def _hf_keys_named_in(message, given):  # a ModelConfig error, {field: (key, value)} -> str
    """The config.json keys behind the ModelConfig fields that a message names: 'num_attention_heads=0, ...'."""
    keys = []
    for field, (key, _) in HF_CONFIG_KEYS.items():
        if re.search(rf"\b{field}\b", message):
            keys.append(f"{given[field][0]}={given[field][1]!r}" if field in given
                        else f"{key} absent or null: {DEFAULTS[field]}")
    return ", ".join(keys)


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
        if not isinstance(rope, dict):
            problems.append(f"{key}={rope!r} (expected a JSON object)")
        elif rope.get("rope_type", rope.get("type", "default")) != "default":
            problems.append(f"RoPE scaling {key}={rope!r} (only plain RoPE is supported)")
    return problems


def config_from_hf(hf):  # dict of config.json -> ModelConfig
    """A ModelConfig from a Hugging Face Llama config.json: only an absent or null key takes HF's default.

    ValueError for an unsupported feature, a missing key or a value of the wrong type (all listed in
    one error), and for values ModelConfig refuses (with the config.json keys they came from).
    """
    problems = unsupported_features(hf)
    if problems:
        raise ValueError("unsupported Hugging Face config: " + "; ".join(problems))
    given = hf_config_values(hf)  # {field: (config.json key, value)}, types checked
    v = {field: value for field, (_, value) in given.items()}
    n_heads = v["n_heads"]
    # HF's default head_dim. With n_heads <= 0 there is nothing to divide by: ModelConfig refuses n_heads first.
    head_dim = v.get("head_dim", v["dim"] // n_heads if n_heads > 0 else 0)
    try:
        return ModelConfig(
            dim=v["dim"], n_layers=v["n_layers"], n_heads=n_heads, n_kv_heads=v.get("n_kv_heads", n_heads),
            head_dim=head_dim, hidden_dim=v["hidden_dim"], vocab_size=v["vocab_size"], max_seq_len=v["max_seq_len"],
            norm_eps=float(v["norm_eps"]), rope_theta=float(v.get("rope_theta", 10000.0)),
            tie_embeddings=v.get("tie_embeddings", False))
    except ValueError as e:  # ModelConfig names its fields; add the config.json keys they came from
        raise ValueError(f"{e} (config.json: {_hf_keys_named_in(str(e), given)})") from None


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

    def layer(i):  # HF's q/k rows are in the half-split RoPE layout; apply_rope pairs interleaved rows
        return LayerWeights(
            attention_norm=get(f"layers.{i}.attention_norm"),
            wq=half_split_to_interleaved_rows(get(f"layers.{i}.wq"), config.n_heads),
            wk=half_split_to_interleaved_rows(get(f"layers.{i}.wk"), config.n_kv_heads),
            wv=get(f"layers.{i}.wv"), wo=get(f"layers.{i}.wo"),
            ffn_norm=get(f"layers.{i}.ffn_norm"),
            w1=get(f"layers.{i}.w1"), w3=get(f"layers.{i}.w3"), w2=get(f"layers.{i}.w2"))  # gate, up, down

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
