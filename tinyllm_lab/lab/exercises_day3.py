"""Day 3 exercises (tinyllm_lab/attention.py): the cases `check` runs, and the catalogue of common mistakes.

The cases use T != S (new queries after cached keys, where the mask's offset matters), grouped-query
ratios 2 and 4 with at least 2 kv heads (with a single kv head, np.tile and np.repeat agree), and
positions past 0.
"""

import numpy as np

from tinyllm_lab.attention import attention, causal_mask, merge_heads, repeat_kv, split_heads
from tinyllm_lab.lab.check import Case, Exercise, Mistake
from tinyllm_lab.lab.exercises_day1 import randn, softmax_no_distribution_check
from tinyllm_lab.ops import linear, softmax
from tinyllm_lab.rope import apply_rope, rope_tables


# --- causal_mask ------------------------------------------------------------------------------

def positions_of(n_queries, n_keys):  # query positions [T, 1], key positions [1, S]
    return np.arange(n_keys - n_queries, n_keys)[:, None], np.arange(n_keys)[None, :]


def mask_future(n_queries, n_keys):
    query_pos, key_pos = positions_of(n_queries, n_keys)
    return key_pos >= query_pos


def mask_excludes_self(n_queries, n_keys):
    query_pos, key_pos = positions_of(n_queries, n_keys)
    return key_pos < query_pos


def mask_sees_next(n_queries, n_keys):
    query_pos, key_pos = positions_of(n_queries, n_keys)
    return key_pos <= query_pos + 1


def mask_top_left(n_queries, n_keys):
    return np.tril(np.ones((n_queries, n_keys), dtype=bool))


def mask_additive(n_queries, n_keys):
    query_pos, key_pos = positions_of(n_queries, n_keys)
    return np.where(key_pos <= query_pos, 0.0, -np.inf).astype(np.float32)


def mask_true_means_hidden(n_queries, n_keys):
    query_pos, key_pos = positions_of(n_queries, n_keys)
    return key_pos > query_pos


CAUSAL_MASK = Exercise(3, "attention", "causal_mask", cases=[
    Case("a prompt: 4 queries, 4 keys", lambda causal_mask: causal_mask(4, 4)),
    Case("3 new queries after 5 cached keys", lambda causal_mask: causal_mask(3, 8),
         note="the 3 queries are the last 3 of 8 positions: query t sits at position 5 + t"),
    Case("one decoding step after 5 cached keys", lambda causal_mask: causal_mask(1, 6)),
], mistakes=[
    Mistake("causal_mask.future",
            "the mask is the wrong way round: query t may see keys 0..t (the past and itself), not t..S-1 "
            "(the future). True = may attend, so for a prompt the lower triangle is True.",
            mask_future),
    Mistake("causal_mask.excludes_self",
            "the mask hides each query's own position: query t may attend to keys s <= t, itself included "
            "(key_pos <= query_pos, not <); in a prompt, query 0 would see nothing.",
            mask_excludes_self),
    Mistake("causal_mask.sees_next",
            "the mask lets query t see key t+1, one step into the future: key s is allowed only when s <= t.",
            mask_sees_next),
    Mistake("causal_mask.ignores_cache_offset",
            "the new queries are the last T of the S positions: query t sits at position S - T + t "
            "(np.tril(..., k=S-T)). This mask places them at positions 0..T-1, so after a cache they see only "
            "the first keys.",
            mask_top_left),
    Mistake("causal_mask.additive_float",
            "returns an additive float mask (0 and -inf, as in Meta's code); the course's mask is boolean, "
            "True = may attend, and attention turns it into -inf scores itself.",
            mask_additive),
    Mistake("causal_mask.true_means_hidden",
            "True marks the keys to hide; the course's convention is the opposite: True = may attend.",
            mask_true_means_hidden),
])


# --- repeat_kv --------------------------------------------------------------------------------

def repeat_kv_tile(x, n_rep):
    return np.tile(x, (1, n_rep, 1))


def repeat_kv_positions_axis(x, n_rep):
    return np.repeat(x, n_rep, axis=0)


def repeat_kv_last_axis(x, n_rep):
    return np.repeat(x, n_rep, axis=-1)


REPEAT_KV = Exercise(3, "attention", "repeat_kv", cases=[
    Case("2 kv heads, n_rep 2", lambda repeat_kv: repeat_kv(randn(50, (3, 2, 4)), 2)),
    Case("2 kv heads, n_rep 4", lambda repeat_kv: repeat_kv(randn(51, (2, 2, 3)), 4)),
    Case("n_rep 1", lambda repeat_kv: repeat_kv(randn(52, (3, 2, 4)), 1), note="multi-head attention: nothing to repeat"),
], mistakes=[
    Mistake("repeat_kv.tile",
            "GQA by np.tile instead of np.repeat: tile lays the kv heads out 0, 1, 0, 1, so query head h reads "
            "kv head h % K; the course's query head h reads kv head h // n_rep (np.repeat(x, n_rep, axis=1): 0, 0, 1, 1).",
            repeat_kv_tile),
    Mistake("repeat_kv.positions_axis",
            "repeats along the positions axis (axis 0): the kv heads are axis 1, [S, K, Dh] -> [S, K * n_rep, Dh].",
            repeat_kv_positions_axis),
    Mistake("repeat_kv.head_dim_axis",
            "repeats along the last axis (Dh): the kv heads are axis 1, [S, K, Dh] -> [S, K * n_rep, Dh].",
            repeat_kv_last_axis),
])


# --- attention_weights and attention ----------------------------------------------------------

def scores_of(q, k, scale):  # [T, H, Dh], [S, K, Dh] -> [H, T, S], kv heads repeated the course's way
    k = repeat_kv(k, q.shape[1] // k.shape[1])
    return q.transpose(1, 0, 2) @ k.transpose(1, 2, 0) * scale


def weights_no_scale(q, k, mask):
    return softmax(np.where(mask, scores_of(q, k, 1), -np.inf))


def weights_divided_by_dh(q, k, mask):
    return softmax(np.where(mask, scores_of(q, k, np.float32(1 / q.shape[-1])), -np.inf))


def weights_float64_scale(q, k, mask):
    # The course's softmax converts its input to float32 (the dtype rule), so the float64 that the scale brings
    # in would vanish there; a learner's float64 scale flows through their own softmax, as here, to the output.
    return softmax_no_distribution_check(np.where(mask, scores_of(q, k, 1 / np.sqrt(q.shape[-1])), -np.inf))


def weights_masked_after_softmax(q, k, mask):
    return np.where(mask, softmax(scores_of(q, k, np.float32(1 / np.sqrt(q.shape[-1])))), 0).astype(np.float32)


def weights_tile(q, k, mask):
    k = np.tile(k, (1, q.shape[1] // k.shape[1], 1))
    scores = q.transpose(1, 0, 2) @ k.transpose(1, 2, 0) * np.float32(1 / np.sqrt(q.shape[-1]))
    return softmax(np.where(mask, scores, -np.inf))


def weights_grouped_wrong_order(q, k, mask):  # GQA by regrouping the queries, head h put in group h % K
    (T, H, Dh), (S, K, _) = q.shape, k.shape
    groups = q.reshape(T, H // K, K, Dh).transpose(2, 1, 0, 3).reshape(K, H // K * T, Dh)  # head r*K + j in group j
    scores = (groups @ k.transpose(1, 2, 0)).reshape(H, T, S) * np.float32(1 / np.sqrt(Dh))
    return softmax(np.where(mask, scores, -np.inf))


def weights_grouped_without_transpose(q, k, mask):  # q [T, H, Dh] regrouped as it lies, heads never moved to the front
    (T, H, Dh), (S, K, _) = q.shape, k.shape
    scores = (q.reshape(K, H // K * T, Dh) @ k.transpose(1, 2, 0)).reshape(H, T, S) * np.float32(1 / np.sqrt(Dh))
    return softmax(np.where(mask, scores, -np.inf))


def weights_softmax_over_queries(q, k, mask):
    return softmax(np.where(mask, scores_of(q, k, np.float32(1 / np.sqrt(q.shape[-1]))), -np.inf), axis=-2)


def weights_mask_ignored(q, k, mask):
    return softmax(scores_of(q, k, np.float32(1 / np.sqrt(q.shape[-1]))))


def weights_naive_softmax(q, k, mask):
    e = np.exp(np.where(mask, scores_of(q, k, np.float32(1 / np.sqrt(q.shape[-1]))), -np.inf))
    return e / e.sum(axis=-1, keepdims=True)


def attention_case(seed, T, S, H, K, head_dim, q_scale, values=True):  # -> run(impl): impl(q, k, [v,] causal mask)
    def run(impl):
        q = randn(seed, (T, H, head_dim), scale=q_scale)
        k, v = randn(seed + 1, (S, K, head_dim)), randn(seed + 2, (S, K, head_dim))
        return impl(q, k, v, causal_mask(T, S)) if values else impl(q, k, causal_mask(T, S))
    return run


ATTENTION_CASES = [  # (name, note, T, S, H, K, head_dim, scale of q)
    ("a prompt: T = S = 4, H = K = 2", "", 4, 4, 2, 2, 8, 1.0),
    ("GQA ratio 2, 3 queries after 2 cached keys", "H = 4 query heads share K = 2 kv heads; T = 3, S = 5", 3, 5, 4, 2, 16, 1.0),
    ("GQA ratio 4, 2 queries after 4 cached keys", "H = 8 query heads share K = 2 kv heads", 2, 6, 8, 2, 8, 1.0),
    ("large scores", "queries 100 times larger: scores in the hundreds, exp overflows unless the max is subtracted",
     4, 4, 2, 2, 8, 100.0),
]

ATTENTION_WEIGHTS = Exercise(3, "attention", "attention_weights", cases=[
    Case(name, attention_case(60, *shape, values=False), note=note) for name, note, *shape in ATTENTION_CASES
], mistakes=[
    Mistake("attention_weights.no_scale",
            "missing 1/sqrt(Dh): the scores are q k^T / sqrt(Dh). Without it the softmax is too sharp (day 3, section 7).",
            weights_no_scale),
    Mistake("attention_weights.divides_by_dh",
            "divides the scores by Dh instead of sqrt(Dh).",
            weights_divided_by_dh),
    Mistake("attention_weights.float64_scale",
            "computed in float64: a float64 scalar such as 1/np.sqrt(Dh) promoted the array. Use "
            "np.float32(1 / np.sqrt(Dh)) (or a Python float, 1 / math.sqrt(Dh)).",
            weights_float64_scale),
    Mistake("attention_weights.mask_after_softmax",
            "the mask is applied after the softmax (weights set to 0), so the rows no longer sum to 1: set the "
            "masked scores to -inf before the softmax.",
            weights_masked_after_softmax),
    Mistake("attention_weights.gqa_tile",
            "query head h reads kv head h % K (np.tile instead of np.repeat, or the queries grouped in the wrong "
            "order): it must read kv head h // (H / K), as repeat_kv lines them up.",
            weights_tile),
    Mistake("attention_weights.grouped_wrong_order",
            "the queries are grouped in the wrong order: kv head j's group must hold query heads j * H/K .. "
            "(j + 1) * H/K - 1 (row r * T + t is query head j * H/K + r at token t). Move the heads to the front, "
            "then reshape: q.transpose(1, 0, 2).reshape(K, H // K * T, Dh); q.reshape(T, H // K, K, Dh) puts "
            "head h in group h % K.",
            weights_grouped_wrong_order),
    Mistake("attention_weights.grouped_without_transpose",
            "the queries are regrouped without moving the heads to the front first: q [T, H, Dh] reshaped "
            "straight to [K, H/K * T, Dh] mixes tokens and heads. Transpose to [H, T, Dh] first: "
            "q.transpose(1, 0, 2).reshape(K, H // K * T, Dh).",
            weights_grouped_without_transpose),
    Mistake("attention_weights.softmax_over_queries",
            "the softmax runs over the queries (axis -2): each query's weights over the keys (the last axis) sum to 1.",
            weights_softmax_over_queries),
    Mistake("attention_weights.mask_ignored",
            "the mask is not applied: every query sees every key, the future ones too. Masked scores become -inf "
            "before the softmax (np.where(mask, scores, -np.inf)).",
            weights_mask_ignored),
    Mistake("attention_weights.naive_softmax",
            "the softmax is written out without subtracting the maximum score: exp overflows to inf on large "
            "scores and inf / inf = nan. Use day 1's softmax (it subtracts the max).",
            weights_naive_softmax),
])


def attention_no_scale(q, k, v, mask):
    out = weights_no_scale(q, k, mask) @ repeat_kv(v, q.shape[1] // k.shape[1]).transpose(1, 0, 2)
    return out.transpose(1, 0, 2)


def attention_float64_scale(q, k, v, mask):
    out = weights_float64_scale(q, k, mask) @ repeat_kv(v, q.shape[1] // k.shape[1]).transpose(1, 0, 2)
    return out.transpose(1, 0, 2)


def attention_masked_after_softmax(q, k, v, mask):
    out = weights_masked_after_softmax(q, k, mask) @ repeat_kv(v, q.shape[1] // k.shape[1]).transpose(1, 0, 2)
    return out.transpose(1, 0, 2)


def attention_tile(q, k, v, mask):
    out = weights_tile(q, k, mask) @ np.tile(v, (1, q.shape[1] // k.shape[1], 1)).transpose(1, 0, 2)
    return out.transpose(1, 0, 2)


def attention_grouped_wrong_order(q, k, v, mask):  # the weights of weights_grouped_wrong_order, regrouped alike for v
    (T, H, Dh), (S, K, _) = q.shape, k.shape
    out = weights_grouped_wrong_order(q, k, mask).reshape(K, H // K * T, S) @ v.transpose(1, 0, 2)
    return out.reshape(H, T, Dh).transpose(1, 0, 2)


def attention_naive_softmax(q, k, v, mask):
    out = weights_naive_softmax(q, k, mask) @ repeat_kv(v, q.shape[1] // k.shape[1]).transpose(1, 0, 2)
    return out.transpose(1, 0, 2)


def attention_heads_first(q, k, v, mask):
    return attention(q, k, v, mask).transpose(1, 0, 2)  # [H, T, Dh]: the heads were never moved back


def attention_reshape_not_transpose(q, k, v, mask):
    return attention(q, k, v, mask).transpose(1, 0, 2).reshape(q.shape)  # [H, T, Dh] reshaped, not transposed


ATTENTION = Exercise(3, "attention", "attention", cases=[
    Case(name, attention_case(70, *shape), note=note) for name, note, *shape in ATTENTION_CASES
], mistakes=[
    Mistake("attention.no_scale",
            "missing 1/sqrt(Dh): the scores are q k^T / sqrt(Dh).",
            attention_no_scale),
    Mistake("attention.float64_scale",
            "computed in float64: a float64 scalar such as 1/np.sqrt(Dh) promoted the array. Use "
            "np.float32(1 / np.sqrt(Dh)).",
            attention_float64_scale),
    Mistake("attention.mask_after_softmax",
            "the mask is applied after the softmax (weights set to 0), so the weights no longer sum to 1: set the "
            "masked scores to -inf before the softmax.",
            attention_masked_after_softmax),
    Mistake("attention.gqa_tile",
            "query head h reads kv head h % K (np.tile instead of np.repeat, or the queries grouped in the wrong "
            "order): it must read kv head h // (H / K), for both k and v, as repeat_kv lines them up.",
            attention_tile),
    Mistake("attention.grouped_wrong_order",
            "the queries are grouped in the wrong order: kv head j's group must hold query heads j * H/K .. "
            "(j + 1) * H/K - 1. Move the heads to the front, then reshape: "
            "q.transpose(1, 0, 2).reshape(K, H // K * T, Dh), and read the weights back the same way for v.",
            attention_grouped_wrong_order),
    Mistake("attention.heads_not_moved_back",
            "returns [H, T, Dh]: the heads were moved to the front for the batched matmul and must go back to the "
            "middle, out.transpose(1, 0, 2) -> [T, H, Dh].",
            attention_heads_first),
    Mistake("attention.reshape_not_transpose",
            "[H, T, Dh] was reshaped to [T, H, Dh] instead of transposed: reshape keeps the memory order, so "
            "heads and tokens get mixed up. Use out.transpose(1, 0, 2).",
            attention_reshape_not_transpose),
    Mistake("attention.naive_softmax",
            "the softmax is written out without subtracting the maximum score: exp overflows to inf on large "
            "scores and inf / inf = nan. Use day 1's softmax (it subtracts the max).",
            attention_naive_softmax),
])


# --- self_attention ---------------------------------------------------------------------------

def layer_parts(x, wq, wk, wv, cos, sin, positions, n_heads, n_kv_heads):  # q, k rotated; v
    q = apply_rope(split_heads(linear(x, wq), n_heads), cos, sin, positions)
    k = apply_rope(split_heads(linear(x, wk), n_kv_heads), cos, sin, positions)
    return q, k, split_heads(linear(x, wv), n_kv_heads)


def self_attention_rope_on_v(x, wq, wk, wv, wo, cos, sin, positions, n_heads, n_kv_heads):
    q, k, v = layer_parts(x, wq, wk, wv, cos, sin, positions, n_heads, n_kv_heads)
    v = apply_rope(v, cos, sin, positions)
    return linear(merge_heads(attention(q, k, v, causal_mask(len(x), len(x)))), wo)


def self_attention_rope_q_only(x, wq, wk, wv, wo, cos, sin, positions, n_heads, n_kv_heads):
    q, _, v = layer_parts(x, wq, wk, wv, cos, sin, positions, n_heads, n_kv_heads)
    k = split_heads(linear(x, wk), n_kv_heads)
    return linear(merge_heads(attention(q, k, v, causal_mask(len(x), len(x)))), wo)


def self_attention_no_wo(x, wq, wk, wv, wo, cos, sin, positions, n_heads, n_kv_heads):
    q, k, v = layer_parts(x, wq, wk, wv, cos, sin, positions, n_heads, n_kv_heads)
    return merge_heads(attention(q, k, v, causal_mask(len(x), len(x))))


def self_attention_no_mask(x, wq, wk, wv, wo, cos, sin, positions, n_heads, n_kv_heads):
    q, k, v = layer_parts(x, wq, wk, wv, cos, sin, positions, n_heads, n_kv_heads)
    return linear(merge_heads(attention(q, k, v, np.ones((len(x), len(x)), dtype=bool))), wo)


def layer_weights(seed, D, n_heads, n_kv_heads):  # wq, wk, wv, wo, stored [out, in], scaled 1/sqrt(in)
    head_dim = D // n_heads
    shapes = [(D, D), (n_kv_heads * head_dim, D), (n_kv_heads * head_dim, D), (D, D)]
    return [randn(seed + i, shape, scale=D ** -0.5) for i, shape in enumerate(shapes)]


def self_attention_case(seed, T, D, n_heads, n_kv_heads):  # -> run(self_attention)
    def run(self_attention):
        cos, sin = rope_tables(D // n_heads, 16)
        x = randn(seed, (T, D))
        return self_attention(x, *layer_weights(seed + 1, D, n_heads, n_kv_heads), cos, sin, np.arange(T),
                              n_heads, n_kv_heads)
    return run


SELF_ATTENTION = Exercise(3, "attention", "self_attention", cases=[
    Case("T 4, D 16, H = K = 2", self_attention_case(80, 4, 16, 2, 2)),
    Case("GQA ratio 2: T 5, D 32, H 4, K 2", self_attention_case(81, 5, 32, 4, 2)),
    Case("GQA ratio 4: T 3, D 32, H 8, K 2", self_attention_case(82, 3, 32, 8, 2)),
], mistakes=[
    Mistake("self_attention.rope_on_values",
            "RoPE is applied to the values too: only q and k are rotated (their dot product then depends on the "
            "distance between positions); v carries content and stays as linear(x, wv) made it.",
            self_attention_rope_on_v),
    Mistake("self_attention.rope_on_queries_only",
            "RoPE is applied to the queries only: the keys must be rotated too, each by its own position.",
            self_attention_rope_q_only),
    Mistake("self_attention.no_output_projection",
            "the output projection is missing: the layer ends with linear(merge_heads(out), wo).",
            self_attention_no_wo),
    Mistake("self_attention.no_causal_mask",
            "no causal mask: each token attends to the later tokens too. Pass causal_mask(T, T) to attention.",
            self_attention_no_mask),
])


EXERCISES = [CAUSAL_MASK, REPEAT_KV, ATTENTION_WEIGHTS, ATTENTION, SELF_ATTENTION]
