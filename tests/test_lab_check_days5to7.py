"""`check` on days 5-7: every check passes on the course's code, and every catalogued mistake is named.

Each catalogued mistake is made again here, independently, the way a learner would write it (not
the catalogue's own code: another loop, another numpy idiom, a class written from scratch), and
`check` must fail on it and name that mistake's id and diagnosis. The ids these learners trigger
must be exactly the catalogue's days 5-7 ids: a diagnosis that no test triggers does not count.
"""

import codecs
import json
import math
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tinyllm_lab.ffn import swiglu
from tinyllm_lab.kv_cache import KVCache, cached_self_attention
from tinyllm_lab.lab import exercises_day5, exercises_day6, exercises_day7, syllabus
from tinyllm_lab.lab.check import check
from tinyllm_lab.model import LayerWeights, ModelWeights, block
from tinyllm_lab.ops import rms_norm
from tinyllm_lab.rope import rope_tables
from tinyllm_lab.sampling import next_token_probs, top_k_filter, top_p_filter
from tinyllm_lab.tokenizer import apply_merges, pretokenize

from test_lab_check import assert_diagnosed

EXERCISES = exercises_day5.EXERCISES + exercises_day6.EXERCISES + exercises_day7.EXERCISES
CATALOGUE = {m.id: (exercise, m) for exercise in EXERCISES for m in exercise.mistakes}
LEARNERS = {}  # mistake id -> (exercise name, a learner's wrong implementation)


def learner(mistake_id, name):
    """Register a learner's wrong implementation of exercise `name` that makes mistake `mistake_id`."""
    def register(impl):
        LEARNERS[mistake_id] = (name, impl)
        return impl
    return register


# --- day 5: block ---------------------------------------------------------------------------

def _attn(h, layer, config, cos, sin, cache, i):
    return cached_self_attention(h, layer.wq, layer.wk, layer.wv, layer.wo, cos, sin, config.n_heads,
                                 config.n_kv_heads, cache, i)


@learner("block.no_attention_residual", "block")
def block_forgets_attention_residual(x, layer, config, cos, sin, cache, i, maps=None):
    x = _attn(rms_norm(x, layer.attention_norm, config.norm_eps), layer, config, cos, sin, cache, i)
    return x + swiglu(rms_norm(x, layer.ffn_norm, config.norm_eps), layer.w1, layer.w3, layer.w2)


@learner("block.no_ffn_residual", "block")
def block_forgets_ffn_residual(x, layer, config, cos, sin, cache, i, maps=None):
    x = x + _attn(rms_norm(x, layer.attention_norm, config.norm_eps), layer, config, cos, sin, cache, i)
    x = swiglu(rms_norm(x, layer.ffn_norm, config.norm_eps), layer.w1, layer.w3, layer.w2)
    return x


@learner("block.post_norm", "block")
def block_post_norm(x, layer, config, cos, sin, cache, i, maps=None):  # "Attention is all you need"
    x = rms_norm(x + _attn(x, layer, config, cos, sin, cache, i), layer.attention_norm, config.norm_eps)
    x = rms_norm(x + swiglu(x, layer.w1, layer.w3, layer.w2), layer.ffn_norm, config.norm_eps)
    return x


@learner("block.norm_weights_swapped", "block")
def block_norms_swapped(x, layer, config, cos, sin, cache, i, maps=None):
    norm_1, norm_2 = layer.ffn_norm, layer.attention_norm
    h = x + _attn(rms_norm(x, norm_1, config.norm_eps), layer, config, cos, sin, cache, i)
    return h + swiglu(rms_norm(h, norm_2, config.norm_eps), layer.w1, layer.w3, layer.w2)


@learner("block.parallel_ffn", "block")
def block_parallel(x, layer, config, cos, sin, cache, i, maps=None):
    a = _attn(rms_norm(x, layer.attention_norm, config.norm_eps), layer, config, cos, sin, cache, i)
    f = swiglu(rms_norm(x, layer.ffn_norm, config.norm_eps), layer.w1, layer.w3, layer.w2)
    return x + a + f


@learner("block.advances_cache", "block")
def block_advances(x, layer, config, cos, sin, cache, i, maps=None):
    h = x + _attn(rms_norm(x, layer.attention_norm, config.norm_eps), layer, config, cos, sin, cache, i)
    out = h + swiglu(rms_norm(h, layer.ffn_norm, config.norm_eps), layer.w1, layer.w3, layer.w2)
    cache.advance(x.shape[0])
    return out


@learner("block.cache_layer_ignored", "block")
def block_layer_zero(x, layer, config, cos, sin, cache, i, maps=None):
    h = x + cached_self_attention(rms_norm(x, layer.attention_norm, config.norm_eps), layer.wq, layer.wk, layer.wv,
                                  layer.wo, cos, sin, config.n_heads, config.n_kv_heads, cache, layer=0)
    return h + swiglu(rms_norm(h, layer.ffn_norm, config.norm_eps), layer.w1, layer.w3, layer.w2)


@learner("block.norm_as_residual", "block")
def block_adds_to_the_normed_stream(x, layer, config, cos, sin, cache, i, maps=None):
    x = rms_norm(x, layer.attention_norm, config.norm_eps)  # x is overwritten: the residual is now the normed copy
    h = x + _attn(x, layer, config, cos, sin, cache, i)
    return h + swiglu(rms_norm(h, layer.ffn_norm, config.norm_eps), layer.w1, layer.w3, layer.w2)


# --- day 5: Model (a learner's class, written from scratch) ----------------------------------

class LearnerModel:
    """A correct model, written as a learner would; the mistakes below change its forward."""

    def __init__(self, config, weights):
        self.config, self.weights = config, weights
        self.cos, self.sin = rope_tables(config.head_dim, config.max_seq_len, config.rope_theta)

    def new_cache(self):
        c = self.config
        return KVCache(c.n_layers, c.max_seq_len, c.n_kv_heads, c.head_dim)

    def run_blocks(self, tokens, cache):
        x = self.weights.tok_embeddings[np.asarray(tokens)]
        for i, layer in enumerate(self.weights.layers):
            x = block(x, layer, self.config, self.cos, self.sin, cache, i)
        return x

    def forward(self, tokens, cache, maps=None):
        x = self.run_blocks(tokens, cache)
        cache.advance(len(tokens))
        return rms_norm(x, self.weights.norm, self.config.norm_eps) @ self.weights.output.T


@learner("Model.no_final_norm", "Model")
class ModelWithoutFinalNorm(LearnerModel):
    def forward(self, tokens, cache, maps=None):
        x = self.run_blocks(tokens, cache)
        cache.advance(len(tokens))
        return x @ self.weights.output.T


@learner("Model.last_row_only", "Model")
class ModelLastLogits(LearnerModel):
    def forward(self, tokens, cache, maps=None):
        logits = super().forward(tokens, cache)
        return logits[-1]  # only the next token matters... for generation


@learner("Model.head_is_embedding", "Model")
class ModelEmbeddingHead(LearnerModel):
    def forward(self, tokens, cache, maps=None):
        x = self.run_blocks(tokens, cache)
        cache.advance(len(tokens))
        return rms_norm(x, self.weights.norm, self.config.norm_eps) @ self.weights.tok_embeddings.T


@learner("Model.cache_not_advanced", "Model")
class ModelNotAdvancing(LearnerModel):
    def forward(self, tokens, cache, maps=None):
        x = self.run_blocks(tokens, cache)
        return rms_norm(x, self.weights.norm, self.config.norm_eps) @ self.weights.output.T


@learner("Model.scaled_embedding", "Model")
class ModelScaledEmbedding(LearnerModel):
    def forward(self, tokens, cache, maps=None):
        x = self.weights.tok_embeddings[np.asarray(tokens)] * math.sqrt(self.config.dim)
        for i, layer in enumerate(self.weights.layers):
            x = block(x, layer, self.config, self.cos, self.sin, cache, i)
        cache.advance(len(tokens))
        return rms_norm(x, self.weights.norm, self.config.norm_eps) @ self.weights.output.T


# --- day 5: sampling --------------------------------------------------------------------------

@learner("top_k_filter.ties_kept", "top_k_filter")
def top_k_threshold(probs, k):
    if k == 0:
        return probs
    kth = np.sort(probs)[::-1][min(k, probs.size) - 1]
    return np.where(probs >= kth, probs, 0.0)


@learner("top_k_filter.ties_to_higher_id", "top_k_filter")
def top_k_reversed_argsort(probs, k):
    if k == 0:
        return probs
    idx = np.argsort(probs)[::-1][:k]
    out = np.zeros_like(probs)
    out[idx] = probs[idx]
    return out


@learner("top_k_filter.zero_keeps_none", "top_k_filter")
def top_k_no_special_case(probs, k):
    out = np.zeros_like(probs)
    for i in sorted(range(len(probs)), key=lambda i: -probs[i])[:k]:
        out[i] = probs[i]
    return out


@learner("top_k_filter.renormalised", "top_k_filter")
def top_k_renormalising(probs, k):
    out = probs.copy()
    if 0 < k < len(probs):
        out[np.argsort(-probs, kind="stable")[k:]] = 0.0
    return out / np.sum(out)


@learner("top_k_filter.smallest_k", "top_k_filter")
def top_k_ascending(probs, k):
    if k == 0 or k >= len(probs):
        return probs
    out = np.zeros_like(probs)
    keep = np.argsort(probs, kind="stable")[:k]
    out[keep] = probs[keep]
    return out


@learner("top_p_filter.drops_crossing_token", "top_p_filter")
def top_p_stops_before_crossing(probs, p):
    if p >= 1:
        return probs
    out, total = np.zeros_like(probs), 0.0
    for i in np.argsort(-probs, kind="stable"):
        if total + probs[i] > p:
            break
        out[i] = probs[i]
        total += probs[i]
    return out


@learner("top_p_filter.one_too_many", "top_p_filter")
def top_p_counts_equal_as_short(probs, p):
    if p >= 1:
        return probs
    order = np.argsort(-probs, kind="stable")
    n = min(int(np.sum(np.cumsum(probs[order]) <= p)) + 1, len(probs))
    out = np.zeros_like(probs)
    out[order[:n]] = probs[order[:n]]
    return out


@learner("top_p_filter.absolute_p", "top_p_filter")
def top_p_mass_before(probs, p):
    if p >= 1:
        return probs
    order = np.argsort(-probs, kind="stable")
    sorted_probs = probs[order]
    keep = (np.cumsum(sorted_probs) - sorted_probs) < p  # the mass before each token is still short of p
    out = np.zeros_like(probs)
    out[order[keep]] = sorted_probs[keep]
    return out


@learner("top_p_filter.unsorted", "top_p_filter")
def top_p_in_id_order(probs, p):
    if p >= 1:
        return probs
    keep = (np.cumsum(probs) - probs) < p * probs.sum()
    return np.where(keep, probs, 0.0)


def _softmax64(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _greedy(logits):
    out = np.zeros(len(logits))
    out[np.argmax(logits)] = 1.0
    return out


@learner("next_token_probs.temperature_after_softmax", "next_token_probs")
def probs_temperature_on_probs(logits, temperature=1.0, top_k=0, top_p=1.0):
    if temperature == 0:
        return _greedy(logits)
    probs = _softmax64(np.asarray(logits, dtype=np.float64)) / temperature
    probs = top_p_filter(top_k_filter(probs, top_k), top_p)
    return probs / probs.sum()


@learner("next_token_probs.not_renormalised", "next_token_probs")
def probs_left_unnormalised(logits, temperature=1.0, top_k=0, top_p=1.0):
    if temperature == 0:
        return _greedy(logits)
    probs = _softmax64(np.asarray(logits, dtype=np.float64) / temperature)
    return top_p_filter(top_k_filter(probs, top_k), top_p)


@learner("next_token_probs.top_p_before_top_k", "next_token_probs")
def probs_nucleus_first(logits, temperature=1.0, top_k=0, top_p=1.0):
    if temperature == 0:
        return _greedy(logits)
    probs = top_p_filter(_softmax64(np.asarray(logits, dtype=np.float64) / temperature), top_p)
    probs = top_k_filter(probs, top_k)
    return probs / probs.sum()


@learner("next_token_probs.float32", "next_token_probs")
def probs_in_float32(logits, temperature=1.0, top_k=0, top_p=1.0):
    if temperature == 0:
        out = np.zeros_like(logits)
        out[np.argmax(logits)] = 1
        return out
    z = logits / temperature  # float32 / Python float stays float32
    e = np.exp(z - z.max())
    probs = top_p_filter(top_k_filter(e / e.sum(), top_k), top_p)
    return probs / probs.sum()


@learner("next_token_probs.tiny_temperature_for_greedy", "next_token_probs")
def probs_clamped_temperature(logits, temperature=1.0, top_k=0, top_p=1.0):
    temperature = temperature if temperature > 0 else 1e-8  # avoid dividing by zero
    probs = _softmax64(np.asarray(logits, dtype=np.float64) / temperature)
    probs = top_p_filter(top_k_filter(probs, top_k), top_p)
    return probs / probs.sum()


@learner("sample.global_random", "sample")
def sample_with_np_random(logits, rng, temperature=1.0, top_k=0, top_p=1.0):
    probs = next_token_probs(logits, temperature, top_k, top_p)
    return int(np.random.choice(len(probs), p=probs))


@learner("sample.reseeded_inside", "sample")
def sample_seeding_its_own(logits, rng, temperature=1.0, top_k=0, top_p=1.0):
    probs = next_token_probs(logits, temperature, top_k, top_p)
    if temperature == 0:
        return int(np.argmax(probs))
    rng = np.random.default_rng(0)  # reproducible!
    return int(rng.choice(len(probs), p=probs))


@learner("sample.always_greedy", "sample")
def sample_argmax(logits, rng, temperature=1.0, top_k=0, top_p=1.0):
    return int(np.argmax(next_token_probs(logits, temperature, top_k, top_p)))


@learner("sample.cdf_in_sorted_order", "sample")
def sample_most_probable_first(logits, rng, temperature=1.0, top_k=0, top_p=1.0):
    probs = next_token_probs(logits, temperature, top_k, top_p)
    if temperature == 0:
        return int(np.argmax(probs))
    u, running = rng.random(), 0.0
    for token in sorted(range(len(probs)), key=lambda i: -probs[i]):  # the likeliest tokens first
        running += probs[token]
        if running > u:
            return token
    return int(np.argmin(probs))


@learner("sample.settings_ignored", "sample")
def sample_temperature_only(logits, rng, temperature=1.0, top_k=0, top_p=1.0):
    if temperature == 0:
        return int(np.argmax(logits))
    probs = _softmax64(np.asarray(logits, dtype=np.float64) / temperature)
    return int(rng.choice(len(probs), p=probs))


# --- day 5: Session (a learner's class, written from scratch) --------------------------------

class LearnerSession:
    """A correct session, written as a learner would (no stream, only generate)."""

    def __init__(self, model, eos_id=None):
        self.model, self.eos_id = model, eos_id
        self.cache = model.new_cache()

    def next_token(self, logits, rng, temperature, top_k, top_p):
        from tinyllm_lab.sampling import sample
        return sample(logits, rng, temperature, top_k, top_p)

    def generate(self, prompt_ids, max_new_tokens, rng=None, temperature=0.0, top_k=0, top_p=1.0):
        self.cache.reset()
        out = []
        if max_new_tokens == 0:
            return out
        logits = self.model.forward(np.asarray(prompt_ids), self.cache)[-1]
        while True:
            token = self.next_token(logits, rng, temperature, top_k, top_p)
            out.append(token)
            if token == self.eos_id or len(out) == max_new_tokens:
                return out
            logits = self.model.forward(np.array([token]), self.cache)[-1]


@learner("Session.cache_not_reset", "Session")
class SessionKeepingItsCache(LearnerSession):
    def generate(self, prompt_ids, max_new_tokens, rng=None, temperature=0.0, top_k=0, top_p=1.0):
        out = []
        logits = self.model.forward(np.asarray(prompt_ids), self.cache)[-1]
        while max_new_tokens > 0:
            token = self.next_token(logits, rng, temperature, top_k, top_p)
            out.append(token)
            if token == self.eos_id or len(out) == max_new_tokens:
                break
            logits = self.model.forward(np.array([token]), self.cache)[-1]
        return out


@learner("Session.eos_not_yielded", "Session")
class SessionHidingEos(LearnerSession):
    def generate(self, prompt_ids, max_new_tokens, rng=None, temperature=0.0, top_k=0, top_p=1.0):
        self.cache.reset()
        out = []
        if max_new_tokens == 0:
            return out
        logits = self.model.forward(np.asarray(prompt_ids), self.cache)[-1]
        for _ in range(max_new_tokens):
            token = self.next_token(logits, rng, temperature, top_k, top_p)
            if token == self.eos_id:
                break
            out.append(token)
            logits = self.model.forward(np.array([token]), self.cache)[-1]
        return out


@learner("Session.stops_one_late", "Session")
class SessionCheckingThePreviousToken(LearnerSession):
    def generate(self, prompt_ids, max_new_tokens, rng=None, temperature=0.0, top_k=0, top_p=1.0):
        self.cache.reset()
        out = []
        if max_new_tokens == 0:
            return out
        logits = self.model.forward(np.asarray(prompt_ids), self.cache)[-1]
        for _ in range(max_new_tokens):
            token = self.next_token(logits, rng, temperature, top_k, top_p)
            out.append(token)
            if len(out) >= 2 and out[-2] == self.eos_id:  # the stop test looks one token back
                break
            logits = self.model.forward(np.array([token]), self.cache)[-1]
        return out


@learner("Session.one_token_too_many", "Session")
class SessionPrefillTokenPlusN(LearnerSession):
    def generate(self, prompt_ids, max_new_tokens, rng=None, temperature=0.0, top_k=0, top_p=1.0):
        self.cache.reset()
        if max_new_tokens == 0:
            return []
        logits = self.model.forward(np.asarray(prompt_ids), self.cache)[-1]
        out = [self.next_token(logits, rng, temperature, top_k, top_p)]
        for _ in range(max_new_tokens):  # then max_new_tokens more
            if out[-1] == self.eos_id:
                break
            logits = self.model.forward(np.array([out[-1]]), self.cache)[-1]
            out.append(self.next_token(logits, rng, temperature, top_k, top_p))
        return out


@learner("Session.first_row", "Session")
class SessionFirstRow(LearnerSession):
    def generate(self, prompt_ids, max_new_tokens, rng=None, temperature=0.0, top_k=0, top_p=1.0):
        self.cache.reset()
        out = []
        if max_new_tokens == 0:
            return out
        logits = self.model.forward(np.asarray(prompt_ids), self.cache)[0]
        while True:
            token = self.next_token(logits, rng, temperature, top_k, top_p)
            out.append(token)
            if token == self.eos_id or len(out) == max_new_tokens:
                return out
            logits = self.model.forward(np.array([token]), self.cache)[-1]


# --- day 6: read_header and load_file ---------------------------------------------------------

def _file(source):
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    with open(source, "rb") as f:
        return f.read()


def _parse(source):
    data = _file(source)
    n = int.from_bytes(data[:8], "little")
    return data, n, json.loads(data[8:8 + n].decode("utf-8"))


@learner("read_header.metadata_in_tensors", "read_header")
def read_header_keeping_metadata(source):
    data, n, header = _parse(source)
    return header, header.get("__metadata__", {}), 8 + n


@learner("read_header.metadata_none", "read_header")
def read_header_none_metadata(source):
    data, n, header = _parse(source)
    metadata = header.pop("__metadata__", None)
    return header, metadata, 8 + n


@learner("read_header.data_start_without_length", "read_header")
def read_header_start_at_n(source):
    data, n, header = _parse(source)
    metadata = header.pop("__metadata__", {})
    return header, metadata, n


LEARNER_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}


def learner_load_file(source, widen=True, *, base=None, dtypes=LEARNER_DTYPES, bf16=None, f16=None):
    data, n, header = _parse(source)
    metadata = header.pop("__metadata__", {})
    start = 8 + n if base is None else base
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        raw = data[start + begin:start + end]
        x = np.frombuffer(raw, dtype=dtypes[info["dtype"]])
        if info["dtype"] == "BF16":
            x = bf16(raw) if bf16 else (x.astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] == "F16":
            x = f16(x, widen) if f16 else (x.astype(np.float32) if widen else x)
        tensors[name] = x.reshape(info["shape"])
    return tensors, metadata


@learner("load_file.offsets_from_file_start", "load_file")
def load_file_file_offsets(source, widen=True):
    return learner_load_file(source, widen, base=0)


@learner("load_file.bf16_low_half", "load_file")
def load_file_padding_bf16_after(source, widen=True):
    def pad(raw):  # two zero bytes after each bfloat16, to make a float32
        return np.frombuffer(b"".join(raw[i:i + 2] + b"\0\0" for i in range(0, len(raw), 2)), "<f4")
    return learner_load_file(source, widen, bf16=pad)


@learner("load_file.bf16_read_as_f16", "load_file")
def load_file_bf16_as_half(source, widen=True):
    return learner_load_file(source, widen, bf16=lambda raw: np.frombuffer(raw, np.float16).astype(np.float32))


@learner("load_file.f16_as_integers", "load_file")
def load_file_f16_bits(source, widen=True):
    return learner_load_file(source, widen, dtypes={**LEARNER_DTYPES, "F16": "<u2"},
                             f16=lambda x, widen: x.astype(np.float32))


@learner("load_file.f16_not_widened", "load_file")
def load_file_f16_as_stored(source, widen=True):
    return learner_load_file(source, widen, f16=lambda x, widen: x)


# --- day 6: weights_from_tensors ------------------------------------------------------------

def interleave(w, n_heads):  # a learner's own half-split -> interleaved row order, by index
    dh = w.shape[0] // n_heads
    one_head = [j for i in range(dh // 2) for j in (i, i + dh // 2)]
    return w[[h * dh + j for h in range(n_heads) for j in one_head]]


def learner_weights(config, tensors, q=interleave, k=interleave, k_heads=None, v=None, tied_copy=False,
                    gate="gate_proj", up="up_proj"):
    def t(name):
        return np.asarray(tensors[name], dtype=np.float32)

    layers = []
    for i in range(config.n_layers):
        p = f"model.layers.{i}."
        wv = t(p + "self_attn.v_proj.weight")
        layers.append(LayerWeights(
            attention_norm=t(p + "input_layernorm.weight"),
            wq=q(t(p + "self_attn.q_proj.weight"), config.n_heads),
            wk=k(t(p + "self_attn.k_proj.weight"), k_heads or config.n_kv_heads),
            wv=v(wv, config.n_kv_heads) if v else wv,
            wo=t(p + "self_attn.o_proj.weight"),
            ffn_norm=t(p + "post_attention_layernorm.weight"),
            w1=t(p + f"mlp.{gate}.weight"), w2=t(p + "mlp.down_proj.weight"), w3=t(p + f"mlp.{up}.weight")))
    embed = t("model.embed_tokens.weight")
    if config.tie_embeddings:
        head = tensors["model.embed_tokens.weight"].astype(np.float32) if tied_copy else embed
    else:
        head = t("lm_head.weight")
    return ModelWeights(tok_embeddings=embed, layers=layers, norm=t("model.norm.weight"), output=head)


@learner("weights_from_tensors.no_rope_permutation", "weights_from_tensors")
def weights_unpermuted(config, tensors):
    return learner_weights(config, tensors, q=lambda w, n: w, k=lambda w, n: w)


@learner("weights_from_tensors.k_permuted_with_n_heads", "weights_from_tensors")
def weights_k_with_query_heads(config, tensors):
    return learner_weights(config, tensors, k_heads=config.n_heads)


@learner("weights_from_tensors.v_permuted", "weights_from_tensors")
def weights_v_permuted(config, tensors):
    return learner_weights(config, tensors, v=interleave)


@learner("weights_from_tensors.inverse_permutation", "weights_from_tensors")
def weights_evens_then_odds(config, tensors):
    def to_half_split(w, n_heads):  # evens, then odds, in each head: HF's permute, not its inverse
        dh = w.shape[0] // n_heads
        one_head = list(range(0, dh, 2)) + list(range(1, dh, 2))
        return w[[h * dh + j for h in range(n_heads) for j in one_head]]
    return learner_weights(config, tensors, q=to_half_split, k=to_half_split)


@learner("weights_from_tensors.head_copied", "weights_from_tensors")
def weights_head_copy(config, tensors):
    return learner_weights(config, tensors, tied_copy=True)


@learner("weights_from_tensors.w1_w3_swapped", "weights_from_tensors")
def weights_w1_is_up(config, tensors):
    return learner_weights(config, tensors, gate="up_proj", up="gate_proj")


# --- day 7: pair_counts, merge, apply_merges --------------------------------------------------

@learner("pair_counts.ignores_frequency", "pair_counts")
def pair_counts_per_distinct_word(words):
    counts = Counter()
    for word in words:
        counts.update(zip(word, word[1:]))
    return counts


@learner("pair_counts.once_per_word", "pair_counts")
def pair_counts_distinct_pairs(words):
    counts = Counter()
    for word, freq in words.items():
        for pair in dict.fromkeys(zip(word, word[1:])):
            counts[pair] += freq
    return counts


@learner("pair_counts.across_words", "pair_counts")
def pair_counts_one_stream(words):
    stream = []
    for word, freq in words.items():
        stream += list(word) * freq
    return Counter(zip(stream, stream[1:]))


@learner("merge.no_skip_after_match", "merge")
def merge_step_one(word, pair, new_id):
    out, i = [], 0
    while i < len(word):
        if word[i:i + 2] == pair:
            out.append(new_id)
        else:
            out.append(word[i])
        i += 1
    return tuple(out)


@learner("merge.first_only", "merge")
def merge_first(word, pair, new_id):
    w = list(word)
    for i in range(len(w) - 1):
        if w[i] == pair[0] and w[i + 1] == pair[1]:
            w[i:i + 2] = [new_id]
            break
    return tuple(w)


@learner("merge.loses_last_id", "merge")
def merge_over_zip(word, pair, new_id):
    out, skip = [], False
    for a, b in zip(word, word[1:]):
        if skip:
            skip = False
            continue
        if (a, b) == pair:
            out.append(new_id)
            skip = True
        else:
            out.append(a)
    return tuple(out)


@learner("merge.as_text", "merge")
def merge_with_str_replace(word, pair, new_id):
    text = ",".join(str(i) for i in word).replace(f"{pair[0]},{pair[1]}", str(new_id))
    return tuple(int(s) for s in text.split(","))


@learner("apply_merges.leftmost_pair", "apply_merges")
def apply_merges_left_to_right(ids, ranks):
    ids, i = list(ids), 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) in ranks:
            ids[i:i + 2] = [256 + ranks[(ids[i], ids[i + 1])]]
            i = 0
        else:
            i += 1
    return ids


@learner("apply_merges.highest_rank", "apply_merges")
def apply_merges_latest_first(ids, ranks):
    ids = list(ids)
    while True:
        candidates = [p for p in zip(ids, ids[1:]) if p in ranks]
        if not candidates:
            return ids
        best = max(candidates, key=ranks.get)
        out, i = [], 0
        while i < len(ids):
            if tuple(ids[i:i + 2]) == best:
                out.append(256 + ranks[best])
                i += 2
            else:
                out.append(ids[i])
                i += 1
        ids = out


@learner("apply_merges.rank_as_id", "apply_merges")
def apply_merges_rank_ids(ids, ranks):
    ids = list(ids)
    while True:
        candidates = [p for p in zip(ids, ids[1:]) if p in ranks]
        if not candidates:
            return ids
        best = min(candidates, key=ranks.get)
        out, i = [], 0
        while i < len(ids):
            if tuple(ids[i:i + 2]) == best:
                out.append(ranks[best])  # the new token's id
                i += 2
            else:
                out.append(ids[i])
                i += 1
        ids = out


# --- day 7: Tokenizer and StreamDecoder (learners' classes, written from scratch) ------------

class LearnerTokenizer:
    """A correct tokenizer, written as a learner would; the mistakes below change encode or decode."""

    def __init__(self, merges):
        self.merges = [tuple(m) for m in merges]
        self.ranks = {pair: r for r, pair in enumerate(self.merges)}
        self.vocab = [bytes([b]) for b in range(256)]
        for a, b in self.merges:
            self.vocab.append(self.vocab[a] + self.vocab[b])
        self.bos_id, self.eos_id = len(self.vocab), len(self.vocab) + 1
        self.vocab += [b"<|bos|>", b"<|eos|>"]

    def encode(self, text, bos=False, eos=False):
        ids = [self.bos_id] if bos else []
        for piece in pretokenize(text):
            ids += apply_merges(list(piece.encode("utf-8")), self.ranks)
        return ids + ([self.eos_id] if eos else [])

    def decode(self, ids):
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")


@learner("Tokenizer.decode_per_token", "Tokenizer")
class TokenizerDecodingEachToken(LearnerTokenizer):
    def decode(self, ids):
        return "".join(self.vocab[i].decode("utf-8", errors="replace") for i in ids)


@learner("Tokenizer.no_pretokenize", "Tokenizer")
class TokenizerWithoutPretokens(LearnerTokenizer):
    def encode(self, text, bos=False, eos=False):
        ids = apply_merges(list(text.encode("utf-8")), self.ranks)
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])


@learner("Tokenizer.strict_decode", "Tokenizer")
class TokenizerStrictUtf8(LearnerTokenizer):
    def decode(self, ids):
        return b"".join(self.vocab[i] for i in ids).decode("utf-8")


@learner("StreamDecoder.decode_per_token", "StreamDecoder")
class StreamEachToken:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def push(self, token_id):
        return self.tokenizer.decode([token_id])

    def flush(self):
        return ""


@learner("StreamDecoder.flush_drops_held_bytes", "StreamDecoder")
class StreamForgettingTheTail:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.utf8 = codecs.getincrementaldecoder("utf-8")("replace")

    def push(self, token_id):
        return self.utf8.decode(self.tokenizer.decode_bytes([token_id]))

    def flush(self):
        self.utf8.reset()  # start clean next time
        return ""


@learner("StreamDecoder.holds_invalid_bytes", "StreamDecoder")
class StreamWaitingForValidUtf8:
    def __init__(self, tokenizer):
        self.tokenizer, self.pending = tokenizer, bytearray()

    def push(self, token_id):
        self.pending += self.tokenizer.decode_bytes([token_id])
        try:
            text = self.pending.decode("utf-8")
        except UnicodeDecodeError:
            return ""  # wait for the rest of the character
        self.pending.clear()
        return text

    def flush(self):
        text = self.pending.decode("utf-8", errors="replace")
        self.pending.clear()
        return text


# --- the tests --------------------------------------------------------------------------------

@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.name)
def test_the_course_passes_its_own_check(exercise):
    result = check(exercise.reference)
    assert result.passed and result.status == "passing", result.report
    assert result.mistake is None and result.diagnosis is None


@pytest.mark.parametrize("mistake_id", sorted(LEARNERS))
def test_a_learners_mistake_is_named(mistake_id):
    name, impl = LEARNERS[mistake_id]
    exercise, mistake = CATALOGUE[mistake_id]
    assert exercise.name == name
    assert impl is not mistake.impl  # the learner's own code, not the catalogue's
    result = assert_diagnosed(impl, mistake_id, name)  # fails, with this mistake's id and diagnosis
    assert f"diagnosis: {mistake.diagnosis}" in result.report


def test_the_learners_trigger_exactly_the_catalogue():
    assert set(LEARNERS) == set(CATALOGUE)


def test_every_exercise_of_days_5_to_7_has_a_check_with_two_mistakes_or_more():
    listed = {(day, module, name) for day, module, name in syllabus.exercises() if day in (5, 6, 7)}
    assert {(e.day, e.module, e.name) for e in EXERCISES} == listed
    for exercise in EXERCISES:
        assert len(exercise.mistakes) >= 2, exercise.name
        assert all(m.id.startswith(exercise.name + ".") for m in exercise.mistakes)
    assert len(CATALOGUE) == sum(len(e.mistakes) for e in EXERCISES)  # ids are unique


def test_correct_learner_code_written_differently_passes():
    """Other correct ways to write it: classes from scratch, rng.choice for the draw."""
    assert check(LearnerModel, name="Model").passed
    assert check(LearnerSession, name="Session").passed
    assert check(LearnerTokenizer, name="Tokenizer").passed

    class TokenizerWithADictVocab(LearnerTokenizer):
        def __init__(self, merges):
            super().__init__(merges)
            self.vocab = dict(enumerate(self.vocab))
    assert check(TokenizerWithADictVocab, name="Tokenizer").passed

    def sample_by_choice(logits, rng, temperature=1.0, top_k=0, top_p=1.0):
        probs = next_token_probs(logits, temperature, top_k, top_p)
        return int(np.argmax(probs)) if temperature == 0 else int(rng.choice(len(probs), p=probs))
    assert check(sample_by_choice, name="sample").passed

    def load_file_correct(source, widen=True):
        return learner_load_file(source, widen)
    assert check(load_file_correct, name="load_file").passed
    assert check(lambda config, tensors: learner_weights(config, tensors), name="weights_from_tensors").passed


def test_a_class_not_started_is_reported_as_such():
    class Session:
        def __init__(self, model, eos_id=None):
            raise NotImplementedError("Session (day 5) is not written yet")

    result = check(Session)
    assert result.status == "not started" and not result.passed


def test_the_eos_case_stops_at_the_third_greedy_token():
    greedy = exercises_day5._session_greedy(LearnerSession)
    assert greedy.index(exercises_day5.EOS_ID) == 2


def test_the_sampling_cases_leave_numpys_global_random_state_alone():
    np.random.seed(7)
    expected = np.random.random()
    np.random.seed(7)
    check(sample_with_np_random, name="sample")
    assert np.random.random() == expected


def test_file_cases_leave_no_file_behind(tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    check(read_header_keeping_metadata, name="read_header")
    check(load_file_file_offsets, name="load_file")
    assert list(Path(tmp_path).iterdir()) == []


def test_file_bytes_are_read_by_the_course_reader():
    """The hand-made files are real safetensors files: the `safetensors` library agrees with our reader."""
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    data = exercises_day6.file_bytes(exercises_day6._tensors("f16"), {"format": "pt"})
    theirs = safetensors_numpy.load(data)
    from tinyllm_lab.safetensors import load_file
    ours, metadata = load_file(data, widen=False)
    assert metadata == {"format": "pt"} and set(theirs) == set(ours)
    for name in ours:
        assert theirs[name].dtype == ours[name].dtype and np.array_equal(theirs[name], ours[name])
    (n,) = struct.unpack("<Q", data[:8])
    assert n % 8 == 0
