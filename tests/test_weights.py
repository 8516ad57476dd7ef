"""The loader: Hugging Face names and config, the RoPE permutation, one aggregated error, tied and untied
heads, F16 / BF16 checkpoints, and parity with the PyTorch reference and with transformers.

Checkpoints are made by the reference (`reference.init_model` + `save_hf_folder`) with its weights
scaled up to std 0.2 and random norm weights: with the reference's std 0.02, attention is nearly
uniform and norms are all ones, so a wrong row order or two swapped norms would barely show.
"""

import ast
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
import torch
from safetensors.torch import load_file as torch_load_file
from safetensors.torch import save_file as torch_save_file

from tinyllm_lab import reference as R
from tinyllm_lab import weights as W
from tinyllm_lab.config import COURSE_MODEL, ModelConfig
from tinyllm_lab.export import reference_logits
from tinyllm_lab.model import LayerWeights, expected_shapes

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "weights"

CONFIGS = {
    "gqa-tied": ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, hidden_dim=64,
                            vocab_size=96, max_seq_len=32),
    "mqa-untied": ModelConfig(dim=48, n_layers=1, n_heads=3, n_kv_heads=1, head_dim=16, hidden_dim=80,
                              vocab_size=64, max_seq_len=24, norm_eps=1e-6, rope_theta=500.0, tie_embeddings=False),
    "mha-untied-3": ModelConfig(dim=32, n_layers=3, n_heads=2, n_kv_heads=2, head_dim=16, hidden_dim=48,
                                vocab_size=50, max_seq_len=16, tie_embeddings=False),
}

# Our LayerWeights field -> the reference's (Meta's) parameter name inside a layer: a second,
# independent table, so that the round trip below checks W.HF_NAMES against R's own.
META_LAYER = {"attention_norm": "attention_norm.weight", "wq": "attention.wq.weight", "wk": "attention.wk.weight",
              "wv": "attention.wv.weight", "wo": "attention.wo.weight", "ffn_norm": "ffn_norm.weight",
              "w1": "feed_forward.w1.weight", "w2": "feed_forward.w2.weight", "w3": "feed_forward.w3.weight"}


def reference_model(config, seed=0):  # -> R.Transformer, weights std 0.2, norm weights 1 +- 0.3
    model = R.init_model(config, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():  # a tied head is listed once
            if p.ndim == 1:
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=generator))
            else:
                p.mul_(10.0)
    return model.eval()


def hf_tensors(model):  # -> {HF name: float32 np.ndarray}
    return {name: t.numpy() for name, t in R.hf_state_dict(model).items()}


def tokens_for(config, n=10, seed=2):  # -> [n] int64
    return np.random.default_rng(seed).integers(0, config.vocab_size, n)


def numpy_logits(model, tokens):  # -> prefill [T, V], decode [T, V] (token by token through the cache)
    prefill = model.forward(tokens, model.new_cache())
    cache = model.new_cache()
    decode = np.concatenate([model.forward(tokens[t:t + 1], cache) for t in range(len(tokens))])
    return prefill, decode


def max_diff(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


@pytest.fixture(params=list(CONFIGS), scope="module")
def saved(request, tmp_path_factory):  # -> (config, reference model, folder written by save_hf_folder)
    config = CONFIGS[request.param]
    model = reference_model(config)
    folder = tmp_path_factory.mktemp(request.param)
    R.save_hf_folder(model, folder)
    return config, model, folder


# --- the name table ------------------------------------------------------------------------------

@pytest.mark.parametrize("ours, theirs", [
    ("tok_embeddings", "model.embed_tokens.weight"),
    ("norm", "model.norm.weight"),
    ("output", "lm_head.weight"),
    ("layers.0.attention_norm", "model.layers.0.input_layernorm.weight"),
    ("layers.3.wq", "model.layers.3.self_attn.q_proj.weight"),
    ("layers.12.wo", "model.layers.12.self_attn.o_proj.weight"),
    ("layers.1.ffn_norm", "model.layers.1.post_attention_layernorm.weight"),
    ("layers.1.w1", "model.layers.1.mlp.gate_proj.weight"),
    ("layers.1.w2", "model.layers.1.mlp.down_proj.weight"),
    ("layers.1.w3", "model.layers.1.mlp.up_proj.weight"),
])
def test_hf_name_known_answers(ours, theirs):
    assert W.hf_name(ours) == theirs


def test_name_table_covers_every_weight_and_matches_the_reference(saved):
    config, model, _ = saved
    names = {W.hf_name(name) for name in expected_shapes(config)}
    if config.tie_embeddings:
        names.remove("lm_head.weight")
    assert names == set(R.hf_state_dict(model))


def test_round_trip_through_hf_names_is_exact(saved):
    """Reference (Meta layout) -> hf_state_dict (HF names, half-split rows) -> our loader -> Meta layout again."""
    config, model, _ = saved
    loaded = W.weights_from_tensors(config, hf_tensors(model))
    meta = {name: t.numpy() for name, t in model.state_dict().items()}
    assert np.array_equal(loaded.tok_embeddings, meta["tok_embeddings.weight"])
    assert np.array_equal(loaded.norm, meta["norm.weight"])
    assert np.array_equal(loaded.output, meta["output.weight"])
    assert len(loaded.layers) == config.n_layers
    for i, layer in enumerate(loaded.layers):
        for field, name in META_LAYER.items():
            ours = getattr(layer, field)
            assert ours.dtype == np.float32
            assert np.array_equal(ours, meta[f"layers.{i}.{name}"]), f"layers.{i}.{field}"


def test_weights_are_built_by_keyword_never_splatted():
    """STYLE: `**` splatting of weights hides which weight goes where. The loader, the one place where names are
    translated, and day 6's cells build LayerWeights / ModelWeights with one keyword (or position) per weight."""
    sources = {"tinyllm_lab/weights.py": Path(W.__file__).read_text(encoding="utf-8")}
    notebook = json.loads((ROOT / "notebooks" / "day6_weights.ipynb").read_text(encoding="utf-8"))
    for i, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code":
            lines = "".join(cell["source"]).splitlines()  # without IPython magics (%matplotlib inline): not Python
            sources[f"day 6, cell {i}"] = "\n".join(line for line in lines if not line.lstrip().startswith("%"))
    for where, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("LayerWeights", "ModelWeights")):
                assert all(k.arg is not None for k in node.keywords), f"{where}: {ast.unparse(node)[:80]}"
                assert not any(isinstance(a, ast.Starred) for a in node.args), f"{where}: {ast.unparse(node)[:80]}"


def test_the_reference_keeps_its_own_name_table_and_permutation():
    """On purpose (reference.py's docstring says why): the reference translates names and permutes rows with
    its own code, so its export and import cross-check ours. It shares only the reading of config.json."""
    tree = ast.parse(Path(R.__file__).read_text(encoding="utf-8"))
    ours = {(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            and (node.module or "").startswith("tinyllm_lab") for alias in node.names}
    assert ours == {("tinyllm_lab.config", "ModelConfig"), ("tinyllm_lab.weights", "config_from_hf")}
    assert "config_from_hf" in R.__doc__ and "independent" in R.__doc__


# --- the config ----------------------------------------------------------------------------------

def test_config_round_trips():
    assert W.config_from_hf(json.loads((WEIGHTS / "config.json").read_text(encoding="utf-8"))) == COURSE_MODEL
    for config in [COURSE_MODEL, *CONFIGS.values()]:
        assert W.config_from_hf(R.hf_config(config)) == config
        assert R.config_from_hf(R.hf_config(config)) == config  # the reference reads configs the same way


def test_config_defaults_of_hugging_face():
    hf = R.hf_config(CONFIGS["gqa-tied"])
    for key in ("num_key_value_heads", "head_dim", "tie_word_embeddings", "rope_theta", "rope_parameters",
                "model_type", "hidden_act", "attention_bias", "mlp_bias"):
        del hf[key]
    config = W.config_from_hf(hf)
    assert (config.n_kv_heads, config.head_dim, config.tie_embeddings, config.rope_theta) == (4, 8, False, 10000.0)
    nulls = W.config_from_hf({**R.hf_config(CONFIGS["gqa-tied"]), "num_key_value_heads": None, "head_dim": None})
    assert (nulls.n_kv_heads, nulls.head_dim) == (4, 8)


def test_rope_theta_only_in_rope_parameters():  # transformers 5 writes it there only
    hf = R.hf_config(CONFIGS["mqa-untied"])
    del hf["rope_theta"]
    assert W.config_from_hf(hf).rope_theta == 500.0


@pytest.mark.parametrize("change, problem", [
    ({"model_type": "gemma"}, r"model_type='gemma' \(expected one of \['llama', 'mistral'\]\)"),
    ({"model_type": ["llama"]}, r"model_type=\['llama'\] \(expected one of"),
    ({"hidden_act": {"silu": 1}}, r"hidden_act=\{'silu': 1\} \(expected 'silu' or 'swish'\)"),
    ({"hidden_act": "gelu"}, r"hidden_act='gelu' \(expected 'silu' or 'swish'\)"),
    ({"attention_bias": "false"}, r"attention_bias='false' \(expected true or false\)"),
    ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, r"rope_parameters.rope_type='yarn' \(supported: default, linear, llama3\)"),
    ({"rope_scaling": {"type": "dynamic", "factor": 2.0}}, r"rope_scaling.rope_type='dynamic'"),
    ({"quantization_config": {"quant_method": "gptq"}}, r"quantization_config \(quantized weights"),
    ({"partial_rotary_factor": 0.5}, r"partial_rotary_factor=0.5 \(expected 1\)"),
    ({"attention_bias": True}, r"attention_bias=true"),
    ({"mlp_bias": True}, r"mlp_bias=true"),
    ({"rope_parameters": {"rope_type": "llama3", "factor": 8.0, "rope_theta": 5e5}}, r"RoPE scaling rope_parameters"),
    ({"rope_scaling": {"type": "linear", "factor": 2.0}}, r"RoPE scaling rope_scaling"),
])
def test_config_refuses_unsupported_features(change, problem):
    hf = {**R.hf_config(COURSE_MODEL), **change}
    with pytest.raises(ValueError, match=r"unsupported Hugging Face config: .*" + problem):
        W.config_from_hf(hf)


def test_config_lists_every_unsupported_feature_at_once():
    hf = {**R.hf_config(COURSE_MODEL), "hidden_act": "relu", "mlp_bias": True}
    with pytest.raises(ValueError, match=r"hidden_act='relu' .*; mlp_bias=true"):
        W.config_from_hf(hf)


def test_plain_rope_scaling_entries_are_accepted():
    plain = {"rope_type": "default", "rope_theta": 1e4}
    hf = {**R.hf_config(COURSE_MODEL), "rope_scaling": None, "rope_parameters": plain}
    assert W.config_from_hf(hf) == COURSE_MODEL


@pytest.mark.parametrize("key", ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                                 "vocab_size", "max_position_embeddings", "rms_norm_eps"])
@pytest.mark.parametrize("null", [False, True])
def test_config_names_a_missing_key(key, null):
    hf = R.hf_config(COURSE_MODEL)
    if null:
        hf[key] = None  # a required key has no default: null is as good as absent
    else:
        del hf[key]
    with pytest.raises(ValueError, match=f"config.json: no {key} \\(absent or null\\)"):
        W.config_from_hf(hf)


def test_config_values_are_validated_by_model_config():
    with pytest.raises(ValueError, match=r"n_heads = 4 is not divisible by n_kv_heads = 3 .*"
                                         r"num_attention_heads=4, num_key_value_heads=3"):
        W.config_from_hf({**R.hf_config(COURSE_MODEL), "num_key_value_heads": 3})


@pytest.mark.parametrize("change", [
    {"num_attention_heads": 0, "head_dim": None},   # no head_dim: hidden_size // 0 is not computed
    {"num_attention_heads": -4, "head_dim": None},
    {"num_key_value_heads": 0},                     # an explicit 0 is not "absent"
    {"head_dim": 0}, {"hidden_size": 0}, {"num_hidden_layers": -1}, {"vocab_size": 0},
    {"max_position_embeddings": 0}, {"intermediate_size": -5},
])
def test_config_explicit_zeros_and_negatives_are_refused_naming_the_key(change):
    hf = {key: value for key, value in {**R.hf_config(COURSE_MODEL), **change}.items() if value is not None}
    key, value = next(iter(change.items()))
    with pytest.raises(ValueError, match=rf"config.json: {key}={value} \(expected an integer >= 1\)"):
        W.config_from_hf(hf)


@pytest.mark.parametrize("key, value", [("rms_norm_eps", float("inf")), ("rms_norm_eps", float("nan")),
                                        ("rms_norm_eps", 0.0), ("rms_norm_eps", -1e-5), ("rope_theta", float("inf")),
                                        ("rope_theta", 0), ("rope_theta", 10 ** 400)])
def test_config_numbers_must_be_finite_and_positive(key, value):
    hf = {**R.hf_config(COURSE_MODEL), key: value}
    hf.pop("rope_parameters")  # rope_theta is read from there when it is given
    with pytest.raises(ValueError, match=rf"config.json: {key}=.* \(expected a finite number > 0\)"):
        W.config_from_hf(hf)


@pytest.mark.parametrize("text, problem", [
    ('"rms_norm_eps": 1e999', r"rms_norm_eps=inf \(expected a finite number > 0\)"),          # JSON for infinity
    ('"rms_norm_eps": NaN', r"rms_norm_eps=nan \(expected a finite number > 0\)"),
    ('"rope_theta": Infinity', r"rope_parameters.rope_theta=inf|rope_theta=inf"),
    ('"vocab_size": 1' + "0" * 5000, r"vocab_size=<an integer of 5001 digits> \(expected a number of at most 20 digits\)"),
])
def test_config_json_text_with_non_finite_or_huge_numbers(tmp_path, text, problem):
    """The numbers as JSON text, through load_model's own reader: Python's json turns 1e999 into inf."""
    R.save_hf_folder(reference_model(CONFIGS["gqa-tied"]), tmp_path)
    hf = R.hf_config(CONFIGS["gqa-tied"])
    key = text.split('"')[1]
    hf.pop(key)
    hf.pop("rope_parameters")
    body = json.dumps(hf)
    (tmp_path / "config.json").write_text(body[:-1] + ", " + text + "}", encoding="utf-8")
    with pytest.raises(ValueError, match=problem):
        W.load_model(tmp_path)


@pytest.mark.parametrize("key, value, expected", [
    ("rms_norm_eps", "abc", "a number"),
    ("rms_norm_eps", True, "a number"),
    ("rope_parameters.rope_theta", "1e4", "a number"),
    ("num_attention_heads", 4.0, "an integer"),
    ("num_attention_heads", "4", "an integer"),
    ("num_key_value_heads", True, "an integer"),
    ("head_dim", 64.5, "an integer"),
    ("hidden_size", [256], "an integer"),
    ("max_position_embeddings", 1e3, "an integer"),
    ("tie_word_embeddings", "false", "true or false"),
    ("tie_word_embeddings", 0, "true or false"),
])
def test_config_values_of_the_wrong_type_are_named(key, value, expected):
    hf = R.hf_config(COURSE_MODEL)
    if key.startswith("rope_parameters."):
        hf["rope_parameters"] = {**hf["rope_parameters"], "rope_theta": value}
    else:
        hf[key] = value
    with pytest.raises(ValueError, match=rf"config.json: {re.escape(f'{key}={value!r}')} \(expected {expected}\)"):
        W.config_from_hf(hf)


def test_config_type_errors_are_listed_in_one_error_before_any_arithmetic():
    hf = {**R.hf_config(COURSE_MODEL), "rms_norm_eps": "abc", "num_attention_heads": "4", "vocab_size": 1.6e4}
    del hf["head_dim"]  # the default would divide hidden_size by num_attention_heads
    del hf["hidden_size"]
    with pytest.raises(ValueError) as info:
        W.config_from_hf(hf)
    message = str(info.value)
    for part in ["no hidden_size", "num_attention_heads='4' (expected an integer)",
                 "vocab_size=16000.0 (expected an integer)", "rms_norm_eps='abc' (expected a number)"]:
        assert part in message, part


def test_rope_theta_inside_rope_parameters_is_type_checked_too():
    hf = R.hf_config(COURSE_MODEL)
    del hf["rope_theta"]
    hf["rope_parameters"] = {"rope_type": "default", "rope_theta": "10000"}
    with pytest.raises(ValueError, match=r"rope_parameters.rope_theta='10000' \(expected a number\)"):
        W.config_from_hf(hf)


def test_config_null_means_the_default_for_every_optional_key():
    hf = {**R.hf_config(COURSE_MODEL), "num_key_value_heads": None, "head_dim": None, "rope_theta": None,
          "tie_word_embeddings": None, "rope_parameters": None}
    config = W.config_from_hf(hf)
    assert (config.n_kv_heads, config.head_dim, config.rope_theta, config.tie_embeddings) == (4, 64, 10000.0, False)
    assert type(config.norm_eps) is type(config.rope_theta) is float


def test_config_integer_rope_theta_and_eps_are_numbers():
    hf = {**R.hf_config(COURSE_MODEL), "rope_theta": 500000, "rms_norm_eps": 1}
    del hf["rope_parameters"]
    config = W.config_from_hf(hf)
    assert (config.rope_theta, config.norm_eps) == (500000.0, 1.0)
    assert type(config.rope_theta) is type(config.norm_eps) is float


def test_config_derived_head_dim_that_does_not_fit_names_its_keys():
    hf = {**R.hf_config(COURSE_MODEL), "hidden_size": 260}  # head_dim 64 given: 4 * 64 != 260 is allowed
    assert (W.config_from_hf(hf).dim, W.config_from_hf(hf).head_dim) == (260, 64)
    del hf["head_dim"]  # the default, 260 // 4 = 65, is odd
    with pytest.raises(ValueError, match=r"head_dim = 65 must be even .*head_dim absent or null: "
                                         r"hidden_size // num_attention_heads"):
        W.config_from_hf(hf)


@pytest.mark.parametrize("key", ["rope_parameters", "rope_scaling"])
def test_config_rope_entries_must_be_objects(key):
    with pytest.raises(ValueError, match=rf"{key}='plain' \(expected a JSON object\)"):
        W.config_from_hf({**R.hf_config(COURSE_MODEL), key: "plain"})


# --- one aggregated error ------------------------------------------------------------------------

def test_one_error_lists_every_missing_unexpected_misshapen_and_mistyped_tensor():
    config = CONFIGS["gqa-tied"]
    tensors = hf_tensors(reference_model(config))
    del tensors["model.layers.1.mlp.up_proj.weight"]
    del tensors["model.norm.weight"]
    tensors["model.layers.2.input_layernorm.weight"] = np.ones(32, np.float32)
    tensors["model.layers.0.self_attn.k_proj.weight"] = np.zeros((8, 32), np.float32)   # 1 kv head, not 2
    tensors["model.layers.1.self_attn.o_proj.weight"] = np.zeros((32, 16), np.float32)
    tensors["model.layers.0.input_layernorm.weight"] = np.ones(32, np.int64)
    tensors["model.layers.0.ffn_norm.weight"] = np.ones(32, np.float64)                 # unexpected, not mistyped
    with pytest.raises(ValueError) as info:
        W.weights_from_tensors(config, tensors)
    message = str(info.value)
    assert "(2 missing, 2 unexpected, 2 wrong shape, 1 wrong dtype)" in message
    for line in ["missing: model.layers.1.mlp.up_proj.weight (expected shape [64, 32])",
                 "missing: model.norm.weight (expected shape [32])",
                 "unexpected: model.layers.2.input_layernorm.weight [32]",
                 "unexpected: model.layers.0.ffn_norm.weight [32]",
                 "wrong shape: model.layers.0.self_attn.k_proj.weight expected [16, 32], found [8, 32]",
                 "wrong shape: model.layers.1.self_attn.o_proj.weight expected [32, 32], found [32, 16]",
                 "wrong dtype: model.layers.0.input_layernorm.weight is int64"]:
        assert f"\n  {line}" in message, line
    assert len(message.splitlines()) == 1 + 7


def test_an_empty_checkpoint_is_refused_by_its_layer_count():
    with pytest.raises(ValueError, match=r"num_hidden_layers=3, but the files hold 0 layers \(none\)$"):
        W.weights_from_tensors(CONFIGS["mha-untied-3"], {})


def test_many_problems_are_counted_not_listed():
    config = CONFIGS["mha-untied-3"]
    tensors = {name: np.zeros(1, np.float32) for name in hf_tensors(reference_model(config))}  # every shape wrong
    with pytest.raises(ValueError) as info:
        W.weights_from_tensors(config, tensors)
    n = len(expected_shapes(config))
    message = str(info.value)
    assert f"({n} wrong shape)" in message and message.endswith(f"... and {n - W.MAX_PROBLEMS} more")
    assert len(message.splitlines()) == 1 + W.MAX_PROBLEMS + 1


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.bool_])
def test_tensors_of_other_dtypes_are_refused(dtype):
    config = CONFIGS["gqa-tied"]
    tensors = hf_tensors(reference_model(config))
    tensors["model.layers.1.self_attn.v_proj.weight"] = tensors["model.layers.1.self_attn.v_proj.weight"].astype(dtype)
    with pytest.raises(ValueError, match=rf"wrong dtype: model.layers.1.self_attn.v_proj.weight is {np.dtype(dtype)}"):
        W.weights_from_tensors(config, tensors)


def test_float16_arrays_are_widened_exactly():
    config = CONFIGS["gqa-tied"]
    tensors = {name: a.astype(np.float16) for name, a in hf_tensors(reference_model(config)).items()}
    loaded = W.weights_from_tensors(config, tensors)
    assert loaded.layers[0].w2.dtype == np.float32
    assert np.array_equal(loaded.layers[0].w2, tensors["model.layers.0.mlp.down_proj.weight"].astype(np.float32))


def test_non_finite_weights_are_named():
    config = CONFIGS["gqa-tied"]
    tensors = hf_tensors(reference_model(config))
    tensors["model.layers.0.mlp.down_proj.weight"] = tensors["model.layers.0.mlp.down_proj.weight"].copy()
    tensors["model.layers.0.mlp.down_proj.weight"][3, 5] = np.nan
    tensors["model.norm.weight"] = np.full(32, np.inf, np.float32)
    with pytest.raises(ValueError, match=r"non-finite weights in 2 tensor\(s\)") as info:
        W.weights_from_tensors(config, tensors)
    assert "'model.layers.0.mlp.down_proj.weight' (1 nan, 0 inf" in str(info.value)
    assert "'model.norm.weight' (0 nan, 32 inf" in str(info.value)


# --- tied and untied heads -------------------------------------------------------------------------

def test_tied_head_is_the_embedding_array():
    config = CONFIGS["gqa-tied"]
    loaded = W.weights_from_tensors(config, hf_tensors(reference_model(config)))
    assert loaded.output is loaded.tok_embeddings


def test_untied_config_loads_lm_head():
    config = CONFIGS["mqa-untied"]
    tensors = hf_tensors(reference_model(config))
    loaded = W.weights_from_tensors(config, tensors)
    assert loaded.output is not loaded.tok_embeddings
    assert np.array_equal(loaded.output, tensors["lm_head.weight"])
    assert not np.array_equal(loaded.output, loaded.tok_embeddings)


def test_untied_config_without_lm_head_names_it_missing():
    config = CONFIGS["mqa-untied"]
    tensors = hf_tensors(reference_model(config))
    del tensors["lm_head.weight"]
    with pytest.raises(ValueError, match=r"\(1 missing\):\n  missing: lm_head.weight \(expected shape \[64, 48\]\)$"):
        W.weights_from_tensors(config, tensors)


def test_tied_config_with_a_stored_lm_head_is_refused_even_if_equal():
    """Our choice: a head the config says is not there is unexpected, equal to the embedding or not."""
    config = CONFIGS["gqa-tied"]
    tensors = hf_tensors(reference_model(config))
    for head in (tensors["model.embed_tokens.weight"].copy(), np.zeros((96, 32), np.float32)):
        with pytest.raises(ValueError, match=r"unexpected: lm_head.weight \[96, 32\] \(config.json ties the head"):
            W.weights_from_tensors(config, {**tensors, "lm_head.weight": head})


# --- load_model: folders and files ---------------------------------------------------------------

def test_missing_files_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"has no config.json \(expected a Hugging Face model folder\)$"):
        W.load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(R.hf_config(CONFIGS["gqa-tied"])), encoding="utf-8")
    with pytest.raises(ValueError, match="has no model.safetensors or model.safetensors.index.json$"):
        W.load_model(tmp_path)
    with pytest.raises(ValueError, match="no such folder is not a folder"):
        W.load_model(tmp_path / "no such folder")
    with pytest.raises(ValueError, match="config.json is not a folder"):
        W.load_model(tmp_path / "config.json")


@pytest.mark.parametrize("text, problem", [("{'hidden_size': 32}", "is not a JSON file"),
                                           ("[1, 2]", "holds a JSON array, expected an object"),
                                           ("9" * 5000, "holds a JSON number, expected an object"),
                                           ("[" * 100000 + "]" * 100000, r"is not a usable JSON file \(nested too deeply\)")])
def test_config_json_that_is_not_a_json_object(tmp_path, text, problem):
    R.save_hf_folder(reference_model(CONFIGS["gqa-tied"]), tmp_path)
    (tmp_path / "config.json").write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=problem):
        W.load_model(tmp_path)


def test_a_checkpoint_for_another_config_is_refused_by_load_model(tmp_path):
    R.save_hf_folder(reference_model(CONFIGS["gqa-tied"]), tmp_path)
    hf = R.hf_config(CONFIGS["gqa-tied"])
    (tmp_path / "config.json").write_text(json.dumps({**hf, "num_hidden_layers": 1}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"\(9 unexpected\):\n  unexpected: model.layers.1."):
        W.load_model(tmp_path)


# --- parity: small random models, every layout, against the reference ------------------------------

def test_small_models_match_the_reference(saved):
    config, model, folder = saved
    ours = W.load_model(folder)
    assert ours.config == config
    tokens = tokens_for(config)
    prefill, decode = numpy_logits(ours, tokens)
    ref_prefill, ref_decode = reference_logits(model, torch.from_numpy(tokens))
    assert prefill.dtype == decode.dtype == np.float32
    assert prefill.shape == (len(tokens), config.vocab_size)
    assert max_diff(prefill, ref_prefill) < 1e-5
    assert max_diff(decode, ref_decode) < 1e-5
    assert float(ref_prefill.abs().max()) > 1.0  # the logits are not all tiny: the tolerance means something


def test_without_the_permutation_the_logits_differ(saved, monkeypatch):
    """The parity test above can fail: skip the RoPE permutation and the logits move far beyond 1e-5."""
    config, model, folder = saved
    monkeypatch.setattr(W, "half_split_to_interleaved_rows", lambda w, n_heads: w)
    tokens = tokens_for(config)
    unpermuted = W.load_model(folder)
    prefill = unpermuted.forward(tokens, unpermuted.new_cache())
    ref_prefill, _ = reference_logits(model, torch.from_numpy(tokens))
    assert max_diff(prefill, ref_prefill) > 1e-2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_f16_and_bf16_checkpoints_load_as_float32(tmp_path, dtype):
    """A 16-bit file loads widened to float32; its logits equal the reference's on the same rounded weights,
    and are close to those of the float32 original: within 10 units of the format's eps, relative to the
    largest logit (measured: about 1.5 eps for F16, 2.2 for BF16)."""
    config = CONFIGS["gqa-tied"]
    original = reference_model(config)
    R.save_hf_folder(original, tmp_path)
    stored = torch_load_file(str(tmp_path / "model.safetensors"))
    torch_save_file({name: t.to(dtype) for name, t in stored.items()}, str(tmp_path / "model.safetensors"),
                    metadata={"format": "pt"})
    ours = W.load_model(tmp_path)
    wq = ours.weights.layers[1].wq
    assert wq.dtype == ours.weights.tok_embeddings.dtype == np.float32
    rounded = stored["model.layers.1.self_attn.q_proj.weight"].to(dtype).float()
    expected = R.half_split_to_interleaved(rounded, config.n_heads, config.head_dim).numpy()
    assert np.array_equal(wq, expected)  # widening is exact
    tokens = tokens_for(config)
    prefill, decode = numpy_logits(ours, tokens)
    same_file, _ = reference_logits(R.load_hf_folder(tmp_path), torch.from_numpy(tokens))
    assert max_diff(prefill, same_file) < 1e-5
    full, _ = reference_logits(original, torch.from_numpy(tokens))
    scale = float(full.abs().max())
    assert 0 < max_diff(prefill, full) < 10 * torch.finfo(dtype).eps * scale


# --- transformers: somebody else's implementation ------------------------------------------------

def test_transformers_agrees_with_our_logits():
    transformers = pytest.importorskip("transformers")
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    tokens = safetensors.numpy.load_file(str(WEIGHTS / "golden.safetensors"))["tokens"]  # the golden prompt
    hf = transformers.LlamaForCausalLM.from_pretrained(str(WEIGHTS), dtype=torch.float32, local_files_only=True).eval()
    with torch.inference_mode():
        theirs = hf(torch.from_numpy(tokens)[None]).logits[0]
    model = W.load_model(WEIGHTS)
    ours = model.forward(tokens, model.new_cache())
    assert theirs.dtype == torch.float32 and ours.dtype == np.float32
    assert ours.shape == tuple(theirs.shape) == (len(tokens), COURSE_MODEL.vocab_size)
    assert max_diff(ours, theirs) < 1e-4


# --- issue 9/10: real folders (shards, RoPE settings, sizes checked before reading, memory) -----------

def shard_folder(tmp_path, config=CONFIGS["mha-untied-3"]):  # -> (folder, weight_map): 3 shards by hand
    R.save_hf_folder(reference_model(config), tmp_path)
    tensors = safetensors.numpy.load_file(str(tmp_path / "model.safetensors"))
    (tmp_path / "model.safetensors").unlink()
    names = sorted(tensors)
    weight_map = {}
    for k in range(3):
        shard = f"model-0000{k + 1}-of-00003.safetensors"
        part = {name: tensors[name] for name in names[k::3]}
        safetensors.numpy.save_file(part, str(tmp_path / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    return tmp_path, weight_map


def test_sharded_folder_loads_like_the_single_file(tmp_path):
    config = CONFIGS["mha-untied-3"]
    single = tmp_path / "single"
    R.save_hf_folder(reference_model(config), single)
    folder, _ = shard_folder(tmp_path / "sharded", config)
    a, b = W.load_model(single), W.load_model(folder)
    tokens = tokens_for(config)
    assert np.array_equal(a.forward(tokens, a.new_cache()), b.forward(tokens, b.new_cache()))


def write_index(folder, weight_map):
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}), encoding="utf-8")


def test_a_missing_shard_is_named(tmp_path):
    folder, _ = shard_folder(tmp_path)
    (folder / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(ValueError, match=r"lists 1 shard\(s\) that .* does not hold: model-00002-of-00003.safetensors$"):
        W.load_model(folder)


@pytest.mark.parametrize("shard", ["../model.safetensors", "/etc/passwd", "sub/x.safetensors", ".."])
def test_shard_names_must_stay_in_the_folder(tmp_path, shard):
    folder, weight_map = shard_folder(tmp_path)
    write_index(folder, {**weight_map, "model.norm.weight": shard})
    with pytest.raises(ValueError, match="shard names must be file names in the same folder"):
        W.load_model(folder)


@pytest.mark.parametrize("index, problem", [
    ({"weight_map": ["a"]}, "weight_map must be an object"), ({"weight_map": {"a": 3}}, "weight_map must be an object"),
    ({}, "weight_map must be an object"), ([], "holds a JSON array, expected an object"),
])
def test_malformed_index(tmp_path, index, problem):
    folder, _ = shard_folder(tmp_path)
    (folder / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    with pytest.raises(ValueError, match=problem):
        W.load_model(folder)


def test_index_and_shards_that_disagree(tmp_path):
    folder, weight_map = shard_folder(tmp_path)
    moved = {**weight_map, "model.norm.weight": "model-00001-of-00003.safetensors"}
    assert weight_map["model.norm.weight"] != moved["model.norm.weight"]
    write_index(folder, moved)
    with pytest.raises(ValueError, match=r"puts model.norm.weight in model-00001-of-00003.safetensors, which does not hold it"):
        W.load_model(folder)
    write_index(folder, {**weight_map, "model.extra.weight": "model-00001-of-00003.safetensors"})
    with pytest.raises(ValueError, match=r"puts model.extra.weight in model-00001"):
        W.load_model(folder)


def test_a_tensor_in_two_shards(tmp_path):
    folder, weight_map = shard_folder(tmp_path)
    tensors = safetensors.numpy.load_file(str(folder / "model-00001-of-00003.safetensors"))
    tensors["model.norm.weight"] = np.ones(32, np.float32)
    safetensors.numpy.save_file(tensors, str(folder / "model-00001-of-00003.safetensors"))
    with pytest.raises(ValueError, match=r"model.norm.weight is in both model-0000\d-of-00003.safetensors and"):
        W.load_model(folder)


def test_a_shard_name_with_a_control_character_is_shown_escaped(tmp_path):
    folder, weight_map = shard_folder(tmp_path)
    write_index(folder, {**weight_map, "model.norm.weight": "s\x00.safetensors"})
    with pytest.raises(ValueError, match=r"does not hold: 's\\x00.safetensors'$"):
        W.load_model(folder)


@pytest.mark.parametrize("target", ["/dev/zero", "folder"])
def test_config_and_weights_must_be_regular_files(tmp_path, target):
    R.save_hf_folder(reference_model(CONFIGS["gqa-tied"]), tmp_path)
    for name in ("config.json", "model.safetensors"):
        path = tmp_path / name
        saved = path.read_bytes()
        path.unlink()
        path.mkdir() if target == "folder" else path.symlink_to(target)
        with pytest.raises(ValueError, match=rf"has no {name}"):
            W.load_model(tmp_path)
        path.rmdir() if target == "folder" else path.unlink()
        path.write_bytes(saved)


def test_huge_layer_count_fails_fast_with_a_short_error(tmp_path):
    R.save_hf_folder(reference_model(CONFIGS["gqa-tied"]), tmp_path)
    hf = R.hf_config(CONFIGS["gqa-tied"])
    (tmp_path / "config.json").write_text(json.dumps({**hf, "num_hidden_layers": 100000}), encoding="utf-8")
    with pytest.raises(ValueError) as info:
        W.load_model(tmp_path)
    assert str(info.value) == ("the checkpoint does not fit the config: config.json's num_hidden_layers=100000, "
                               "but the files hold 2 layers (model.layers.0 .. 1)")


@pytest.mark.parametrize("key, value", [("vocab_size", 10 ** 12), ("hidden_size", 2 ** 40), ("intermediate_size", 10 ** 15)])
def test_huge_sizes_are_compared_with_the_files_not_allocated(tmp_path, key, value):
    R.save_hf_folder(reference_model(CONFIGS["gqa-tied"]), tmp_path)
    hf = {**R.hf_config(CONFIGS["gqa-tied"]), key: value}
    if key == "hidden_size":
        hf["head_dim"] = value // 4
    (tmp_path / "config.json").write_text(json.dumps(hf), encoding="utf-8")
    with pytest.raises(ValueError, match=r"the checkpoint does not fit the config \(.*wrong shape") as info:
        W.load_model(tmp_path)
    assert len(str(info.value)) < 2000


def test_rope_theta_is_read_where_transformers_reads_it():
    """rope_parameters (or rope_scaling) wins over a stale top-level rope_theta, in transformers and here."""
    transformers = pytest.importorskip("transformers")
    base = R.hf_config(CONFIGS["gqa-tied"])
    cases = [{"rope_theta": 1e4, "rope_parameters": {"rope_type": "default", "rope_theta": 5e5}},
             {"rope_theta": 7e5, "rope_parameters": {"rope_type": "default"}},
             {"rope_theta": 3e4, "rope_parameters": None},
             {"rope_parameters": None, "rope_theta": None}]
    for change in cases:
        hf = {**base, **change}
        theirs = transformers.LlamaConfig(**{k: v for k, v in hf.items() if v is not None}).rope_parameters["rope_theta"]
        assert W.config_from_hf(hf).rope_theta == theirs, change
    assert [W.config_from_hf({**base, **c}).rope_theta for c in cases] == [5e5, 7e5, 3e4, 1e4]


LLAMA3 = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 8192, "rope_theta": 5e5}


@pytest.mark.parametrize("change, problem", [
    ({"factor": 0}, r"rope_parameters.factor=0 \(expected a finite number > 0\)"),
    ({"factor": float("inf")}, r"rope_parameters.factor=inf"),
    ({"low_freq_factor": "1"}, r"rope_parameters.low_freq_factor='1' \(expected a number\)"),
    ({"high_freq_factor": None}, r"no rope_parameters.high_freq_factor"),
    ({"high_freq_factor": 1.0}, r"high_freq_factor=1.0 must be larger than low_freq_factor=1.0"),
    ({"original_max_position_embeddings": 8192.5}, r"original_max_position_embeddings=8192.5 \(expected an integer\)"),
])
def test_llama3_rope_parameters_are_checked_by_name(change, problem):
    hf = {**R.hf_config(CONFIGS["gqa-tied"]), "rope_parameters": {**LLAMA3, **change}}
    with pytest.raises(ValueError, match=problem):
        W.rope_scaling_from_hf(hf)


def test_rope_scaling_is_read_and_the_plain_config_refuses_it():
    hf = {**R.hf_config(CONFIGS["gqa-tied"]), "rope_parameters": LLAMA3}
    assert W.rope_scaling_from_hf(hf) == {k: v for k, v in LLAMA3.items() if k != "rope_theta"}
    linear = {**hf, "rope_parameters": {"rope_type": "linear", "factor": 2.0}}
    assert W.rope_scaling_from_hf(linear) == {"rope_type": "linear", "factor": 2.0}
    with pytest.raises(ValueError, match="RoPE scaling rope_parameters=.*load_model applies it"):
        W.config_from_hf(hf)  # the reference builds from a ModelConfig alone: it must not run it unscaled
    assert W.config_from_hf(hf, rope_scaling=True).rope_theta == 5e5


def test_linear_rope_scaling_matches_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = CONFIGS["gqa-tied"]
    R.save_hf_folder(reference_model(config), tmp_path)
    hf = {**R.hf_config(config), "rope_parameters": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1e4}}
    (tmp_path / "config.json").write_text(json.dumps(hf), encoding="utf-8")
    theirs = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32).eval()
    tokens = tokens_for(config)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(tokens)[None]).logits[0]
    ours = W.load_model(tmp_path)
    assert max_diff(ours.forward(tokens, ours.new_cache()), expected) < 1e-4
    unscaled, _ = reference_logits(reference_model(config), torch.from_numpy(tokens))
    assert max_diff(unscaled, expected) > 1e-2  # the scaling changes the logits: the check above can fail


PEAK_SCRIPT = """
import re, sys
from pathlib import Path
from tinyllm_lab.weights import load_model
def peak():  # this process's peak resident memory in bytes (ru_maxrss would include the parent's, kept across exec)
    return 1024 * int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
before = peak()
model = load_model(sys.argv[1])
print(before, peak())
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory from Linux's /proc")
def test_loading_bf16_peaks_under_1_5x_the_float32_weights(tmp_path):
    """Read through memory maps, widened once: the peak rise while loading stays under 1.5 x the float32 weights."""
    import subprocess
    import sys
    config = ModelConfig(dim=512, n_layers=4, n_heads=8, n_kv_heads=2, head_dim=64, hidden_dim=2048,
                         vocab_size=16384, max_seq_len=64)
    generator = torch.Generator().manual_seed(0)
    shapes = {W.hf_name(name): shape for name, shape in expected_shapes(config).items() if name != "output"}
    tensors = {name: (torch.randn(shape, generator=generator) * 0.02).to(torch.bfloat16) for name, shape in shapes.items()}
    torch_save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "config.json").write_text(json.dumps(R.hf_config(config)), encoding="utf-8")
    float32_bytes = sum(4 * t.numel() for t in tensors.values())
    result = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                            check=True)
    before, after = map(int, result.stdout.split())
    ratio = (after - before) / float32_bytes
    print(f"peak rise {(after - before) / 2**20:.0f} MiB for {float32_bytes / 2**20:.0f} MiB of float32 weights: {ratio:.2f}x")
    assert ratio < 1.5


def test_far_too_few_tensors_for_the_layers_fails_before_listing_them(tmp_path):
    """A file whose header names 100000 layers, one empty tensor each, for a config of 100000 layers: the
    count (900002 needed) is compared before 900002 names are built."""
    header = {f"model.layers.{i}.x": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(100000)}
    raw = json.dumps(header).encode()
    (tmp_path / "model.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw)
    hf = {**R.hf_config(CONFIGS["gqa-tied"]), "num_hidden_layers": 100000}
    (tmp_path / "config.json").write_text(json.dumps(hf), encoding="utf-8")
    with pytest.raises(ValueError) as info:
        W.load_model(tmp_path)
    assert str(info.value) == ("the checkpoint does not fit the config: it needs 900002 tensors (config.json's "
                               "num_hidden_layers=100000), the files hold 100000")


@pytest.mark.parametrize("rope, problem", [
    ({"rope_type": None}, r"rope_parameters.rope_type=None \(supported: default, linear, llama3\)"),
    ({"rope_type": ["llama3"]}, r"rope_parameters.rope_type=\['llama3'\] \(supported"),
    ({"type": 3}, r"rope_parameters.rope_type=3 \(supported"),
])
def test_rope_types_that_are_not_strings(rope, problem):
    hf = {**R.hf_config(CONFIGS["gqa-tied"]), "rope_parameters": rope}
    with pytest.raises(ValueError, match=problem):
        W.config_from_hf(hf, rope_scaling=True)
    with pytest.raises(ValueError, match="is not supported"):
        W.rope_scaling_from_hf(hf)


def test_a_scaling_factor_that_overflows_the_frequencies_is_named(tmp_path):
    R.save_hf_folder(reference_model(CONFIGS["gqa-tied"]), tmp_path)
    hf = {**R.hf_config(CONFIGS["gqa-tied"]), "rope_parameters": {"rope_type": "linear", "factor": 1e-320, "rope_theta": 1e4}}
    (tmp_path / "config.json").write_text(json.dumps(hf), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow warning on the way to the error
        with pytest.raises(ValueError, match=r"RoPE scaling factor=1e-320 makes the frequencies overflow"):
            W.load_model(tmp_path)


def test_a_corrupt_shard_is_named(tmp_path):
    folder, _ = shard_folder(tmp_path)
    path = folder / "model-00003-of-00003.safetensors"
    path.write_bytes(path.read_bytes()[:-4])  # truncated
    with pytest.raises(ValueError, match=r"^model-00003-of-00003.safetensors: safetensors: .*past the end of the"):
        W.load_model(folder)
