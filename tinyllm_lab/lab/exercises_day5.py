"""Day 5's exercises and their catalogue of common mistakes: the block, the model, sampling, the session.

Every case runs on one tiny grouped-query model (dim 32, 2 layers, 4 query heads sharing 2 key/value
heads, vocabulary 97), with seeded random weights of std 0.2 and norm weights that are not all 1
(with the default std 0.02 and unit norms, several wrong blocks would give the right numbers).
For `Model`, a case builds the learner's class on those weights and returns the logits and
`cache.pos` of a prefill and of decode steps; for `Session`, the token ids it generates.
Each mistake is the wrong version written out; `tests/test_lab_check_days5to7.py` makes each one
again, independently, the way a learner would, and checks that `check` names it.
"""

import numpy as np

from tinyllm_lab.config import ModelConfig
from tinyllm_lab.ffn import swiglu
from tinyllm_lab.kv_cache import cached_self_attention
from tinyllm_lab.lab.check import Case, Exercise, Mistake
from tinyllm_lab.lab.exercises_day1 import case_shown, shown
from tinyllm_lab.lab.exercises_day4 import course_cache
from tinyllm_lab.model import Model, block, random_weights
from tinyllm_lab.ops import linear, rms_norm, softmax
from tinyllm_lab.rope import rope_tables
from tinyllm_lab.sampling import check_sampling, next_token_probs, sample, top_k_filter, top_p_filter
from tinyllm_lab.session import Session

# --- the tiny model every case uses ------------------------------------------------------------

CONFIG = ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, hidden_dim=64, vocab_size=97,
                     max_seq_len=48)
UNTIED = ModelConfig(**{**CONFIG.__dict__, "tie_embeddings": False})
PROMPT = [5, 17, 42, 3, 88, 1, 60, 23]
EOS_ID = 90  # the third token greedy decoding writes after PROMPT (asserted by the tests)


def tiny_weights(config=CONFIG, seed=0):  # -> ModelWeights, fresh arrays on every call
    """Seeded random weights of std 0.2 for `config`, every norm weight drawn around 1 (not exactly 1)."""
    rng = np.random.default_rng(seed)
    weights = random_weights(config, rng, std=0.2)
    for layer in weights.layers:
        layer.attention_norm = (1 + 0.3 * rng.standard_normal(config.dim)).astype(np.float32)
        layer.ffn_norm = (1 + 0.3 * rng.standard_normal(config.dim)).astype(np.float32)
    weights.norm = (1 + 0.3 * rng.standard_normal(config.dim)).astype(np.float32)
    return weights


def _stream(seed, T):  # [T, D] float32: a residual stream of T tokens
    return np.random.default_rng(seed).standard_normal((T, CONFIG.dim), dtype=np.float32)


# --- block ------------------------------------------------------------------------------------

def _block_prefill(impl):
    weights = tiny_weights()
    cos, sin = rope_tables(CONFIG.head_dim, CONFIG.max_seq_len, CONFIG.rope_theta)
    cache = course_cache(impl, CONFIG.n_layers, CONFIG.max_seq_len, CONFIG.n_kv_heads, CONFIG.head_dim)
    out = impl(_stream(1, 6), weights.layers[1], CONFIG, cos, sin, cache, 1)
    return out, cache.keys[1, :6].copy(), cache.pos


def _block_decode(impl):
    weights = tiny_weights()
    cos, sin = rope_tables(CONFIG.head_dim, CONFIG.max_seq_len, CONFIG.rope_theta)
    cache = course_cache(impl, 1, CONFIG.max_seq_len, CONFIG.n_kv_heads, CONFIG.head_dim)
    outs = [impl(_stream(2, 5), weights.layers[0], CONFIG, cos, sin, cache, 0)]
    cache.advance(5)
    for step in range(2):
        outs.append(impl(_stream(3 + step, 1), weights.layers[0], CONFIG, cos, sin, cache, 0))
        cache.advance(1)
    return outs


def _attention(x, layer, config, cos, sin, cache, i, maps=None):  # the attention branch, on an already normed x
    return cached_self_attention(x, layer.wq, layer.wk, layer.wv, layer.wo, cos, sin, config.n_heads,
                                 config.n_kv_heads, cache, i, maps)


def _ffn(x, layer):
    return swiglu(x, layer.w1, layer.w3, layer.w2)


def _block_no_attention_residual(x, layer, config, cos, sin, cache, i, maps=None):
    h = _attention(rms_norm(x, layer.attention_norm, config.norm_eps), layer, config, cos, sin, cache, i, maps)
    return h + _ffn(rms_norm(h, layer.ffn_norm, config.norm_eps), layer)


def _block_no_ffn_residual(x, layer, config, cos, sin, cache, i, maps=None):
    h = x + _attention(rms_norm(x, layer.attention_norm, config.norm_eps), layer, config, cos, sin, cache, i, maps)
    return _ffn(rms_norm(h, layer.ffn_norm, config.norm_eps), layer)


def _block_post_norm(x, layer, config, cos, sin, cache, i, maps=None):
    h = rms_norm(x + _attention(x, layer, config, cos, sin, cache, i, maps), layer.attention_norm, config.norm_eps)
    return rms_norm(h + _ffn(h, layer), layer.ffn_norm, config.norm_eps)


def _block_norms_swapped(x, layer, config, cos, sin, cache, i, maps=None):
    h = x + _attention(rms_norm(x, layer.ffn_norm, config.norm_eps), layer, config, cos, sin, cache, i, maps)
    return h + _ffn(rms_norm(h, layer.attention_norm, config.norm_eps), layer)


def _block_parallel(x, layer, config, cos, sin, cache, i, maps=None):
    h = x + _attention(rms_norm(x, layer.attention_norm, config.norm_eps), layer, config, cos, sin, cache, i, maps)
    return h + _ffn(rms_norm(x, layer.ffn_norm, config.norm_eps), layer)


def _block_advances(x, layer, config, cos, sin, cache, i, maps=None):
    h = x + _attention(rms_norm(x, layer.attention_norm, config.norm_eps), layer, config, cos, sin, cache, i, maps)
    cache.advance(len(x))
    return h + _ffn(rms_norm(h, layer.ffn_norm, config.norm_eps), layer)


def _block_layer_0(x, layer, config, cos, sin, cache, i, maps=None):
    h = x + _attention(rms_norm(x, layer.attention_norm, config.norm_eps), layer, config, cos, sin, cache, 0, maps)
    return h + _ffn(rms_norm(h, layer.ffn_norm, config.norm_eps), layer)


def _block_norm_as_residual(x, layer, config, cos, sin, cache, i, maps=None):
    normed = rms_norm(x, layer.attention_norm, config.norm_eps)
    h = normed + _attention(normed, layer, config, cos, sin, cache, i, maps)
    return h + _ffn(rms_norm(h, layer.ffn_norm, config.norm_eps), layer)


BLOCK = Exercise(5, "model", "block", cases=[
    Case("prefill of 6 tokens into layer 1 of an empty cache", _block_prefill,
         inputs="x [6, 32] float32, layer 1 of the tiny GQA model (H=4, K=2, Dh=8), an empty 2-layer cache, i=1; "
                "output: (block output, keys written to layer 1, cache.pos)",
         note="the block's output, what it wrote into the cache, and that it leaves cache.pos alone"),
    Case("prefill of 5, then 2 decode steps", _block_decode,
         inputs="x [5, 32], then [1, 32] twice, layer 0, a 1-layer cache advanced by the case after each call",
         note="the same code path for prefill and decode"),
], mistakes=[
    Mistake("block.no_attention_residual",
            "the attention branch does not add back to the stream: `h = attention(norm(x))` instead of "
            "`h = x + attention(norm(x))`. Each branch writes a correction that is added to the residual stream.",
            _block_no_attention_residual),
    Mistake("block.no_ffn_residual",
            "the feed-forward branch does not add back to the stream: the block returns `ffn(norm(h))` instead of "
            "`h + ffn(norm(h))`.",
            _block_no_ffn_residual),
    Mistake("block.post_norm",
            "this is post-norm (the original transformer: `norm(x + attention(x))`): Llama is pre-norm, each branch "
            "reads a normalised copy, `h = x + attention(norm(x))`, and the stream itself is never normalised.",
            _block_post_norm),
    Mistake("block.norm_weights_swapped",
            "the two norm weights are swapped: `attention_norm` goes before the attention, `ffn_norm` before the "
            "feed-forward.",
            _block_norms_swapped),
    Mistake("block.parallel_ffn",
            "the feed-forward reads `norm(x)` instead of `norm(h)`: it must see the stream after the attention's "
            "residual, `out = h + ffn(norm(h))` (both branches reading x is GPT-J's parallel block, not Llama's).",
            _block_parallel),
    Mistake("block.advances_cache",
            "the block moves the cache on (`cache.advance`): every layer writes the same positions, and "
            "`Model.forward` advances the cache once, after the last block.",
            _block_advances),
    Mistake("block.cache_layer_ignored",
            "every block writes layer 0 of the cache: pass the block's own index `i` to `cached_self_attention`, "
            "so that layer i keeps its own keys and values.",
            _block_layer_0),
    Mistake("block.norm_as_residual",
            "the normed copy is used as the residual: `h = norm(x) + attention(norm(x))` instead of "
            "`h = x + attention(norm(x))`. The norm only feeds the branch; the stream itself (x) is what is "
            "added to, and it is never normalised.",
            _block_norm_as_residual),
])


# --- Model ------------------------------------------------------------------------------------

def _model_prefill(cls):
    model = cls(CONFIG, tiny_weights())
    cache = model.new_cache()
    logits = model.forward(np.array(PROMPT[:6]), cache)
    return logits, cache.pos


def _model_decode(cls):
    model = cls(CONFIG, tiny_weights())
    cache = model.new_cache()
    steps = [(model.forward(np.array(PROMPT[:5]), cache), cache.pos)]
    for token in PROMPT[5:7]:
        steps.append((model.forward(np.array([token]), cache), cache.pos))
    return steps


def _model_untied(cls):
    model = cls(UNTIED, tiny_weights(UNTIED))
    cache = model.new_cache()
    return model.forward(np.array(PROMPT[:4]), cache), cache.pos


class _ModelVariant(Model):
    """The course's `Model.forward` with one step changed (set by the subclasses)."""
    final_norm, last_row_only, head_is_embedding, advance, scale_embedding = True, False, False, True, False

    def forward(self, tokens, cache, maps=None):
        tokens = np.asarray(tokens)
        self._check_inputs(tokens, cache, maps)
        w = self.weights
        x = w.tok_embeddings[tokens]
        if self.scale_embedding:
            x = x * np.float32(np.sqrt(self.config.dim))
        for i, layer in enumerate(w.layers):
            x = block(x, layer, self.config, self.cos, self.sin, cache, i, maps)
        if self.advance:
            cache.advance(len(tokens))
        if self.final_norm:
            x = rms_norm(x, w.norm, self.config.norm_eps)
        if self.last_row_only:
            x = x[-1]  # [D]: the logits come out as [V]
        return linear(x, w.tok_embeddings if self.head_is_embedding else w.output)


class _ModelNoFinalNorm(_ModelVariant):
    final_norm = False


class _ModelLastRow(_ModelVariant):
    last_row_only = True


class _ModelHeadIsEmbedding(_ModelVariant):
    head_is_embedding = True


class _ModelNotAdvanced(_ModelVariant):
    advance = False


class _ModelScaledEmbedding(_ModelVariant):
    scale_embedding = True


MODEL = Exercise(5, "model", "Model", cases=[
    Case("prefill of 6 tokens", _model_prefill,
         inputs="Model(tiny GQA config, seeded weights); forward(6 token ids, model.new_cache()); "
                "output: (logits [6, 97], cache.pos)",
         note="embedding -> blocks -> final norm -> head, and the cache moved on by 6"),
    Case("prefill of 5, then 2 decode steps", _model_decode,
         inputs="forward(5 ids), then forward([id]) twice on the same cache; output: (logits, cache.pos) of each call",
         note="decode continues from the cache"),
    Case("untied head", _model_untied,
         inputs="a config with tie_embeddings=False (output is its own [97, 32] matrix); forward(4 ids)",
         note="the head is weights.output"),
], mistakes=[
    Mistake("Model.no_final_norm",
            "the final RMSNorm is missing: after the last block, `logits = linear(rms_norm(x, weights.norm, "
            "norm_eps), weights.output)`.",
            _ModelNoFinalNorm),
    Mistake("Model.last_row_only",
            "forward returns the logits of the last token only: it must return [T, V], one row per token (row t "
            "scores the token after token t; the session takes the last row itself).",
            _ModelLastRow),
    Mistake("Model.head_is_embedding",
            "the head is always the embedding matrix: use `weights.output`, which is the embedding array only when "
            "the config ties them (tie_embeddings=True).",
            _ModelHeadIsEmbedding),
    Mistake("Model.cache_not_advanced",
            "forward does not move the cache on: after all blocks wrote the T new tokens, `cache.advance(T)`; "
            "otherwise the next call writes over them and positions restart at 0.",
            _ModelNotAdvanced),
    Mistake("Model.scaled_embedding",
            "the embedding is multiplied by sqrt(D) (as in the original transformer and Gemma): Llama feeds the "
            "embedding rows to the first block as they are.",
            _ModelScaledEmbedding),
])


# --- top_k_filter -----------------------------------------------------------------------------

def _top_k(probs, k):
    def run(impl):
        return impl(np.array(probs, dtype=np.float64), k)
    return shown(run, f"probs={probs} (float64), k={k}")


def _top_k_ties_kept(probs, k):
    if k == 0 or k >= probs.size:
        return probs
    threshold = np.sort(probs)[-k]
    return np.where(probs >= threshold, probs, 0.0)


def _top_k_ties_high(probs, k):
    if k == 0 or k >= probs.size:
        return probs
    keep = np.argsort(probs, kind="stable")[-k:]
    out = np.zeros_like(probs)
    out[keep] = probs[keep]
    return out


def _top_k_zero_keeps_none(probs, k):
    keep = np.argsort(-probs, kind="stable")[:k]
    out = np.zeros_like(probs)
    out[keep] = probs[keep]
    return out


def _top_k_renormalised(probs, k):
    out = top_k_filter(probs, k)
    return out / out.sum()


def _top_k_smallest(probs, k):
    if k == 0 or k >= probs.size:
        return probs
    keep = np.argsort(probs, kind="stable")[:k]
    out = np.zeros_like(probs)
    out[keep] = probs[keep]
    return out


TOP_K = Exercise(5, "sampling", "top_k_filter", cases=[
    case_shown("docstring: k=2", _top_k([.1, .4, .2, .3], 2)),
    case_shown("k=3 of 7", _top_k([.05, .3, .1, .02, .25, .08, .2], 3)),
    case_shown("a tie at the k-th place", _top_k([.2, .3, .2, .1, .2], 2),
         note="ties: the lower id first, exactly k tokens kept"),
    case_shown("k=0 keeps all", _top_k([.1, .4, .2, .3], 0)),
    case_shown("after top-k of a sharper softmax (mass < 1 is fine)", _top_k([.3, .0, .25, .05, .1], 2)),
], mistakes=[
    Mistake("top_k_filter.ties_kept",
            "every token tied with the k-th is kept (a threshold `probs >= k-th largest`, as Hugging Face's "
            "warper does): top-k keeps exactly k tokens, ties going to the lower id.",
            _top_k_ties_kept),
    Mistake("top_k_filter.ties_to_higher_id",
            "on a tie at the k-th place the higher id was kept (`np.argsort(probs)[-k:]`): sort by `-probs` with "
            "kind='stable', so equal probabilities stay in id order and the lower id comes first.",
            _top_k_ties_high),
    Mistake("top_k_filter.zero_keeps_none",
            "k = 0 zeroed every token: k = 0 means no limit, keep all.",
            _top_k_zero_keeps_none),
    Mistake("top_k_filter.renormalised",
            "the kept probabilities were renormalised: the filters only zero tokens; `next_token_probs` "
            "renormalises once, after top-k and top-p.",
            _top_k_renormalised),
    Mistake("top_k_filter.smallest_k",
            "the k least probable tokens were kept: keep the k most probable (sort by -probs).",
            _top_k_smallest),
])


# --- top_p_filter -----------------------------------------------------------------------------

def _top_p(probs, p):
    def run(impl):
        return impl(np.array(probs, dtype=np.float64), p)
    return shown(run, f"probs={probs} (float64), p={p}")


def _top_p_drops_crossing(probs, p):
    if p >= 1.0:
        return probs
    order = np.argsort(-probs, kind="stable")
    mass = np.cumsum(probs[order])
    keep = order[mass <= p * mass[-1]]
    out = np.zeros_like(probs)
    out[keep] = probs[keep]
    return out


def _top_p_one_too_many(probs, p):
    if p >= 1.0:
        return probs
    order = np.argsort(-probs, kind="stable")
    mass = np.cumsum(probs[order])
    n_keep = min(int(np.searchsorted(mass, p * mass[-1], side="right")) + 1, probs.size)
    out = np.zeros_like(probs)
    out[order[:n_keep]] = probs[order[:n_keep]]
    return out


def _top_p_absolute(probs, p):
    if p >= 1.0:
        return probs
    order = np.argsort(-probs, kind="stable")
    mass = np.cumsum(probs[order])
    n_keep = min(int(np.searchsorted(mass, p)) + 1, probs.size)
    out = np.zeros_like(probs)
    out[order[:n_keep]] = probs[order[:n_keep]]
    return out


def _top_p_unsorted(probs, p):
    if p >= 1.0:
        return probs
    mass = np.cumsum(probs)
    n_keep = min(int(np.searchsorted(mass, p * mass[-1])) + 1, probs.size)
    out = np.zeros_like(probs)
    out[:n_keep] = probs[:n_keep]
    return out


TOP_P = Exercise(5, "sampling", "top_p_filter", cases=[
    case_shown("docstring: p=0.6", _top_p([.125, .5, .25, .125], 0.6),
         note=".5 alone falls short of 0.6, .5 + .25 reaches it: both are kept"),
    case_shown("the mass reaches p exactly", _top_p([.125, .5, .25, .125], 0.75),
         note="the smallest set whose mass reaches p (>= p): .5 + .25 = .75, nothing more"),
    case_shown("the top token alone is past p", _top_p([.1, .7, .2], 0.5), note="at least one token is kept"),
    case_shown("after top-k: the mass is 0.7, not 1", _top_p([0, .4, 0, .3], 0.5),
         note="p is a fraction of the mass the filter is given"),
    case_shown("p = 1 keeps all", _top_p([.1, .4, .2, .3], 1.0)),
], mistakes=[
    Mistake("top_p_filter.drops_crossing_token",
            "the token that crosses p was dropped (kept only tokens with cumulative mass <= p): keep the smallest "
            "set whose mass reaches p, i.e. the first n with mass >= p, the crossing token included.",
            _top_p_drops_crossing),
    Mistake("top_p_filter.one_too_many",
            "one token too many when the mass reaches p exactly: `mass >= p` is reached there, so that token is the "
            "last one kept.",
            _top_p_one_too_many),
    Mistake("top_p_filter.absolute_p",
            "p was compared with the absolute cumulative mass: after top-k the probabilities sum to less than 1, "
            "and top-p keeps the tokens that reach p of the total it is given (`p * mass[-1]`).",
            _top_p_absolute),
    Mistake("top_p_filter.unsorted",
            "the cumulative sum runs in id order: sort the probabilities from the largest down first, then keep "
            "the most probable tokens.",
            _top_p_unsorted),
])


# --- next_token_probs ---------------------------------------------------------------------------

TOY = [2.0, 1.0, 2.0, 0.5, -1.0, 0.0]  # two equal top logits, as in the notebook


def _softmax64(z):  # [V] float64 -> [V] float64: day 1's softmax converts to float32, the course's sampling does not
    e = np.exp(z - z.max())
    return e / e.sum()


def _probs(logits, **settings):
    def run(impl):
        return impl(np.array(logits, dtype=np.float32), **settings)
    return shown(run, f"logits={logits} (float32)" + "".join(f", {k}={v}" for k, v in settings.items()))


def _probs_temperature_after(logits, temperature=1.0, top_k=0, top_p=1.0):
    check_sampling(temperature, top_k, top_p)
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        return next_token_probs(logits, 0)
    probs = _softmax64(logits) / temperature
    probs = probs / probs.sum()
    probs = top_p_filter(top_k_filter(probs, top_k), top_p)
    return probs / probs.sum()


def _probs_not_renormalised(logits, temperature=1.0, top_k=0, top_p=1.0):
    if temperature == 0:
        return next_token_probs(logits, 0)
    probs = _softmax64(np.asarray(logits, dtype=np.float64) / temperature)
    return top_p_filter(top_k_filter(probs, top_k), top_p)


def _probs_top_p_first(logits, temperature=1.0, top_k=0, top_p=1.0):
    if temperature == 0:
        return next_token_probs(logits, 0)
    probs = _softmax64(np.asarray(logits, dtype=np.float64) / temperature)
    probs = top_k_filter(top_p_filter(probs, top_p), top_k)
    return probs / probs.sum()


def _probs_float32(logits, temperature=1.0, top_k=0, top_p=1.0):
    logits = np.asarray(logits, dtype=np.float32)
    if temperature == 0:
        return next_token_probs(logits, 0).astype(np.float32)
    probs = softmax(logits / np.float32(temperature))
    probs = top_p_filter(top_k_filter(probs, top_k), top_p)
    return probs / probs.sum()


def _probs_tiny_temperature(logits, temperature=1.0, top_k=0, top_p=1.0):
    logits = np.asarray(logits, dtype=np.float64)
    probs = _softmax64(logits / max(temperature, 1e-6))
    probs = top_p_filter(top_k_filter(probs, top_k), top_p)
    return probs / probs.sum()


NEXT_TOKEN_PROBS = Exercise(5, "sampling", "next_token_probs", cases=[
    case_shown("temperature 1", _probs(TOY)),
    case_shown("temperature 0.5", _probs(TOY, temperature=0.5), note="temperature divides the logits before the softmax"),
    case_shown("top_k=3", _probs(TOY, top_k=3), note="the kept probabilities renormalised to sum to 1"),
    case_shown("top_k=2 then top_p=0.5", _probs([0.9, 0.6, 0.2, -0.4], top_k=2, top_p=0.5),
         note="temperature, then top-k, then top-p measured on what top-k kept"),
    case_shown("greedy: temperature 0, with a tie", _probs(TOY, temperature=0.0),
         note="probability 1 on the argmax, the lowest id on ties"),
    case_shown("tiny probabilities (float64)", _probs([30.0, 0.0, -30.0, 10.0], temperature=0.7),
         note="float64 keeps the digits of tiny probabilities", rtol=1e-9, atol=0.0),
], mistakes=[
    Mistake("next_token_probs.temperature_after_softmax",
            "the temperature was applied to the probabilities, after the softmax, where renormalising undoes it: "
            "divide the logits by the temperature, then take the softmax.",
            _probs_temperature_after),
    Mistake("next_token_probs.not_renormalised",
            "the probabilities top-k and top-p kept do not sum to 1: renormalise them (divide by their sum).",
            _probs_not_renormalised),
    Mistake("next_token_probs.top_p_before_top_k",
            "top-p ran before top-k: the order is temperature, then top-k, then top-p measured on what top-k kept "
            "(as Hugging Face's `generate` does).",
            _probs_top_p_first),
    Mistake("next_token_probs.float32",
            "computed in float32: convert the logits to float64 first, so that tiny probabilities keep their "
            "digits and the cumulative sum reaches 1.",
            _probs_float32),
    Mistake("next_token_probs.tiny_temperature_for_greedy",
            "temperature 0 was replaced by a tiny temperature, so tied maxima share the probability: greedy "
            "(temperature 0) is probability 1 on the argmax, the lowest id on ties (`np.argmax`).",
            _probs_tiny_temperature),
])


# --- sample -----------------------------------------------------------------------------------

def _draws(seed, temperature=1.0, top_k=0, top_p=1.0, n=24, V=12):
    """n draws with one generator seeded `seed`, each from its own seeded logits; the global numpy
    random state is seeded for the call and restored after it (a sampler must not use it)."""
    def run(impl):
        logits = np.random.default_rng(100 + seed).standard_normal((n, V)).astype(np.float32)
        saved = np.random.get_state()
        np.random.seed(1234)
        try:
            rng = np.random.default_rng(seed)
            return [impl(row, rng, temperature, top_k, top_p) for row in logits]
        finally:
            np.random.set_state(saved)
    return run


def _sample_from(probs, u):  # the inverse-CDF draw of `sample`, for a given u in [0, 1)
    kept = np.flatnonzero(probs)
    cdf = np.cumsum(probs[kept])
    i = np.searchsorted(cdf, u * cdf[-1], side="right")
    return int(kept[min(i, kept.size - 1)])


def _sample_global(logits, rng, temperature=1.0, top_k=0, top_p=1.0):
    probs = next_token_probs(logits, temperature, top_k, top_p)
    if temperature == 0:
        return int(np.argmax(probs))
    return _sample_from(probs, np.random.random())


def _sample_reseeded(logits, rng, temperature=1.0, top_k=0, top_p=1.0):
    probs = next_token_probs(logits, temperature, top_k, top_p)
    if temperature == 0:
        return int(np.argmax(probs))
    return _sample_from(probs, np.random.default_rng(0).random())


def _sample_sorted_cdf(logits, rng, temperature=1.0, top_k=0, top_p=1.0):  # the running sum, most probable first
    probs = next_token_probs(logits, temperature, top_k, top_p)
    if temperature == 0:
        return int(np.argmax(probs))
    order = np.argsort(-probs, kind="stable")
    cdf = np.cumsum(probs[order])
    return int(order[min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), probs.size - 1)])


def _sample_always_greedy(logits, rng, temperature=1.0, top_k=0, top_p=1.0):
    return int(np.argmax(logits))


def _sample_settings_ignored(logits, rng, temperature=1.0, top_k=0, top_p=1.0):
    probs = next_token_probs(logits, temperature)
    if temperature == 0:
        return int(np.argmax(probs))
    return _sample_from(probs, rng.random())


SAMPLE = Exercise(5, "sampling", "sample", cases=[
    Case("24 draws at temperature 1, one seeded generator", _draws(0),
         inputs="24 logit vectors [12] float32, rng=np.random.default_rng(0) shared by the draws; output: the ids"),
    Case("24 draws at temperature 0.8, top_k=3", _draws(1, temperature=0.8, top_k=3),
         inputs="24 logit vectors [12] float32, rng=np.random.default_rng(1), temperature=0.8, top_k=3"),
    Case("24 draws at temperature 1.2, top_p=0.7", _draws(2, temperature=1.2, top_p=0.7),
         inputs="24 logit vectors [12] float32, rng=np.random.default_rng(2), temperature=1.2, top_p=0.7"),
    Case("greedy", _draws(3, temperature=0.0, n=6),
         inputs="6 logit vectors [12] float32, temperature=0"),
], mistakes=[
    Mistake("sample.global_random",
            "the draw used numpy's global random state (`np.random.random()`), not the generator passed as `rng`: "
            "draw `u = rng.random()`, so that the caller's seed decides the tokens.",
            _sample_global),
    Mistake("sample.reseeded_inside",
            "a new generator is seeded inside `sample`, so every call draws the same number: use the `rng` the "
            "caller passes, which moves on with every draw.",
            _sample_reseeded),
    Mistake("sample.always_greedy",
            "it always returns the argmax: with temperature > 0, draw from `next_token_probs` by inverse CDF "
            "(the first kept token whose cumulative probability exceeds u ~ U[0, 1)).",
            _sample_always_greedy),
    Mistake("sample.cdf_in_sorted_order",
            "the running sum adds the probabilities most probable first: the inverse CDF adds them in id order "
            "(token 0, 1, 2, ...) and takes the first kept id whose sum exceeds u. Sorted, the same u lands on "
            "another token: the distribution is the same, the tokens a seed gives are not.",
            _sample_sorted_cdf),
    Mistake("sample.settings_ignored",
            "top_k and top_p were not passed on: draw from `next_token_probs(logits, temperature, top_k, top_p)`.",
            _sample_settings_ignored),
])


# --- Session ----------------------------------------------------------------------------------

def _model():
    return Model(CONFIG, tiny_weights())


def _session_greedy(cls):
    return cls(_model()).generate(PROMPT, 8)


def _session_sampled(cls):
    return cls(_model()).generate(PROMPT, 8, np.random.default_rng(0), temperature=0.8, top_p=0.95)


def _session_twice(cls):
    session = cls(_model())
    return session.generate(PROMPT, 6), session.generate(PROMPT[3:], 6)


def _session_eos(cls):
    return cls(_model(), eos_id=EOS_ID).generate(PROMPT, 8)


def _session_short(cls):
    session = cls(_model())
    return session.generate(PROMPT, 1), session.generate(PROMPT, 0)


class _SessionVariant(Session):
    """The course's `Session._decode` with one step changed (set by the subclasses)."""
    reset, eos_yielded, stop_late, extra_token, first_row = True, True, False, False, False

    def _decode(self, generation, prompt, max_new_tokens, rng, temperature, top_k, top_p):
        if self.reset:
            self.cache.reset()
        if max_new_tokens == 0:
            return
        logits = self.model.forward(prompt, self.cache)[0 if self.first_row else -1]
        limit = max_new_tokens + 1 if self.extra_token else max_new_tokens
        last = None
        for n in range(limit):
            token = sample(logits, rng, temperature, top_k, top_p)
            if token == self.eos_id and not self.eos_yielded:
                return
            yield token
            stopper = last if self.stop_late else token
            if (self.eos_id is not None and stopper == self.eos_id) or n == limit - 1:
                return
            last = token
            logits = self.model.forward([token], self.cache)[-1]


class _SessionNoReset(_SessionVariant):
    reset = False


class _SessionEosNotYielded(_SessionVariant):
    eos_yielded = False


class _SessionStopsLate(_SessionVariant):
    stop_late = True


class _SessionExtraToken(_SessionVariant):
    extra_token = True


class _SessionFirstRow(_SessionVariant):
    first_row = True


SESSION = Exercise(5, "session", "Session", cases=[
    Case("greedy, 8 tokens", _session_greedy,
         inputs=f"Session(tiny GQA model).generate({PROMPT}, 8)"),
    Case("sampled, seed 0", _session_sampled,
         inputs=f"generate({PROMPT}, 8, np.random.default_rng(0), temperature=0.8, top_p=0.95)"),
    Case("two generations on one session", _session_twice,
         inputs=f"generate({PROMPT}, 6), then generate({PROMPT[3:]}, 6) on the same session",
         note="the second generation must equal a fresh session's"),
    Case("EOS", _session_eos,
         inputs=f"Session(model, eos_id={EOS_ID}).generate({PROMPT}, 8): greedy writes {EOS_ID} third",
         note="stop after EOS, which is yielded"),
    Case("max_new_tokens 1 and 0", _session_short,
         inputs=f"generate({PROMPT}, 1), generate({PROMPT}, 0)"),
], mistakes=[
    Mistake("Session.cache_not_reset",
            "the cache is not cleared between generations: the second one attends to the first one's keys and "
            "values. Every generation starts with `cache.reset()`.",
            _SessionNoReset),
    Mistake("Session.eos_not_yielded",
            "EOS is not yielded: the session stops after EOS and yields it, so the caller sees why it stopped.",
            _SessionEosNotYielded),
    Mistake("Session.stops_one_late",
            "one token too many after EOS: stop right after yielding EOS.",
            _SessionStopsLate),
    Mistake("Session.one_token_too_many",
            "it writes max_new_tokens + 1 tokens (the token from the prefill, then max_new_tokens decode steps): "
            "the prefill's token is the first of the max_new_tokens.",
            _SessionExtraToken),
    Mistake("Session.first_row",
            "the first token was sampled from the first row of the prefill logits: the last row predicts the "
            "token after the prompt (`forward(prompt, cache)[-1]`).",
            _SessionFirstRow),
])

EXERCISES = [BLOCK, MODEL, TOP_K, TOP_P, NEXT_TOKEN_PROBS, SAMPLE, SESSION]
