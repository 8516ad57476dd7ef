"""Real model configurations: our loader against `transformers` on folders that transformers writes itself.

Random-weight `LlamaForCausalLM` / `MistralForCausalLM` folders with the published configurations of
SmolLM2-135M and TinyLlama-1.1B (read from ../shared/tokenizers/) and of Llama-3.2-1B (written out
below: Llama 3 RoPE scaling, rope_theta 500000, tied head), shrunk in depth and width so the tests
stay fast but keeping every feature that changes the arithmetic: head_dim, the GQA ratio, tying, the
RoPE type and theta. Each is saved in F32, F16 and BF16, in one file and sharded; our logits must be
within 1e-4 of transformers' float32 logits at every position of a 64-token prompt, both for the
prefill and for token-by-token decoding.
"""

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from tinyllm_lab.weights import load_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
logging.getLogger("transformers").setLevel(logging.ERROR)  # no "some weights were not initialized" chatter

SHARED = Path(__file__).parents[1].parent / "shared"
TOKENIZERS = SHARED / "tokenizers"
needs_shared = pytest.mark.skipif(not TOKENIZERS.is_dir(), reason=f"{TOKENIZERS} is absent (the published "
                                  "configs of SmolLM2-135M and TinyLlama live there; a learner's clone lacks it)")
TOLERANCE = 1e-4
PROMPT_LEN = 64

# Llama-3.2-1B's published config.json (meta-llama/Llama-3.2-1B, transformers 4.45 format).
LLAMA_3_2_1B = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu",
    "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192,
    "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8, "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0.dev0", "use_cache": True, "vocab_size": 128256,
}
# Mistral-7B-v0.1's published config.json, for model_type "mistral" (sliding_window 4096).
MISTRAL_7B = {
    "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
    "sliding_window": 4096, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "vocab_size": 32000,
}


def shrink(published, kv_heads=1, layers=2, vocab=384, hidden=160):  # published config dict -> a small one
    """Fewer layers, kv heads and vocabulary, same head_dim, GQA ratio, tying, RoPE type and theta.

    Weights are drawn with std 0.07 (not the published 0.02) so the logits are of order 1 and a
    1e-4 bound says something."""
    heads = published["num_attention_heads"]
    ratio = heads // published["num_key_value_heads"]
    head_dim = published.get("head_dim") or published["hidden_size"] // heads
    small = dict(published, num_hidden_layers=layers, num_key_value_heads=kv_heads,
                 num_attention_heads=kv_heads * ratio, hidden_size=kv_heads * ratio * head_dim,
                 intermediate_size=hidden, vocab_size=vocab, initializer_range=0.07)
    return small


def write_folder(published_small, folder, dtype, sharded, seed=0):  # -> the torch model, float32, as saved
    """A random model of this config saved by transformers in `dtype`, sharded or not. The unsharded folder
    gets the published config.json (transformers 4.x keys) back; the sharded one keeps what transformers 5
    writes (rope_parameters), so both layouts of config.json are read."""
    config = transformers.AutoConfig.for_model(**published_small)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # norm weights of 1 would hide a swapped or missing norm
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
    model.to({"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[dtype])
    model.save_pretrained(folder, max_shard_size="100KB" if sharded else "10GB")
    if not sharded:
        (Path(folder) / "config.json").write_text(json.dumps(published_small, indent=2))
    return model


def reference_logits(folder, tokens):  # -> [T, V] float32 numpy, transformers in float32 from the same folder
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].numpy()


def our_logits(folder, tokens):  # -> (prefill [T, V], decode [T, V]) float32
    model = load_model(folder)
    prefill = model.forward(np.array(tokens), model.new_cache())
    cache = model.new_cache()
    decode = np.concatenate([model.forward(np.array([t]), cache) for t in tokens])
    return prefill, decode


def check_against_transformers(folder, vocab_size, seed=1):  # -> max |Δ| over prefill and decode
    tokens = np.random.default_rng(seed).integers(0, vocab_size, PROMPT_LEN).tolist()
    theirs = reference_logits(folder, tokens)
    prefill, decode = our_logits(folder, tokens)
    assert prefill.dtype == decode.dtype == np.float32
    assert np.abs(theirs).max() > 1.0, "logits of order 1: the bound must mean something"
    errors = [float(np.abs(ours - theirs).max()) for ours in (prefill, decode)]
    assert max(errors) < TOLERANCE, f"prefill / decode max |Δ| = {errors} (bound {TOLERANCE})"
    return max(errors)


def published(name):  # -> the published config.json of a model in ../shared/tokenizers
    return json.loads((TOKENIZERS / name / "config.json").read_text())


CASES = [pytest.param("smollm2-135m", marks=needs_shared), pytest.param("tinyllama-1.1b-chat-v1.0", marks=needs_shared),
         "llama-3.2-1b"]


@pytest.mark.parametrize("sharded", [False, True], ids=["one-file", "sharded"])
@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
@pytest.mark.parametrize("name", CASES)
def test_published_configs_match_transformers(tmp_path, name, dtype, sharded):
    config = shrink(LLAMA_3_2_1B if name == "llama-3.2-1b" else published(name))
    write_folder(config, tmp_path, dtype, sharded)
    if sharded:
        assert (tmp_path / "model.safetensors.index.json").is_file() and len(list(tmp_path.glob("*.safetensors"))) > 2
    check_against_transformers(tmp_path, config["vocab_size"])


def test_llama3_rope_tables_match_transformers_far_past_the_original_context(tmp_path):
    """The scaled tables at positions up to 16384, where the scaling matters most, against transformers' rotary embedding."""
    config = shrink(LLAMA_3_2_1B)
    write_folder(config, tmp_path, "F32", sharded=False)
    model = load_model(tmp_path, max_seq_len=16384)
    hf = transformers.AutoConfig.for_model(**config)
    rotary = transformers.models.llama.modeling_llama.LlamaRotaryEmbedding(hf)
    positions = torch.arange(16384)[None]
    cos, sin = rotary(torch.zeros(1, dtype=torch.float32), positions)  # [1, S, Dh]: half-split, each angle twice
    half = config["head_dim"] // 2
    assert np.abs(model.cos - cos[0, :, :half].numpy()).max() < 2e-3  # transformers' angles are float32: ~1e-3 off at 16k
    assert np.abs(model.cos[:64] - cos[0, :64, :half].numpy()).max() < 1e-5
    plain_cos = np.cos(np.outer(np.arange(16384), 500000.0 ** (-np.arange(half) / half)))  # unscaled RoPE
    assert np.abs(model.cos - plain_cos).max() > 0.5, "the scaling changes the tables (else this test proves nothing)"


def test_context_is_sized_by_use(tmp_path):
    config = shrink(LLAMA_3_2_1B)  # max_position_embeddings 131072
    write_folder(config, tmp_path, "BF16", sharded=False)
    default = load_model(tmp_path)
    assert default.config.max_seq_len == 4096 and default.cos.shape == (4096, 32)
    assert default.new_cache().keys.shape == (2, 4096, 1, 64)
    assert load_model(tmp_path, max_seq_len=20).new_cache().keys.shape == (2, 20, 1, 64)
    with pytest.raises(ValueError, match=r"max_seq_len=131073 is outside 1 \.\. 131072"):
        load_model(tmp_path, max_seq_len=131073)
    with pytest.raises(TypeError, match="max_seq_len must be an integer"):
        load_model(tmp_path, max_seq_len=20.0)


@pytest.mark.parametrize("window", [None, 4096], ids=["no-window", "window-4096"])
def test_mistral_matches_transformers(tmp_path, window):
    config = shrink({**MISTRAL_7B, "sliding_window": window})
    write_folder(config, tmp_path, "BF16", sharded=False)
    check_against_transformers(tmp_path, config["vocab_size"])


def test_mistral_window_smaller_than_the_context_is_refused(tmp_path):
    config = shrink({**MISTRAL_7B, "sliding_window": 32})
    write_folder(config, tmp_path, "F32", sharded=False)
    with pytest.raises(ValueError, match=r"sliding_window=32 is smaller than the context in use \(max_seq_len=4096\)"):
        load_model(tmp_path)
    model = load_model(tmp_path, max_seq_len=32)  # a context the window covers: plain causal attention
    assert model.config.max_seq_len == 32


def test_tied_config_with_a_stored_head_uses_the_stored_head_like_transformers(tmp_path):
    from safetensors.torch import load_file, save_file
    config = shrink(LLAMA_3_2_1B)
    write_folder(config, tmp_path, "F32", sharded=False)
    tensors = load_file(tmp_path / "model.safetensors")
    assert "lm_head.weight" not in tensors  # transformers stores a tied head once
    tensors["lm_head.weight"] = 0.1 * torch.randn_like(tensors["model.embed_tokens.weight"])
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    check_against_transformers(tmp_path, config["vocab_size"])
    model = load_model(tmp_path)
    assert not model.config.tie_embeddings
    np.testing.assert_array_equal(model.weights.output, tensors["lm_head.weight"].numpy())


def test_head_dim_other_than_hidden_size_over_heads(tmp_path):
    """Qwen3-like sizes in a Llama config: 4 heads of 64 on a 128-wide residual stream (wq [256, 128], wo [128, 256])."""
    config = dict(shrink(LLAMA_3_2_1B), hidden_size=128)
    write_folder(config, tmp_path, "F32", sharded=False)
    check_against_transformers(tmp_path, config["vocab_size"])
    assert load_model(tmp_path).weights.layers[0].wq.shape == (256, 128)


def test_llama3_rope_frequencies_against_transformers_and_its_refusals():
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from tinyllm_lab.rope import llama3_rope_frequencies, rope_frequencies
    hf = transformers.AutoConfig.for_model(**shrink(LLAMA_3_2_1B))
    theirs, _ = ROPE_INIT_FUNCTIONS["llama3"](hf, "cpu")
    ours = llama3_rope_frequencies(rope_frequencies(64, 500000.0), 32.0, 1.0, 4.0, 8192)
    assert np.abs(ours / theirs.double().numpy() - 1).max() < 1e-6
    for bad, match in [((0.0, 1.0, 4.0, 8192), "factor must be a finite number > 0"),
                       ((32.0, 1.0, float("nan"), 8192), "high_freq_factor must be a finite number > 0"),
                       ((32.0, 4.0, 4.0, 8192), "high_freq_factor=4.0 must be larger than low_freq_factor=4.0"),
                       ((32.0, 1.0, 4.0, True), "original_max_seq_len must be a finite number > 0")]:
        with pytest.raises(ValueError, match=match):
            llama3_rope_frequencies(rope_frequencies(64, 500000.0), *bad)
