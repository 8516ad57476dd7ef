"""trace: the first wrong tensor of a learner's assembled model, with its layer, step and diagnosis.

Each test builds a learner-like package in tmp_path: tinyllm_lab's promoted modules copied into
`<name>/` with their `tinyllm_lab.` imports rewritten (as the lab's promotion into `my_tinyllm/`
does), with one mistake written into the source the way a learner would write it. The package
name is unique per test, so nothing leaks through sys.modules.
"""

import importlib
import re
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

import tinyllm_lab
import tinyllm_lab.kv_cache
import tinyllm_lab.model
import tinyllm_lab.ops
from tinyllm_lab.attention import split_heads
from tinyllm_lab.config import ModelConfig
from tinyllm_lab.lab.trace import DEFAULT_CONFIG, default_weights, trace
from tinyllm_lab.rope import apply_rope, rope_tables

SOURCE = Path(tinyllm_lab.__file__).parent
PROMOTED = sorted(p.stem for p in SOURCE.glob("*.py") if p.read_text(encoding="utf-8").startswith("# Promoted from"))


@pytest.fixture
def learner_package(tmp_path):
    """make(edits) -> a learner-like package; edits: {(module, old source text): new source text}."""
    made = []

    def make(edits=None):
        name = f"learner_{uuid.uuid4().hex[:8]}"
        package = tmp_path / name
        package.mkdir()
        (package / "__init__.py").write_text("")
        pattern = re.compile(r"\btinyllm_lab(\.| import )(" + "|".join(PROMOTED) + r")\b")
        unused = dict(edits or {})
        for module in PROMOTED:
            text = pattern.sub(lambda m: f"{name}{m.group(1)}{m.group(2)}",
                               (SOURCE / f"{module}.py").read_text(encoding="utf-8"))
            for (where, old), new in (edits or {}).items():
                if where == module:
                    if text.count(old) != 1:
                        raise ValueError(f"the mistake's source text occurs {text.count(old)} times in {module}.py "
                                         f"(expected once): {old!r}")
                    text = text.replace(old, new)
                    unused.pop((where, old))
            (package / f"{module}.py").write_text(text, encoding="utf-8")
        if unused:
            raise ValueError(f"edits for modules that were not copied: {list(unused)}")
        made.append(name)
        return importlib.import_module(name)

    sys.path.insert(0, str(tmp_path))
    yield make
    sys.path.remove(str(tmp_path))
    for name in made:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


def test_the_copy_imports_its_own_modules(learner_package):  # the helper really builds a separate package
    pkg = learner_package()
    model = importlib.import_module(pkg.__name__ + ".model")
    assert model.rms_norm.__module__ == pkg.__name__ + ".ops"
    assert model.rms_norm is not tinyllm_lab.ops.rms_norm


def test_the_unmodified_copy_passes(learner_package):
    result = trace(learner_package())
    assert result.passed, result.report
    assert result.status == "passing" and result.name is None
    assert result.not_captured == []
    n_layers = DEFAULT_CONFIG.n_layers
    assert result.compared == 2 + 4 * (1 + 19 * n_layers + 2)  # tables, then per step: embedding, layers, norm, logits
    assert repr(result) == result.report and "passing" in result.report


def test_by_import_name_and_prefill_only(learner_package):
    name = learner_package().__name__
    result = trace(name, decode_steps=0)
    assert result.passed and result.compared == 2 + 1 + 19 * DEFAULT_CONFIG.n_layers + 2, result.report
    assert "then 0 decode steps" in result.report


def test_the_reference_package_itself_passes():
    result = trace(tinyllm_lab)
    assert result.passed, result.report


def test_default_weights_make_the_mistakes_visible():
    """Query head 0's scores pass 88 (where exp overflows float32); the other heads stay soft."""
    config, w = DEFAULT_CONFIG, default_weights()
    prompt = np.random.default_rng(1).integers(0, config.vocab_size, size=6)
    x = tinyllm_lab.ops.rms_norm(w.tok_embeddings[prompt], w.layers[0].attention_norm)  # [T, D]
    cos, sin = rope_tables(config.head_dim, config.max_seq_len)
    q = apply_rope(split_heads(x @ w.layers[0].wq.T, config.n_heads), cos, sin, np.arange(6))  # [T, H, Dh]
    k = apply_rope(split_heads(x @ w.layers[0].wk.T, config.n_kv_heads), cos, sin, np.arange(6))  # [T, K, Dh]
    scores = np.einsum("thd,shd->hts", q, np.repeat(k, 2, axis=1)) / np.sqrt(config.head_dim)  # [H, T, S]
    causal = np.tril(np.ones((6, 6), dtype=bool))
    assert scores[0][causal].max() > 100
    assert np.abs(scores[1:][:, causal]).max() < 20
    with np.errstate(over="ignore"):
        assert np.exp(scores[0][causal].astype(np.float32)).max() == np.inf  # the naive softmax's overflow


MISTAKES = {  # id: (edits, expected name, layer, step, model-level mistake id)
    "rope_positions_not_offset": (
        {("kv_cache", "positions = np.arange(start, start + T)"): "positions = np.arange(T)"},
        "q after RoPE", 0, "decode step 1", "positions_restart"),
    "attention_residual_missing": (
        {("model", "    h = x + a\n"): "    h = a\n"}, "residual h", 0, "prefill", "attention_residual_missing"),
    "ffn_residual_missing": (
        {("model", "return h + swiglu("): "return swiglu("}, "block output", 0, "prefill", "ffn_residual_missing"),
    "softmax_without_max": (
        {("ops", "e = np.exp(x - x_max)"): "e = np.exp(x)"}, "attention probabilities", 0, "prefill",
        "softmax_no_max"),
    "scale_missing": (
        {("attention", ".reshape(H, T, S) * scale"): ".reshape(H, T, S)"}, "attention probabilities", 0,
        "prefill", "scale_missing"),
    "gate_up_swapped": (
        {("ffn", "gate = silu(linear(x, w_gate))"): "gate = silu(linear(x, w_up))",
         ("ffn", "up = linear(x, w_up)"): "up = linear(x, w_gate)"}, "FFN silu(gate)", 0, "prefill",
        "gate_up_swapped"),
    "final_norm_missing": (
        {("model", "return linear(rms_norm(x, w.norm, self.config.norm_eps), w.output)"): "return linear(x, w.output)"},
        "final norm", None, "prefill", "final_norm_missing"),
    "post_norm": (
        {("model", """    a = cached_self_attention(rms_norm(x, layer.attention_norm, config.norm_eps), layer.wq, layer.wk, layer.wv,
                              layer.wo, cos, sin, config.n_heads, config.n_kv_heads, cache, i, maps)
    h = x + a
    return h + swiglu(rms_norm(h, layer.ffn_norm, config.norm_eps), layer.w1, layer.w3, layer.w2)"""):
         """    a = cached_self_attention(x, layer.wq, layer.wk, layer.wv,
                              layer.wo, cos, sin, config.n_heads, config.n_kv_heads, cache, i, maps)
    h = rms_norm(x + a, layer.attention_norm, config.norm_eps)
    return rms_norm(h + swiglu(h, layer.w1, layer.w3, layer.w2), layer.ffn_norm, config.norm_eps)"""},
        "attention_norm output", 0, "prefill", "post_norm"),
    "norm_weights_swapped": (
        {("model", "cached_self_attention(rms_norm(x, layer.attention_norm,"):
         "cached_self_attention(rms_norm(x, layer.ffn_norm,",
         ("model", "swiglu(rms_norm(h, layer.ffn_norm,"): "swiglu(rms_norm(h, layer.attention_norm,"},
        "attention_norm output", 0, "prefill", "norm_weights_mixed_up"),
    "cache_never_advances_silently": (  # the learner's own cache and model: no checks, pos never moves
        {("kv_cache", "    if cache.written[layer] != cache.pos:"): "    if False:",
         ("kv_cache", "        self.pos = int(end)"): "        pass  # ",
         ("model", "        if (cache.written != cache.pos).any():"): "        if False:"},
        "q after RoPE", 0, "decode step 1", "cache_not_advanced"),
}


@pytest.mark.parametrize("case", list(MISTAKES))
def test_a_mistake_is_found_at_the_right_tensor(learner_package, case):
    edits, name, layer, step, mistake = MISTAKES[case]
    result = trace(learner_package(edits))
    assert not result.passed and result.status == "failing", result.report
    assert (result.name, result.layer, result.step) == (name, layer, step), result.report
    assert result.mistake == mistake, result.report
    assert result.diagnosis and result.diagnosis in result.report
    where = f"`{name}`" + (f" in layer {layer}" if layer is not None else "") + f" at {step}"
    assert where in result.report
    assert result.max_error > 1e-4 and result.expected_shape is not None


def test_positions_not_offset_names_the_position_restart(learner_package):
    result = trace(learner_package(POSITIONS))
    assert "positions restart at 0 instead of continuing from the cache" in result.diagnosis
    assert result.compared > 0 and result.expected_shape == (1, DEFAULT_CONFIG.n_heads, DEFAULT_CONFIG.head_dim)
    assert result.function.rsplit(".", 1)[-1] in ("apply_rope", "cached_self_attention", "block", "Model")


POSITIONS = MISTAKES["rope_positions_not_offset"][0]


def test_every_model_level_mistake_is_triggered_by_a_test():
    catalogued = {m[0] for m in importlib.import_module("tinyllm_lab.lab.trace")._mistakes(default_weights())}
    assert catalogued == {mistake for *_, mistake in MISTAKES.values()}


def test_a_model_that_copies_its_weights(learner_package):
    """The weights are recognised by value when the learner's Model keeps copies."""
    copies = {("model", "self.config, self.weights = config, weights"):
              "self.config, self.weights = config, copy.deepcopy(weights)",
              ("model", "from dataclasses import dataclass"): "import copy\nfrom dataclasses import dataclass"}
    assert trace(learner_package(copies)).passed
    result = trace(learner_package({**copies, **POSITIONS}))
    assert (result.name, result.layer, result.step) == ("q after RoPE", 0, "decode step 1"), result.report


def test_a_tensor_computed_inline_is_listed_and_skipped(learner_package):
    inline = {("kv_cache", "q = apply_rope(split_heads(linear(x, wq), n_heads)"):
              "q = apply_rope(split_heads(x @ wq.T, n_heads)"}
    result = trace(learner_package(inline))
    assert result.passed and result.not_captured == ["q projection"], result.report
    assert "not compared (not among your code's calls of the course functions): q projection" in result.report
    result = trace(learner_package({**inline, **POSITIONS}))
    assert (result.name, result.layer, result.step) == ("q after RoPE", 0, "decode step 1"), result.report


def test_functions_that_fell_back_to_the_reference(learner_package, monkeypatch):
    """As the lab's stand-ins do: a module global bound to the course's function. It is traced, never checked."""
    fallback = {("ops", "def silu(x):"): "from tinyllm_lab.ops import rms_norm, linear  # stand-ins\n\n\ndef silu(x):",
                ("attention", "def self_attention("): "from tinyllm_lab.attention import attention  # stand-in\n\n\n"
                                                      "def self_attention("}
    pkg = learner_package(fallback)
    assert importlib.import_module(pkg.__name__ + ".model").rms_norm is tinyllm_lab.ops.rms_norm
    result = trace(pkg)
    assert result.passed and result.not_captured == [], result.report
    checked = []
    monkeypatch.setattr(importlib.import_module("tinyllm_lab.lab.check"), "check",
                        lambda fn: checked.append(fn) or (_ for _ in ()).throw(ValueError("not checkable")))
    result = trace(learner_package({**fallback, **POSITIONS}))
    assert (result.name, result.layer, result.step) == ("q after RoPE", 0, "decode step 1"), result.report
    assert result.mistake == "positions_restart"
    assert checked and all(fn.__module__.split(".")[0] != "tinyllm_lab" for fn in checked)


def test_forgetting_to_advance_the_course_cache(learner_package):
    """forward checks first that the cache is not half-written: decode step 1 is refused before any tensor."""
    result = trace(learner_package({("model", "        cache.advance(len(tokens))"): "        pass"}))
    assert not result.passed and result.status == "failing", result.report
    assert (result.name, result.step) == (None, "decode step 1"), result.report
    assert result.function.endswith(".model.Model._check_inputs"), result.report
    assert result.compared == 2 + 1 + 19 * DEFAULT_CONFIG.n_layers + 2, result.report  # the whole prefill matched
    assert "your model raised ValueError at decode step 1" in result.report
    assert "forward: the cache is half-written (layers wrote up to [6, 6], pos = 0)" in result.report
    assert result.mistake == "cache_not_advanced" and "never advanced" in result.report


def test_forgetting_to_advance_without_the_half_written_check(learner_package):
    """The query of decode step 1 sits at position 0 first; then the course's cache refuses the second write."""
    result = trace(learner_package({("model", "        cache.advance(len(tokens))"): "        pass",
                                    ("model", "        if (cache.written != cache.pos).any():"): "        if False:"}))
    assert (result.name, result.layer, result.step) == ("q after RoPE", 0, "decode step 1"), result.report
    assert result.mistake == "cache_not_advanced" and "never advanced" in result.report
    assert "afterwards your code raised ValueError at decode step 1: KVCache.update: layer 0 already wrote" in result.report


def test_a_function_not_written_yet(learner_package):
    stub = '    raise NotImplementedError("swiglu (day 4) is not written yet: write its body")\n    D, F ='
    result = trace(learner_package({("ffn", "    D, F ="): stub}))
    assert not result.passed and result.status == "not started"
    assert result.step == "prefill" and result.function.endswith("ffn.swiglu")
    assert "is not written yet" in result.report and "swiglu (day 4) is not written yet" in result.report


def test_globals_are_put_back_also_after_an_error(learner_package):
    before = (tinyllm_lab.model.block, tinyllm_lab.kv_cache.apply_rope, tinyllm_lab.ops.softmax)
    pkg = learner_package({("model", "    h = x + a\n"): "    h = a + undefined_name\n"})
    model_module = importlib.import_module(pkg.__name__ + ".model")
    block = model_module.block
    result = trace(pkg)
    assert result.error.startswith("NameError") and result.step == "prefill"
    assert (tinyllm_lab.model.block, tinyllm_lab.kv_cache.apply_rope, tinyllm_lab.ops.softmax) == before
    assert model_module.block is block


def test_given_config_and_weights(learner_package):
    config = ModelConfig(dim=16, n_layers=1, n_heads=2, n_kv_heads=2, head_dim=8, hidden_dim=32, vocab_size=20,
                         max_seq_len=12, tie_embeddings=False)
    weights = tinyllm_lab.model.random_weights(config, np.random.default_rng(3), std=0.3)
    edits = MISTAKES["rope_positions_not_offset"][0]
    result = trace(learner_package(edits), config=config, weights=weights, tokens=[1, 2, 3], decode_steps=2)
    assert (result.name, result.layer, result.step) == ("q after RoPE", 0, "decode step 1"), result.report
    assert "n_kv_heads=2;" in result.report and "a prompt of 3 tokens, then 2 decode steps" in result.report


def test_the_course_weights_folder(learner_package):
    folder = Path(__file__).parents[1] / "weights"
    if not (folder / "model.safetensors").is_file():
        pytest.skip("the course weights (weights/model.safetensors) are not in this checkout")
    result = trace(learner_package(), weights=folder, decode_steps=1)
    assert result.passed, result.report
    result = trace(learner_package(POSITIONS), weights=folder, decode_steps=1)  # n_kv_heads == n_heads here
    assert (result.name, result.layer, result.step) == ("q after RoPE", 0, "decode step 1"), result.report
    assert result.mistake == "positions_restart"


@pytest.mark.parametrize("kwargs, message", [
    ({"tokens": [0, 48]}, "token ids must lie in 0..47"),
    ({"tokens": [1, 2, 3], "decode_steps": 14}, "3 prompt tokens + 14 decode steps do not fit max_seq_len = 16"),
    ({"tokens": [[1, 2]]}, "tokens must be a non-empty 1-D array of ints"),
    ({"decode_steps": 16}, "16 decode steps leave no room for a prompt in max_seq_len = 16"),
    ({"weights": "no/such/folder", "config": DEFAULT_CONFIG}, "either a weights folder"),
    ({"weights": 3}, "weights must be a weights folder, or ModelWeights"),
    ({"weights": default_weights()}, "ModelWeights given together with its ModelConfig as config; got "
                                     "weights=ModelWeights, config=NoneType"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        trace(tinyllm_lab, **kwargs)


def test_a_package_that_cannot_be_imported():
    with pytest.raises(ValueError, match="cannot import the package 'no_such_learner_package'"):
        trace("no_such_learner_package")


def test_check_diagnosis_is_used_when_available(learner_package, monkeypatch):
    """The learner's function that made the first wrong tensor is checked; its failing check is reported."""
    calls = []

    class Failing:
        passed, diagnosis = False, "a diagnosis from the catalogue"

    def fake_check(fn):
        calls.append(fn.__name__)
        if fn.__name__ == "cached_self_attention":
            return Failing()
        raise ValueError("not checkable")

    monkeypatch.setattr(importlib.import_module("tinyllm_lab.lab.check"), "check", fake_check)
    result = trace(learner_package(MISTAKES["rope_positions_not_offset"][0]))
    assert calls[0] == "apply_rope" and "cached_self_attention" in calls  # innermost first, then its callers
    assert result.check is not None and result.function.endswith("kv_cache.cached_self_attention")
    assert "check(cached_self_attention) fails: a diagnosis from the catalogue" in result.report
    assert importlib.import_module("tinyllm_lab.lab.trace").TraceResult is type(result)
