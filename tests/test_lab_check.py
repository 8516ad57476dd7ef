"""The lab's `check` and the catalogue of mistakes for days 1-4 (tinyllm_lab/lab/exercises_day1..4).

- every check passes on the course's own functions;
- every catalogued mistake is made again here, written independently the way a learner would write
  it (never the catalogue's code), and `check` must fail on it and name that mistake;
- the ids those learner versions trigger are exactly the catalogue's ids for days 1-4;
- stubs are "not started", exceptions in learner code are reported, unknown names raise, and the
  report shows the case, the inputs, the first difference and the max error.

Helpers for other catalogue tests (days 5-7): `assert_diagnosed(impl, mistake_id)` and
`catalogue_ids(days)`, importable with `from test_lab_check import assert_diagnosed, catalogue_ids`.
"""

import math
import sys
from pathlib import Path
import warnings

import numpy as np
import pytest

from tinyllm_lab.attention import causal_mask as course_causal_mask
from tinyllm_lab.attention import merge_heads, split_heads
from tinyllm_lab.lab import check, syllabus
from tinyllm_lab.lab.check import CheckResult, exercises, find_exercise
from tinyllm_lab.ops import linear
from tinyllm_lab.rope import apply_rope, rope_frequencies

DAYS = (1, 2, 3, 4)


# --- helpers (reusable by the tests of days 5-7) ---------------------------------------------

def catalogue_ids(days):  # -> {mistake id: exercise name} over the exercises of those days
    return {m.id: ex.name for ex in exercises().values() if ex.day in days for m in ex.mistakes}


def mistake_named(mistake_id):  # -> the catalogue's Mistake with that id
    for exercise in exercises().values():
        for mistake in exercise.mistakes:
            if mistake.id == mistake_id:
                return mistake
    raise KeyError(mistake_id)


def assert_diagnosed(impl, mistake_id, name=None):
    """check(impl) fails and names the catalogued mistake `mistake_id` (exercise name: the id's prefix)."""
    name = name or mistake_id.split(".")[0]
    result = check(impl, name=name)
    assert not result.passed and result.status == "failing", result.report
    assert result.mistake == mistake_id, f"expected the diagnosis {mistake_id}, got {result.mistake}:\n{result.report}"
    diagnosis = mistake_named(mistake_id).diagnosis
    assert result.diagnosis == diagnosis and diagnosis in result.report, result.report
    return result


# --- a learner's wrong versions, one per catalogued mistake ----------------------------------

WRONG = {}  # mistake id -> a learner's implementation that makes exactly that mistake


def wrong(mistake_id):
    def register(impl):
        WRONG[mistake_id] = impl
        return impl
    return register


def stable_softmax(s, axis=-1):  # the learner's own day-1 softmax, used by their later functions
    e = np.exp(s - s.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# day 1: linear, softmax, rms_norm, silu

@wrong("linear.no_transpose")
def _(x, weight):
    return np.matmul(x, weight)


@wrong("linear.output_transposed")
def _(x, weight):
    return np.dot(weight, x.T)


@wrong("linear.flattens_leading_axes")
def _(x, weight):
    rows = x.reshape(-1, weight.shape[1])
    return np.dot(rows, weight.T)


@wrong("softmax.no_max_subtraction")
def _(x, axis=-1):
    return np.exp(x) / np.exp(x).sum(axis=axis, keepdims=True)


@wrong("softmax.global_max")
def _(x, axis=-1):
    ez = np.exp(x - x.max())
    return ez / ez.sum(axis=axis, keepdims=True)


@wrong("softmax.sum_over_everything")
def _(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum()


@wrong("softmax.ignores_axis")
def _(x, axis=-1):
    e = np.exp(x - np.amax(x, -1)[..., None])
    return e / e.sum(-1)[..., None]


@wrong("rms_norm.eps_outside_sqrt")
def _(x, weight, eps=1e-5):
    rms = np.sqrt((x ** 2).mean(axis=-1, keepdims=True))
    return weight * x / (rms + eps)


@wrong("rms_norm.subtracts_mean")
def _(x, weight, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * weight


@wrong("rms_norm.no_weight")
def _(x, weight, eps=1e-5):
    return x / np.sqrt(np.mean(np.square(x), axis=-1, keepdims=True) + eps)


@wrong("rms_norm.mean_over_whole_array")
def _(x, weight, eps=1e-5):
    return x * (1 / np.sqrt(np.mean(x ** 2) + eps)) * weight


@wrong("rms_norm.divides_by_length")
def _(x, weight, eps=1e-5):
    return x / np.linalg.norm(x, axis=-1, keepdims=True) * weight  # no eps either: nan on a zero row


@wrong("rms_norm.ignores_eps")
def _(x, weight, eps=1e-5):
    return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + 1e-5) * weight


@wrong("rms_norm.float64_eps")
def _(x, weight, eps=1e-5):
    eps = np.float64(eps)
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * weight


@wrong("silu.sigmoid_only")
def _(x):
    return 1.0 / (1.0 + np.exp(-x))


@wrong("silu.sign_flipped")
def _(x):
    return x * (1 / (1 + np.exp(x)))


@wrong("silu.exp_overflow")
def _(x):
    ex = np.exp(x)
    return x * ex / (1 + ex)


# day 1, the documented behaviour the notebook teaches: the dtype rule and the ValueErrors

@wrong("linear.no_dtype_rule")
def _(x, weight):
    if x.shape[-1] != weight.shape[-1] or weight.ndim != 2:
        raise ValueError(f"linear: x {x.shape} does not fit weight {weight.shape}")
    return np.matmul(x, np.transpose(weight))


@wrong("linear.no_shape_check")
def _(x, weight):
    x, weight = x.astype(np.float32), weight.astype(np.float32)
    return np.matmul(x, weight.T)


@wrong("softmax.whole_array")
def _(x, axis=-1):
    z = np.exp(x - x.max())
    return z / z.sum()


@wrong("softmax.no_distribution_check")
def _(x, axis=-1):
    x = np.asarray(x, dtype=np.float32)
    z = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


@wrong("softmax.no_dtype_rule")
def _(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    if np.isnan(m).any() or np.isinf(m).any():
        raise ValueError("softmax: a row is all -inf or holds nan/inf")
    z = np.exp(x - m)
    return z / z.sum(axis=axis, keepdims=True)


@wrong("rms_norm.no_dtype_rule")
def _(x, weight, eps=1e-5):
    return weight * (x / np.sqrt((x * x).mean(-1, keepdims=True) + np.float32(eps)))


@wrong("silu.no_dtype_rule")
def _(x):
    return x * (1 / (1 + np.exp(-x)))


@wrong("silu.overflow_warning")
def _(x):
    x = x.astype(np.float32)
    return x * (np.float32(1) / (np.float32(1) + np.exp(-x)))


@wrong("swiglu.no_shape_check")
def _(x, w_gate, w_up, w_down):
    gate = x @ w_gate.T
    return ((gate / (1 + np.exp(-gate))) * (x @ w_up.T)) @ w_down.T


# day 2: rope_frequencies, rope_tables, apply_rope

@wrong("rope_frequencies.missing_two")
def _(head_dim, rope_theta=10000.0):
    return 1.0 / (rope_theta ** (np.arange(0, head_dim // 2) / head_dim))


@wrong("rope_frequencies.positive_exponent")
def _(head_dim, rope_theta=10000.0):
    return np.power(rope_theta, np.arange(0, head_dim, 2) / head_dim)


@wrong("rope_frequencies.ignores_theta")
def _(head_dim, rope_theta=10000.0):
    return 1.0 / (10000 ** (np.arange(0, head_dim, 2) / head_dim))


@wrong("rope_frequencies.starts_at_one")
def _(head_dim, rope_theta=10000.0):
    return np.array([rope_theta ** (-2 * i / head_dim) for i in range(1, head_dim // 2 + 1)])


@wrong("rope_frequencies.float32")
def _(head_dim, rope_theta=10000.0):
    return (1.0 / (rope_theta ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))).astype(np.float32)


@wrong("rope_tables.float32_angles")
def _(head_dim, max_seq_len, rope_theta=10000.0):
    m = np.arange(max_seq_len, dtype=np.float32)
    angles = m[:, None] * rope_frequencies(head_dim, rope_theta).astype(np.float32)[None, :]
    return np.cos(angles), np.sin(angles)


@wrong("rope_tables.float64_tables")
def _(head_dim, max_seq_len, rope_theta=10000.0):
    angles = np.arange(max_seq_len)[:, None] * rope_frequencies(head_dim, rope_theta)
    return np.cos(angles), np.sin(angles)


@wrong("rope_tables.sin_cos_swapped")
def _(head_dim, max_seq_len, rope_theta=10000.0):
    angles = np.arange(max_seq_len)[:, None] * rope_frequencies(head_dim, rope_theta)
    return np.sin(angles).astype(np.float32), np.cos(angles).astype(np.float32)


@wrong("rope_tables.positions_from_one")
def _(head_dim, max_seq_len, rope_theta=10000.0):
    angles = np.arange(1, max_seq_len + 1)[:, None] * rope_frequencies(head_dim, rope_theta)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


@wrong("rope_tables.full_width")
def _(head_dim, max_seq_len, rope_theta=10000.0):
    freqs = rope_frequencies(head_dim, rope_theta)
    angles = np.outer(np.arange(max_seq_len), np.concatenate([freqs, freqs]))
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


@wrong("apply_rope.half_split")
def _(x, cos, sin, positions):  # Hugging Face's rotate_half
    c = np.concatenate([cos[positions], cos[positions]], axis=-1)[:, None, :]
    s = np.concatenate([sin[positions], sin[positions]], axis=-1)[:, None, :]
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * c + rotated * s


@wrong("apply_rope.ignores_positions")
def _(x, cos, sin, positions):
    out = np.empty_like(x)
    for t in range(x.shape[0]):
        c, s = cos[t], sin[t]
        out[t, :, 0::2] = x[t, :, 0::2] * c - x[t, :, 1::2] * s
        out[t, :, 1::2] = x[t, :, 0::2] * s + x[t, :, 1::2] * c
    return out


@wrong("apply_rope.rotates_backwards")
def _(x, cos, sin, positions):  # complex form, conjugate by mistake
    z = x[..., 0::2] + 1j * x[..., 1::2]
    z = z * (cos[positions] - 1j * sin[positions])[:, None, :]
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = z.real, z.imag
    return out


@wrong("apply_rope.overwrites_pair")
def _(x, cos, sin, positions):
    c, s = cos[positions][:, None], sin[positions][:, None]
    out = x.copy()
    out[..., ::2] = out[..., ::2] * c - out[..., 1::2] * s
    out[..., 1::2] = out[..., ::2] * s + out[..., 1::2] * c
    return out


@wrong("apply_rope.float64_buffer")
def _(x, cos, sin, positions):
    out = np.empty(x.shape)
    c, s = cos[positions][:, None], sin[positions][:, None]
    out[..., ::2] = x[..., ::2] * c - x[..., 1::2] * s
    out[..., 1::2] = x[..., ::2] * s + x[..., 1::2] * c
    return out


# day 3: causal_mask, repeat_kv, attention_weights, attention, self_attention

@wrong("causal_mask.future")
def _(n_queries, n_keys):
    return np.triu(np.ones((n_queries, n_keys), dtype=bool), k=n_keys - n_queries)


@wrong("causal_mask.excludes_self")
def _(n_queries, n_keys):
    return np.tril(np.ones((n_queries, n_keys), dtype=bool), k=n_keys - n_queries - 1)


@wrong("causal_mask.sees_next")
def _(n_queries, n_keys):
    return np.tril(np.ones((n_queries, n_keys), dtype=bool), k=n_keys - n_queries + 1)


@wrong("causal_mask.ignores_cache_offset")
def _(n_queries, n_keys):
    mask = np.zeros((n_queries, n_keys), dtype=bool)
    for t in range(n_queries):
        mask[t, : t + 1] = True
    return mask


@wrong("causal_mask.additive_float")
def _(n_queries, n_keys):
    return np.triu(np.full((n_queries, n_keys), -np.inf, dtype=np.float32), k=n_keys - n_queries + 1)


@wrong("causal_mask.true_means_hidden")
def _(n_queries, n_keys):
    return np.triu(np.ones((n_queries, n_keys), dtype=bool), k=n_keys - n_queries + 1)


@wrong("repeat_kv.tile")
def _(x, n_rep):
    return np.concatenate([x] * n_rep, axis=1)


@wrong("repeat_kv.positions_axis")
def _(x, n_rep):
    return x.repeat(n_rep, axis=0)


@wrong("repeat_kv.head_dim_axis")
def _(x, n_rep):
    return x.repeat(n_rep, axis=2)


def learner_scores(q, k, share=np.repeat):  # [H, T, S] unscaled, einsum style; share: how kv heads are shared
    n_rep = q.shape[1] // k.shape[1]
    k = share(k, n_rep, axis=1) if share is np.repeat else share(k, (1, n_rep, 1))
    return np.einsum("thd,shd->hts", q, k)


def scale_of(q):
    return 1.0 / math.sqrt(q.shape[-1])  # a Python float: stays float32


@wrong("attention_weights.no_scale")
def _(q, k, mask):
    return stable_softmax(np.where(mask, learner_scores(q, k), -np.inf))


@wrong("attention_weights.divides_by_dh")
def _(q, k, mask):
    return stable_softmax(np.where(mask, learner_scores(q, k) / q.shape[-1], -np.inf))


@wrong("attention_weights.float64_scale")
def _(q, k, mask):
    return stable_softmax(np.where(mask, learner_scores(q, k) * (1 / np.sqrt(q.shape[-1])), -np.inf))


@wrong("attention_weights.mask_after_softmax")
def _(q, k, mask):
    return stable_softmax(learner_scores(q, k) * scale_of(q)) * mask


@wrong("attention_weights.gqa_tile")
def _(q, k, mask):
    return stable_softmax(np.where(mask, learner_scores(q, k, share=np.tile) * scale_of(q), -np.inf))


def learner_grouped_scores(q, k, order):  # [H, T, S] scaled, GQA by regrouping q einsum style, no repeat_kv
    (T, H, Dh), (S, K, _) = q.shape, k.shape
    if order == "h % K":  # q.reshape(T, H/K, K, Dh): head h = r*K + j lands in group j, row r
        scores = np.einsum("trjd,sjd->jrts", q.reshape(T, H // K, K, Dh), k)
    else:  # "no transpose": the memory of q [T, H, Dh] cut into K groups as it lies
        scores = np.einsum("jnd,sjd->jns", q.reshape(K, H // K * T, Dh), k)
    return scores.reshape(H, T, S) * scale_of(q)


@wrong("attention_weights.grouped_wrong_order")
def _(q, k, mask):
    return stable_softmax(np.where(mask, learner_grouped_scores(q, k, "h % K"), -np.inf))


@wrong("attention_weights.grouped_without_transpose")
def _(q, k, mask):
    return stable_softmax(np.where(mask, learner_grouped_scores(q, k, "no transpose"), -np.inf))


@wrong("attention_weights.softmax_over_queries")
def _(q, k, mask):
    return stable_softmax(np.where(mask, learner_scores(q, k) * scale_of(q), -np.inf), axis=1)


@wrong("attention_weights.mask_ignored")
def _(q, k, mask):
    return stable_softmax(learner_scores(q, k) * scale_of(q))


@wrong("attention_weights.naive_softmax")
def _(q, k, mask):
    scores = np.where(mask, learner_scores(q, k) * scale_of(q), -np.inf)
    return np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)


def learner_attention(q, k, v, mask, scale=None, share=np.repeat, mask_after=False, naive=False):  # -> [H, T, Dh]
    scores = learner_scores(q, k, share) * (scale_of(q) if scale is None else scale)
    w = stable_softmax(scores) * mask if mask_after else stable_softmax(np.where(mask, scores, -np.inf))
    if naive:
        w = np.exp(np.where(mask, scores, -np.inf))
        w = w / w.sum(axis=-1, keepdims=True)
    n_rep = q.shape[1] // k.shape[1]
    v = share(v, n_rep, axis=1) if share is np.repeat else share(v, (1, n_rep, 1))
    return np.einsum("hts,shd->htd", w, v)


@wrong("attention.no_scale")
def _(q, k, v, mask):
    return learner_attention(q, k, v, mask, scale=1.0).transpose(1, 0, 2)


@wrong("attention.float64_scale")
def _(q, k, v, mask):
    return learner_attention(q, k, v, mask, scale=1 / np.sqrt(q.shape[-1])).transpose(1, 0, 2)


@wrong("attention.mask_after_softmax")
def _(q, k, v, mask):
    return learner_attention(q, k, v, mask, mask_after=True).transpose(1, 0, 2)


@wrong("attention.gqa_tile")
def _(q, k, v, mask):
    return learner_attention(q, k, v, mask, share=np.tile).transpose(1, 0, 2)


@wrong("attention.grouped_wrong_order")
def _(q, k, v, mask):
    (T, H, Dh), (S, K, _) = q.shape, k.shape
    w = stable_softmax(np.where(mask, learner_grouped_scores(q, k, "h % K"), -np.inf))
    out = np.einsum("jrts,sjd->jrtd", w.reshape(K, H // K, T, S), v)  # the weights read back group by group
    return out.reshape(H, T, Dh).transpose(1, 0, 2)


@wrong("attention.naive_softmax")
def _(q, k, v, mask):
    return learner_attention(q, k, v, mask, naive=True).transpose(1, 0, 2)


@wrong("attention.heads_not_moved_back")
def _(q, k, v, mask):
    return learner_attention(q, k, v, mask)


@wrong("attention.reshape_not_transpose")
def _(q, k, v, mask):
    return learner_attention(q, k, v, mask).reshape(q.shape)


def learner_layer(x, wq, wk, wv, wo, cos, sin, positions, n_heads, n_kv_heads,
                  rope_q=True, rope_k=True, rope_v=False, causal=True, project=True):
    T = x.shape[0]
    q, k, v = (split_heads(linear(x, w), n) for w, n in ((wq, n_heads), (wk, n_kv_heads), (wv, n_kv_heads)))
    q = apply_rope(q, cos, sin, positions) if rope_q else q
    k = apply_rope(k, cos, sin, positions) if rope_k else k
    v = apply_rope(v, cos, sin, positions) if rope_v else v
    mask = course_causal_mask(T, T) if causal else np.ones((T, T), dtype=bool)
    out = merge_heads(learner_attention(q, k, v, mask).transpose(1, 0, 2))
    return linear(out, wo) if project else out


@wrong("self_attention.rope_on_values")
def _(x, wq, wk, wv, wo, cos, sin, positions, n_heads, n_kv_heads):
    return learner_layer(x, wq, wk, wv, wo, cos, sin, positions, n_heads, n_kv_heads, rope_v=True)


@wrong("self_attention.rope_on_queries_only")
def _(x, wq, wk, wv, wo, cos, sin, positions, n_heads, n_kv_heads):
    return learner_layer(x, wq, wk, wv, wo, cos, sin, positions, n_heads, n_kv_heads, rope_k=False)


@wrong("self_attention.no_output_projection")
def _(x, wq, wk, wv, wo, cos, sin, positions, n_heads, n_kv_heads):
    return learner_layer(x, wq, wk, wv, wo, cos, sin, positions, n_heads, n_kv_heads, project=False)


@wrong("self_attention.no_causal_mask")
def _(x, wq, wk, wv, wo, cos, sin, positions, n_heads, n_kv_heads):
    return learner_layer(x, wq, wk, wv, wo, cos, sin, positions, n_heads, n_kv_heads, causal=False)


# day 4: KVCache, cached_self_attention, swiglu

class LearnerCache:
    """A learner's correct cache; each wrong version below changes one method, as one bug would."""

    def __init__(self, n_layers, max_seq_len, n_kv_heads, head_dim):
        self.keys = np.zeros((n_layers, max_seq_len, n_kv_heads, head_dim), np.float32)
        self.values = np.zeros_like(self.keys)
        self.pos = 0
        self.written = [0] * n_layers

    def update(self, layer, k, v):
        T = len(k)
        self.keys[layer][self.pos:self.pos + T] = k
        self.values[layer][self.pos:self.pos + T] = v
        self.written[layer] = self.pos + T
        return self.keys[layer][: self.pos + T], self.values[layer][: self.pos + T]

    def advance(self, n):
        if any(w != self.pos + n for w in self.written):
            raise ValueError("a layer did not write the new tokens")
        self.pos = self.pos + n

    def reset(self):
        self.keys[...] = 0
        self.values[...] = 0
        self.pos = 0
        self.written = [0] * len(self.written)


@wrong("KVCache.writes_at_position_0")
class _(LearnerCache):
    def update(self, layer, k, v):
        self.keys[layer][: len(k)] = k
        self.values[layer][: len(v)] = v
        self.written[layer] = self.pos + len(k)
        return self.keys[layer][: self.pos + len(k)], self.values[layer][: self.pos + len(k)]


@wrong("KVCache.never_advances")
class _(LearnerCache):
    def update(self, layer, k, v):  # no bookkeeping
        self.keys[layer][self.pos:self.pos + len(k)] = k
        self.values[layer][self.pos:self.pos + len(k)] = v
        return self.keys[layer][: self.pos + len(k)], self.values[layer][: self.pos + len(k)]

    def advance(self, n):
        return self.pos + n  # computed, never stored


@wrong("KVCache.advance_unchecked")
class _(LearnerCache):
    def advance(self, n):
        self.pos += n


@wrong("KVCache.returns_new_only")
class _(LearnerCache):
    def update(self, layer, k, v):
        LearnerCache.update(self, layer, k, v)
        return k, v


@wrong("KVCache.returns_whole_buffer")
class _(LearnerCache):
    def update(self, layer, k, v):
        LearnerCache.update(self, layer, k, v)
        return self.keys[layer], self.values[layer]


@wrong("KVCache.pos_moved_in_update")
class _(LearnerCache):
    def update(self, layer, k, v):
        self.keys[layer][self.pos:self.pos + len(k)] = k
        self.values[layer][self.pos:self.pos + len(k)] = v
        self.pos += len(k)
        return self.keys[layer][: self.pos], self.values[layer][: self.pos]

    def advance(self, n):
        pass  # update already moved pos


@wrong("KVCache.float64_arrays")
class _(LearnerCache):
    def __init__(self, n_layers, max_seq_len, n_kv_heads, head_dim):
        super().__init__(n_layers, max_seq_len, n_kv_heads, head_dim)
        self.keys = np.zeros((n_layers, max_seq_len, n_kv_heads, head_dim))
        self.values = np.zeros((n_layers, max_seq_len, n_kv_heads, head_dim))


@wrong("KVCache.reset_keeps_data")
class _(LearnerCache):
    def reset(self):
        self.pos = 0
        self.written = [0] * len(self.written)


@wrong("KVCache.reset_keeps_pos")
class _(LearnerCache):
    def reset(self):
        self.keys[...] = 0
        self.values[...] = 0


def learner_cached(x, wq, wk, wv, wo, cos, sin, n_heads, n_kv_heads, cache, layer, maps=None,
                   restart=False, new_only=False, causal=True, advance=False, keep_maps=True):
    T = x.shape[0]
    start = 0 if restart else cache.pos
    positions = np.arange(start, start + T)
    q = apply_rope(split_heads(linear(x, wq), n_heads), cos, sin, positions)
    k = apply_rope(split_heads(linear(x, wk), n_kv_heads), cos, sin, positions)
    v = split_heads(linear(x, wv), n_kv_heads)
    keys, values = cache.update(layer, k, v)
    if new_only:
        keys, values = k, v
    S = keys.shape[0]
    mask = course_causal_mask(T, S) if causal else np.full((T, S), True)
    if advance:
        cache.advance(T)
    out = learner_attention(q, keys, values, mask)  # [H, T, Dh]
    if maps is not None and keep_maps:
        maps.append(learner_attention_weights(q, keys, mask))
    return linear(merge_heads(out.transpose(1, 0, 2)), wo)


def learner_attention_weights(q, k, mask):
    return stable_softmax(np.where(mask, learner_scores(q, k) * scale_of(q), -np.inf))


@wrong("cached_self_attention.positions_restart")
def _(x, wq, wk, wv, wo, cos, sin, n_heads, n_kv_heads, cache, layer, maps=None):
    return learner_cached(x, wq, wk, wv, wo, cos, sin, n_heads, n_kv_heads, cache, layer, maps, restart=True)


@wrong("cached_self_attention.attends_new_only")
def _(x, wq, wk, wv, wo, cos, sin, n_heads, n_kv_heads, cache, layer, maps=None):
    return learner_cached(x, wq, wk, wv, wo, cos, sin, n_heads, n_kv_heads, cache, layer, maps, new_only=True)


@wrong("cached_self_attention.no_causal_mask")
def _(x, wq, wk, wv, wo, cos, sin, n_heads, n_kv_heads, cache, layer, maps=None):
    return learner_cached(x, wq, wk, wv, wo, cos, sin, n_heads, n_kv_heads, cache, layer, maps, causal=False)


@wrong("cached_self_attention.advances_cache")
def _(x, wq, wk, wv, wo, cos, sin, n_heads, n_kv_heads, cache, layer, maps=None):
    return learner_cached(x, wq, wk, wv, wo, cos, sin, n_heads, n_kv_heads, cache, layer, maps, advance=True)


@wrong("cached_self_attention.ignores_maps")
def _(x, wq, wk, wv, wo, cos, sin, n_heads, n_kv_heads, cache, layer, maps=None):
    return learner_cached(x, wq, wk, wv, wo, cos, sin, n_heads, n_kv_heads, cache, layer, maps, keep_maps=False)


def learner_silu(z):
    return z / (1 + np.exp(-z))


@wrong("swiglu.gate_up_swapped")
def _(x, w_gate, w_up, w_down):
    return ((x @ w_gate.T) * learner_silu(x @ w_up.T)) @ w_down.T


@wrong("swiglu.silu_after_product")
def _(x, w_gate, w_up, w_down):
    return learner_silu((x @ w_gate.T) * (x @ w_up.T)) @ w_down.T


@wrong("swiglu.silu_on_both")
def _(x, w_gate, w_up, w_down):
    return (learner_silu(x @ w_gate.T) * learner_silu(x @ w_up.T)) @ w_down.T


@wrong("swiglu.no_silu")
def _(x, w_gate, w_up, w_down):
    return ((x @ w_gate.T) * (x @ w_up.T)) @ w_down.T


# --- the tests ---------------------------------------------------------------------------------

def syllabus_names(days):
    return [name for day, _, name in syllabus.exercises() if day in days]


@pytest.mark.parametrize("name", syllabus_names(DAYS))
def test_every_check_passes_on_the_course_reference(name):
    exercise = find_exercise(name)
    result = check(exercise.reference)
    assert result.passed and result.status == "passing", result.report
    assert (result.case, result.mistake, result.diagnosis) == (None, None, None)
    assert len(exercise.mistakes) >= 2, f"{name}: fewer than 2 catalogued mistakes"


@pytest.fixture(scope="module")
def learner_copy(tmp_path_factory):  # -> a package of the course's promoted modules, imports rewritten to itself
    """A learner who wrote everything exactly as the course: their own classes (KVCache, Model, ...), which the
    course's isinstance checks then compare against, and their modules importing each other."""
    import importlib
    import uuid

    import tinyllm_lab
    from tinyllm_lab.lab import workspace as ws
    root = tmp_path_factory.mktemp("learner")
    name = f"learner_{uuid.uuid4().hex[:8]}"
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    source = Path(tinyllm_lab.__file__).parent
    modules = set(ws.promoted_modules())
    for module in modules:
        text = ws.rewrite_imports((source / f"{module}.py").read_text(encoding="utf-8"), modules)
        (root / name / f"{module}.py").write_text(text.replace("my_tinyllm", name), encoding="utf-8")
    sys.path.insert(0, str(root))
    try:
        yield lambda module: importlib.import_module(f"{name}.{module}")
    finally:
        sys.path.remove(str(root))
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


@pytest.mark.parametrize("day, module, name", syllabus.exercises())
def test_every_check_passes_on_a_learners_own_copy_of_the_course(learner_copy, day, module, name):
    """The cases hand the learner's code only what it accepts: e.g. block and cached_self_attention get a cache
    of the learner's own KVCache class (the course's code, copied, refuses any other)."""
    impl = getattr(learner_copy(module), name)
    assert impl.__module__.endswith(f".{module}") and impl is not find_exercise(name).reference
    result = check(impl)
    assert result.passed, result.report


@pytest.mark.parametrize("mistake_id", sorted(WRONG))
def test_a_learners_mistake_is_named(mistake_id):
    assert_diagnosed(WRONG[mistake_id], mistake_id)


def test_every_catalogued_mistake_of_days_1_to_4_is_triggered_by_a_learner_version():
    assert set(WRONG) == set(catalogue_ids(DAYS))


@pytest.mark.parametrize("mistake_id", sorted(catalogue_ids(DAYS)))
def test_the_catalogue_tells_its_mistakes_apart(mistake_id):
    """Each catalogued wrong version is diagnosed as itself: no two mistakes give the same outputs."""
    assert check(mistake_named(mistake_id).impl, name=catalogue_ids(DAYS)[mistake_id]).mistake == mistake_id


def test_mistake_ids_are_unique_and_prefixed_by_their_exercise():
    ids = [m.id for ex in exercises().values() for m in ex.mistakes]
    assert len(ids) == len(set(ids))
    for ex in exercises().values():
        if ex.day in DAYS:
            assert all(m.id.startswith(ex.name + ".") for m in ex.mistakes), ex.name


def test_a_stub_is_not_started():
    def rms_norm(x, weight, eps=1e-5):  # [..., D], [D] -> [..., D]
        raise NotImplementedError("rms_norm (day 1) is not written yet: write its body in this cell")

    result = check(rms_norm)
    assert (result.passed, result.status, result.case, result.mistake) == (False, "not started", None, None)
    assert "not started" in result.report and "NotImplementedError" in result.report


def test_a_class_stub_is_not_started():
    class KVCache:
        def __init__(self, n_layers, max_seq_len, n_kv_heads, head_dim):
            raise NotImplementedError("KVCache (day 4) is not written yet")

    assert check(KVCache).status == "not started"


def test_a_half_written_class_fails_naming_the_missing_part():
    class KVCache(LearnerCache):
        def reset(self):
            raise NotImplementedError("KVCache.reset (day 4) is not written yet")

    result = check(KVCache)
    assert result.status == "failing" and result.case == "reset"
    assert "not written yet" in result.report and "KVCache.reset (day 4)" in result.report


def test_an_exception_in_the_learners_code_is_reported_not_raised():
    def causal_mask(n_queries, n_keys):
        return np.tril(np.ones(n_queries, n_keys))  # the shape should be a tuple: TypeError

    result = check(causal_mask)
    assert (result.passed, result.status, result.case) == (False, "failing", "a prompt: 4 queries, 4 keys")
    assert "your code raised TypeError" in result.report
    assert "raised in causal_mask: `return np.tril(np.ones(n_queries, n_keys))" in result.report
    assert "a prompt: 4 queries, 4 keys" in result.report


def test_an_unknown_name_raises_listing_the_checkable_ones():
    def my_softmax(x, axis=-1):
        return x

    with pytest.raises(ValueError, match=r"no exercise named 'my_softmax'.*rms_norm.*KVCache"):
        check(my_softmax)
    with pytest.raises(ValueError, match="pass the function or class itself"):
        check(3)


def test_the_report_shows_the_case_inputs_first_difference_and_max_error():
    result = assert_diagnosed(WRONG["rms_norm.eps_outside_sqrt"], "rms_norm.eps_outside_sqrt")
    assert result.case == "a zero row and tiny rows"
    report = result.report
    assert "failing on case 2 of 5, 'a zero row and tiny rows'" in report
    assert "inputs: x [3, 16] float32, weight [16] float32" in report
    assert "first at index [1, 0]" in report and "max abs error" in report
    assert "eps is added after the square root" in report
    assert repr(result) == report and isinstance(result, CheckResult)


def test_the_report_names_a_dtype_mismatch_in_words():
    result = assert_diagnosed(WRONG["attention_weights.float64_scale"], "attention_weights.float64_scale")
    assert "expected dtype float32, got dtype float64" in result.report
    assert "a float64 scalar such as 1/np.sqrt(Dh) promoted the array" in result.report


def test_the_report_shows_positions_of_a_rope_case():
    result = assert_diagnosed(WRONG["apply_rope.ignores_positions"], "apply_rope.ignores_positions")
    assert "positions [3] int64 = [5, 6, 7]" in result.report


def test_generic_diagnosis_float64():
    def silu(x):
        return x.astype(np.float64) / (1 + np.exp(-x.astype(np.float64)))

    result = check(silu)
    assert result.status == "failing" and result.mistake is None
    assert result.diagnosis.startswith("computed in float64")


def test_generic_diagnosis_transposed():
    def softmax(x, axis=-1):
        return stable_softmax(x, axis).T

    result = check(softmax)
    assert result.mistake is None and "the axes are in the wrong order: shape [8, 3] instead of [3, 8]" in result.diagnosis


def test_generic_diagnosis_nan():
    def silu(x):
        return x / (1 + np.exp(-x)) * (x / x)  # 0 / 0 at x = 0

    result = check(silu)
    assert result.mistake is None and "nan" in result.diagnosis


def test_a_mistake_that_no_catalogue_entry_explains_has_no_diagnosis():
    def swiglu(x, w_gate, w_up, w_down):
        return linear(learner_silu(linear(x, w_gate)) * linear(x, w_up), w_down) * np.float32(2)

    result = check(swiglu)
    assert result.status == "failing" and (result.mistake, result.diagnosis) == (None, None)
    assert "diagnosis" not in result.report


def test_check_shows_no_warnings_for_an_overflowing_learner_function():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check(WRONG["softmax.no_max_subtraction"], name="softmax").mistake == "softmax.no_max_subtraction"


def test_a_correct_learner_version_written_differently_passes():
    def rms_norm(x, weight, eps=1e-5):
        x, weight = np.asarray(x, dtype=np.float32), np.asarray(weight, dtype=np.float32)  # the dtype rule
        return weight * x * (1.0 / np.sqrt(np.mean(x ** 2, axis=-1, keepdims=True) + eps))

    def apply_rope(x, cos, sin, positions):  # the complex-number form of Meta's code
        z = (x[..., 0::2] + 1j * x[..., 1::2]) * (cos[positions] + 1j * sin[positions])[:, None, :]
        return np.stack([z.real, z.imag], axis=-1).reshape(x.shape).astype(np.float32)

    def causal_mask(n_queries, n_keys):
        return np.tril(np.ones((n_queries, n_keys), dtype=bool), k=n_keys - n_queries)

    def repeat_kv(x, n_rep):
        S, K, Dh = x.shape
        return np.broadcast_to(x[:, :, None, :], (S, K, n_rep, Dh)).reshape(S, K * n_rep, Dh)

    def attention(q, k, v, mask):
        return learner_attention(q, k, v, mask).transpose(1, 0, 2)

    def swiglu(x, w_gate, w_up, w_down):
        if w_gate.shape != w_up.shape or w_down.shape != w_gate.shape[::-1] or x.shape[-1] != w_gate.shape[1]:
            raise ValueError(f"swiglu: x {x.shape}, w_gate {w_gate.shape}, w_up {w_up.shape}, w_down {w_down.shape}")
        return (learner_silu(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T

    for fn in (rms_norm, apply_rope, causal_mask, repeat_kv, attention, swiglu):
        assert check(fn).passed, check(fn).report
    assert check(LearnerCache, name="KVCache").passed
    assert check(learner_cached, name="cached_self_attention").passed


def test_a_day_without_a_catalogue_module_is_skipped(monkeypatch):
    check_module = sys.modules["tinyllm_lab.lab.check"]
    monkeypatch.setattr(check_module, "_REGISTRY", None)
    monkeypatch.setitem(syllabus.EXERCISES, 99, [("nowhere", "not_written")])
    names = exercises()
    assert "rms_norm" in names and "not_written" not in names
