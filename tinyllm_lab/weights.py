# Promoted from notebooks/day6_weights.ipynb by `python -m tinyllm_lab.promote`.
# Do not edit here: edit the notebook's `#| promote: weights` cells and promote again.

"""Day 6 the loader: a Hugging Face Llama or Mistral folder -> a ready `Model`: `load_model("weights")`.

A folder holds config.json and the weights, in model.safetensors or in shards listed by
model.safetensors.index.json. This is the engine's one place where Hugging Face's names (weights
and config.json keys) are translated into the Meta / llama2.c names it uses, where HF's half-split
RoPE layout is converted to our interleaved one (the PyTorch reference keeps an independent copy
of both, to cross-check), and where Llama 3's RoPE scaling is applied. The config is checked
against the files' headers before anything is read, one ValueError lists what does not fit, and
each tensor is then read through a memory map and widened to float32 once.
"""

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from tinyllm_lab import safetensors as st  # today's reader (not the `safetensors` library)
from tinyllm_lab.config import ModelConfig
from tinyllm_lab.model import LayerWeights, Model, ModelWeights, expected_shapes
from tinyllm_lab.rope import half_split_to_interleaved_rows, llama3_rope_frequencies, rope_frequencies, rope_tables_for


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
    "rope_theta": ("rope_theta", float),  # read where transformers reads it: see `hf_rope_parameters`
    "tie_embeddings": ("tie_word_embeddings", bool),
}
# The optional fields, with Hugging Face's default in words (for error messages); the rest are required.
DEFAULTS = {"n_kv_heads": "num_attention_heads", "head_dim": "hidden_size // num_attention_heads",
            "rope_theta": "10000.0", "tie_embeddings": "false"}
CONTEXT_CAP = 4096  # the default context when max_position_embeddings is larger (Llama 3.2 says 131072)
MAX_PROBLEMS = 8  # an error lists at most this many problems, then "... and N more"


def _problems(problems):  # list of str -> one short str: at most MAX_PROBLEMS, then a count of the rest
    shown = "; ".join(problems[:MAX_PROBLEMS])
    return shown + (f"; ... and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else "")


def _is_json(value, kind):
    """Is a parsed JSON value of this kind? `true` parses to True, an int in Python: not a count, not a number."""
    if kind is bool:
        return isinstance(value, bool)
    return isinstance(value, int if kind is int else (int, float)) and not isinstance(value, bool)


def _number_problem(key, value, kind):  # -> None, or what is wrong with config.json's value of `key`
    """Type first (int, number, bool), then range: counts are integers >= 1, numbers finite and > 0."""
    if isinstance(value, st._LongInteger):  # over 20 digits: past any u64, and past what int() converts
        return f"{key}={value!r} (expected a number of at most 20 digits)"
    if not _is_json(value, kind):
        expected = {int: "an integer", float: "a number", bool: "true or false"}[kind]
        return f"{key}={value!r} (expected {expected})"
    if kind is int and value < 1:
        return f"{key}={value!r} (expected an integer >= 1)"
    if kind is float and not (value > 0 and _finite(value)):  # JSON's 1e999 parses to inf
        return f"{key}={value!r} (expected a finite number > 0)"
    return None


def _finite(value):  # a number -> bool; an integer too large for a float (10**400) is no usable number either
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def hf_config_values(hf):  # dict of config.json -> {ModelConfig field: (key, value)}
    """Every value config.json gives (absent or null: not given), type- and range-checked; one ValueError for all problems."""
    given, problems = {}, []
    for field, (key, kind) in HF_CONFIG_KEYS.items():
        value = hf.get(key)
        if field == "rope_theta":  # where transformers reads it
            key, value = hf_rope_parameters(hf)[0:2]
        if value is None:
            if field not in DEFAULTS:
                problems.append(f"no {key} (absent or null)")
        elif (problem := _number_problem(key, value, kind)) is not None:
            problems.append(problem)
        else:
            given[field] = (key, value)
    if problems:
        raise ValueError("config.json: " + _problems(problems) + " (is it a Hugging Face Llama config?)")
    return given


def _hf_keys_named_in(message, given):  # a ModelConfig error, {field: (key, value)} -> str
    """The config.json keys behind the ModelConfig fields that a message names: 'num_attention_heads=0, ...'."""
    keys = []
    for field, (key, _) in HF_CONFIG_KEYS.items():
        if re.search(rf"\b{field}\b", message):
            keys.append(f"{given[field][0]}={given[field][1]!r}" if field in given
                        else f"{key} absent or null: {DEFAULTS[field]}")
    return ", ".join(keys)


# RoPE types this engine computes -> the parameters each needs from config.json (with their JSON type)
ROPE_TYPES = {"default": {}, "linear": {"factor": float},
              "llama3": {"factor": float, "low_freq_factor": float, "high_freq_factor": float,
                         "original_max_position_embeddings": int}}


def hf_rope_parameters(hf):  # dict of config.json -> (theta key, theta or None, RoPE key, RoPE parameters)
    """RoPE's settings where transformers 5 reads them: the `rope_scaling` object (the 4.x name) if it is given,
    else `rope_parameters`; rope_theta from inside that object, else the top-level `rope_theta` (a stale
    top-level value loses, as in transformers), else None (the default, 10000)."""
    rope_key = "rope_scaling" if hf.get("rope_scaling") else "rope_parameters"
    rope = hf.get(rope_key) or {}  # null or {}: plain RoPE
    if isinstance(rope, dict) and rope.get("rope_theta") is not None:
        return f"{rope_key}.rope_theta", rope["rope_theta"], rope_key, rope
    return "rope_theta", hf.get("rope_theta"), rope_key, rope


def _rope_type(hf):  # dict of config.json -> (RoPE key, its rope_type, or None if the entry is no object)
    """'default' for plain RoPE; a rope_type that is no string, such as null or a list, is returned as it is."""
    _, _, key, rope = hf_rope_parameters(hf)
    return key, rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else None


def _known(rope_type):  # a rope_type from config.json -> is it one this engine computes?
    return isinstance(rope_type, str) and rope_type in ROPE_TYPES


def rope_scaling_from_hf(hf):  # dict of config.json -> None (plain RoPE) or {"rope_type": ..., parameters}
    """The RoPE scaling config.json asks for, checked: None, or e.g. `{"rope_type": "llama3", "factor": 32.0,
    "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}`.

    As transformers: a top-level `original_max_position_embeddings` wins, and max_position_embeddings is its
    default. ValueError naming the key: another rope_type, a parameter missing, of the wrong type or out of range.
    """
    key, rope_type = _rope_type(hf)
    if not _known(rope_type):
        raise ValueError(f"config.json: {key}={hf.get(key)!r}: RoPE type {rope_type!r} is not supported "
                         f"(supported: {', '.join(ROPE_TYPES)})")
    if rope_type == "default":
        return None
    rope, scaling, problems = hf[key], {"rope_type": rope_type}, []
    for name, kind in ROPE_TYPES[rope_type].items():
        where, value = f"{key}.{name}", rope.get(name)
        if name == "original_max_position_embeddings":
            if hf.get(name) is not None:
                where, value = name, hf[name]
            elif value is None:
                where, value = "max_position_embeddings", hf.get("max_position_embeddings")
        problem = f"no {where}" if value is None else _number_problem(where, value, kind)
        if problem is None:
            scaling[name] = value
        else:
            problems.append(problem)
    if not problems and rope_type == "llama3" and not scaling["high_freq_factor"] > scaling["low_freq_factor"]:
        problems.append(f"{key}.high_freq_factor={scaling['high_freq_factor']!r} must be larger than "
                        f"low_freq_factor={scaling['low_freq_factor']!r}")
    if problems:
        raise ValueError("config.json: " + _problems(problems))
    return scaling


MODEL_TYPES = {"llama", "mistral"}  # the same block; Mistral may add a sliding window (see `_context_length`)


def unsupported_features(hf):  # dict of config.json -> list of str
    """What a Hugging Face config asks for that this engine does not implement (empty: nothing), each naming its key."""
    problems = []
    if not isinstance(hf.get("model_type", "llama"), str) or hf.get("model_type", "llama") not in MODEL_TYPES:
        problems.append(f"model_type={hf['model_type']!r} (expected one of {sorted(MODEL_TYPES)})")
    if not isinstance(hf.get("hidden_act", "silu"), str) or hf.get("hidden_act", "silu") not in ("silu", "swish"):
        problems.append(f"hidden_act={hf['hidden_act']!r} (expected 'silu' or 'swish')")
    for flag in ("attention_bias", "mlp_bias"):
        value = hf.get(flag)
        if value is True:
            problems.append(f"{flag}=true (this model has no biases)")
        elif not (value is None or value is False):
            problems.append(f"{flag}={value!r} (expected true or false)")
    if hf.get("quantization_config") is not None:
        problems.append("quantization_config (quantized weights; this engine reads F32, F16 and BF16)")
    key, rope_type = _rope_type(hf)
    if not isinstance(hf.get(key) or {}, dict):
        problems.append(f"{key}={hf[key]!r} (expected a JSON object)")
    elif not _known(rope_type):
        problems.append(f"{key}.rope_type={rope_type!r} (supported: {', '.join(ROPE_TYPES)})")
    for where, rope in (("", hf), (f"{key}.", hf[key] if isinstance(hf.get(key), dict) else {})):
        if rope.get("partial_rotary_factor") not in (None, 1, 1.0):  # RoPE on only part of each head
            problems.append(f"{where}partial_rotary_factor={rope['partial_rotary_factor']!r} (expected 1)")
    return problems


def _context_length(max_seq_len, max_position_embeddings):  # -> the context the model is built for
    """`max_seq_len` if given (an integer 1 .. max_position_embeddings), else min(max_position_embeddings, CONTEXT_CAP)."""
    if max_seq_len is None:
        return min(max_position_embeddings, CONTEXT_CAP)
    if isinstance(max_seq_len, bool) or not isinstance(max_seq_len, (int, np.integer)):
        raise TypeError(f"max_seq_len must be an integer (a number of positions), got {max_seq_len!r}")
    if not 1 <= max_seq_len <= max_position_embeddings:
        raise ValueError(f"max_seq_len={max_seq_len} is outside 1 .. {max_position_embeddings}, the model's "
                         "max_position_embeddings (config.json): positions past it were never trained")
    return int(max_seq_len)


def _check_sliding_window(hf, context):  # raise if Mistral's sliding window would hide keys within `context`
    if hf.get("model_type") != "mistral":  # (a model_type that is not a string was refused before)
        return
    window = hf.get("sliding_window", 4096)  # absent: MistralConfig's default; null: no window
    if window is not None and (problem := _number_problem("sliding_window", window, int)) is not None:
        raise ValueError(f"config.json: {problem}")
    if window is not None and window < context:  # a query at position m sees keys m - window + 1 .. m
        raise ValueError(f"config.json: sliding_window={window} is smaller than the context in use "
                         f"(max_seq_len={context}): sliding-window attention is not implemented; "
                         f"pass max_seq_len <= {window}")


def config_from_hf(hf, max_seq_len=None, rope_scaling=False):  # dict of config.json -> ModelConfig
    """A ModelConfig from a Hugging Face Llama or Mistral config.json: only an absent or null key takes HF's default.

    `max_seq_len`: the context to build for (see `_context_length`; TypeError if not an integer). A ModelConfig
    has no field for RoPE scaling: with `rope_scaling=False` (the default) a config asking for it is refused; the
    loader passes True and applies it itself (`rope_scaling_from_hf`). ValueError for an unsupported feature, a
    missing key or a value of the wrong type or range (all listed in one error), and for values ModelConfig
    refuses (with the config.json keys they came from).
    """
    problems = unsupported_features(hf)
    key, rope_type = _rope_type(hf)
    if not rope_scaling and _known(rope_type) and rope_type != "default":
        problems.append(f"RoPE scaling {key}={hf[key]!r} (a ModelConfig cannot hold it; load_model applies it)")
    if problems:
        raise ValueError("unsupported Hugging Face config: " + _problems(problems))
    given = hf_config_values(hf)  # {field: (config.json key, value)}, types and ranges checked
    v = {field: value for field, (_, value) in given.items()}
    context = _context_length(max_seq_len, v["max_seq_len"])
    _check_sliding_window(hf, context)
    try:
        return ModelConfig(
            dim=v["dim"], n_layers=v["n_layers"], n_heads=v["n_heads"], n_kv_heads=v.get("n_kv_heads", v["n_heads"]),
            head_dim=v.get("head_dim", v["dim"] // v["n_heads"]), hidden_dim=v["hidden_dim"],
            vocab_size=v["vocab_size"], max_seq_len=context, norm_eps=float(v["norm_eps"]),
            rope_theta=float(v.get("rope_theta", 10000.0)), tie_embeddings=v.get("tie_embeddings", False))
    except ValueError as e:  # ModelConfig names its fields; add the config.json keys they came from
        raise ValueError(f"{e} (config.json: {_hf_keys_named_in(str(e), given)})") from None


FLOAT_DTYPES = ("F32", "F16", "BF16")  # what the reader widens to float32


def _describe(x):  # an array, or a safetensors header entry -> (shape, is a float type, dtype name)
    if isinstance(x, dict):
        return tuple(x["shape"]), x["dtype"] in FLOAT_DTYPES, x["dtype"]
    return x.shape, x.dtype in (np.float32, np.float16), str(x.dtype)


def _layers_in(names):  # HF names -> the set of layer indices they hold
    return {int(m.group(1)) for name in names if (m := re.match(r"model\.layers\.(\d{1,9})\.", name))}


def check_tensors(config, tensors):  # ModelConfig, {HF name: array or header entry} -> None
    """Raise one ValueError listing the tensors that are missing, unexpected, misshapen or not a float type.

    Takes arrays, or safetensors header entries (`{"dtype": "BF16", "shape": [576], ...}`: the loader checks
    those before it reads any data). The layer count comes first, so a config claiming 100000 layers for a
    2-layer file fails at once; the error lists at most MAX_PROBLEMS problems, then counts the rest.
    """
    layers = _layers_in(tensors)
    if config.n_layers > len(layers):
        held = f"model.layers.{min(layers)} .. {max(layers)}" if layers else "none"
        raise ValueError(f"the checkpoint does not fit the config: config.json's num_hidden_layers="
                         f"{config.n_layers}, but the files hold {len(layers)} layers ({held})")
    per_layer = len(LayerWeights.__dataclass_fields__)  # 9: two norms, wq, wk, wv, wo, w1, w2, w3
    needed = per_layer * config.n_layers + (2 if config.tie_embeddings else 3)  # + embedding, norm, (head)
    if len(tensors) + MAX_PROBLEMS < needed:  # far too few: say so before listing millions of names
        raise ValueError(f"the checkpoint does not fit the config: it needs {needed} tensors (config.json's "
                         f"num_hidden_layers={config.n_layers}), the files hold {len(tensors)}")
    wanted = {hf_name(name): shape for name, shape in expected_shapes(config).items()}
    if config.tie_embeddings:
        del wanted[hf_name("output")]  # the head IS the embedding matrix: not stored
    kinds = {"missing": [], "unexpected": [], "wrong shape": [], "wrong dtype": []}
    for name, shape in wanted.items():
        if name not in tensors:
            kinds["missing"].append(f"missing: {name} (expected shape {list(shape)})")
    for name, x in tensors.items():
        shape, is_float, dtype = _describe(x)
        if name not in wanted:
            tied = " (config.json ties the head to model.embed_tokens.weight)" if name == hf_name("output") else ""
            kinds["unexpected"].append(f"unexpected: {name} {list(shape)}{tied}")
        elif shape != wanted[name]:
            kinds["wrong shape"].append(f"wrong shape: {name} expected {list(wanted[name])}, found {list(shape)}")
        elif not is_float:
            kinds["wrong dtype"].append(f"wrong dtype: {name} is {dtype}, expected float32 (F32, F16, BF16 in a file)")
    problems = [line for lines in kinds.values() for line in lines]
    if problems:
        counts = ", ".join(f"{len(lines)} {kind}" for kind, lines in kinds.items() if lines)
        more = [f"... and {len(problems) - MAX_PROBLEMS} more"] if len(problems) > MAX_PROBLEMS else []
        raise ValueError(f"the checkpoint does not fit the config ({counts}):\n  "
                         + "\n  ".join(problems[:MAX_PROBLEMS] + more))


def weights_from_tensors(config, tensors, read=None):  # ModelConfig, {HF name: array or header entry} -> ModelWeights
    """The engine's weights: checked (`check_tensors`), float32, wq / wk rows permuted for our RoPE, head tied if asked.

    `read(HF name) -> array` gets a tensor's values: by default `tensors[name]` itself (arrays); `load_model`
    passes one that reads each tensor from its file through a memory map, one at a time, so only the float32
    weights stay in memory. ValueError (`check_tensors`), or for a NaN or infinity in a weight.
    """
    check_tensors(config, tensors)
    read = tensors.__getitem__ if read is None else read
    non_finite = []  # the tensors holding a NaN or an infinity, all named in one error at the end

    def get(name):  # our name -> float32 array (F16 widened exactly)
        x = np.ascontiguousarray(read(hf_name(name)), dtype=np.float32)
        if (problem := st.non_finite(hf_name(name), x)) is not None:  # check_finite's words, one tensor at a time
            non_finite.append(problem)
        return x

    def layer(i):  # HF's q/k rows are in the half-split RoPE layout; apply_rope pairs interleaved rows
        return LayerWeights(
            attention_norm=get(f"layers.{i}.attention_norm"),
            wq=half_split_to_interleaved_rows(get(f"layers.{i}.wq"), config.n_heads),
            wk=half_split_to_interleaved_rows(get(f"layers.{i}.wk"), config.n_kv_heads),
            wv=get(f"layers.{i}.wv"), wo=get(f"layers.{i}.wo"),
            ffn_norm=get(f"layers.{i}.ffn_norm"),
            w1=get(f"layers.{i}.w1"), w3=get(f"layers.{i}.w3"), w2=get(f"layers.{i}.w2"))  # gate, up, down

    embeddings = get("tok_embeddings")
    weights = ModelWeights(tok_embeddings=embeddings, layers=[layer(i) for i in range(config.n_layers)],
                           norm=get("norm"), output=embeddings if config.tie_embeddings else get("output"))
    if non_finite:
        raise ValueError(f"non-finite weights in {len(non_finite)} tensor(s): " + _problems(non_finite))
    return weights


MAX_JSON_BYTES = 16_000_000  # config.json and the shard index are small; a bigger one is not what it claims


def read_json(path):  # path of a JSON file -> dict
    """A JSON object from a regular file of at most MAX_JSON_BYTES; ValueError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():  # also refuses a folder or a device such as /dev/zero
        raise ValueError(f"{path} is not a file")
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise ValueError(f"{path} is {size} bytes, over the {MAX_JSON_BYTES}-byte limit for a JSON file")
    try:  # parse_int: a 5000-digit integer becomes a marker the checks refuse, not Python's own error
        value = json.loads(path.read_text(encoding="utf-8"), parse_int=st._parse_int)
    except ValueError as e:  # not UTF-8, or not JSON
        raise ValueError(f"{path} is not a JSON file: {e}") from None
    except RecursionError:
        raise ValueError(f"{path} is not a usable JSON file (nested too deeply)") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds a JSON {st._json_type(value)}, expected an object")
    return value


def _shard_names(index_path):  # model.safetensors.index.json -> {HF name: shard file name}
    """The index's weight_map, checked: tensor names to plain file names in the same folder (no paths)."""
    weight_map = read_json(index_path).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ValueError(f"{index_path}: weight_map must be an object {{tensor name: shard file name}}")
    bad = sorted({v for v in weight_map.values() if Path(v).name != v or v in ("", ".", "..")})
    if bad:
        raise ValueError(f"{index_path}: shard names must be file names in the same folder, got {bad[:MAX_PROBLEMS]}")
    return weight_map


def checkpoint_tensors(folder):  # -> {HF name: (file path, header entry, data_start)}
    """Every tensor of a folder's weights and the file it is in: model.safetensors, or the shards listed by
    model.safetensors.index.json. Reads and checks each file's header only, no tensor data. ValueError naming
    a missing shard, a malformed file, a tensor stored twice or not where the index says."""
    folder = Path(folder)
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():  # transformers' order too: the single file first
        weight_map, files = None, [single]
    elif index.is_file():
        weight_map = _shard_names(index)
        files = [folder / name for name in sorted(set(weight_map.values()))]
        missing = [f.name if f.name.isprintable() else repr(f.name) for f in files if not f.is_file()]
        if missing:
            raise ValueError(f"{index.name} lists {len(missing)} shard(s) that {folder} does not hold: "
                             + _problems(missing))
    else:
        raise ValueError(f"{folder} has no model.safetensors or model.safetensors.index.json")
    entries, problems = {}, []
    for path in files:
        try:
            tensors, _, data_start = st.read_header(path)
        except ValueError as e:  # say which file: a sharded model has many
            raise ValueError(f"{path.name}: {e}") from None
        for name, info in tensors.items():
            if name in entries:
                problems.append(f"{name} is in both {entries[name][0].name} and {path.name}")
            entries[name] = (path, info, data_start)
    for name, shard in (weight_map or {}).items():
        if name not in entries or entries[name][0].name != shard:
            problems.append(f"{index.name} puts {name} in {shard}, which does not hold it")
    if problems:
        raise ValueError(f"the weights of {folder} are inconsistent: " + _problems(problems))
    return entries


def scaled_rope_tables(config, scaling):  # ModelConfig, rope_scaling_from_hf(...) -> cos, sin: [S, Dh/2] float32
    """`rope_tables` with config.json's RoPE scaling applied to the frequencies: Llama 3's (day 2's
    `llama3_rope_frequencies`), or linear (every frequency / factor: position m turns like m / factor), as
    transformers' `_compute_llama3_parameters` / `_compute_linear_scaling_rope_parameters`. ValueError if a
    factor makes a frequency overflow (e.g. factor=1e-320)."""
    freqs = rope_frequencies(config.head_dim, config.rope_theta)
    with np.errstate(over="ignore"):  # a factor such as 1e-320 overflows: refused below, by name
        if scaling["rope_type"] == "linear":
            freqs = freqs / scaling["factor"]
        else:
            freqs = llama3_rope_frequencies(freqs, scaling["factor"], scaling["low_freq_factor"],
                                            scaling["high_freq_factor"], scaling["original_max_position_embeddings"])
    if not np.isfinite(freqs).all():
        raise ValueError(f"config.json: RoPE scaling factor={scaling['factor']!r} makes the frequencies overflow")
    return rope_tables_for(freqs, config.max_seq_len)


def load_model(folder, max_seq_len=None):  # path of a Hugging Face Llama or Mistral folder -> Model
    """A ready `Model` from a folder with config.json and model.safetensors (or shards and their index).

    `max_seq_len` sizes the RoPE tables and the KV cache: default min(max_position_embeddings, 4096);
    above max_position_embeddings is refused. The config is checked against the files' headers before any
    tensor is read; then each tensor is read through a memory map and widened to float32 once, so loading
    BF16 needs little more than the float32 weights. ValueError (TypeError for a non-integer max_seq_len).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder (expected a Hugging Face model folder with config.json)")
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} has no config.json (expected a Hugging Face model folder)")
    hf = read_json(folder / "config.json")
    config = config_from_hf(hf, max_seq_len, rope_scaling=True)
    scaling = rope_scaling_from_hf(hf)
    entries = checkpoint_tensors(folder)  # {HF name: (path, header entry, data_start)}, headers only
    if config.tie_embeddings and hf_name("output") in entries:
        config = replace(config, tie_embeddings=False)  # as transformers 5: a stored lm_head.weight is the head

    def read(name):  # one tensor, through a memory map, as float32
        path, info, data_start = entries[name]
        return st.read_tensor(path, name, info, data_start)

    weights = weights_from_tensors(config, {name: info for name, (_, info, _) in entries.items()}, read)
    model = Model(config, weights)
    if scaling is not None:  # Model built plain RoPE tables from the config; a scaled model's replace them
        model.cos, model.sin = scaled_rope_tables(config, scaling)
    return model
