"""Day 4 exercises (tinyllm_lab/kv_cache.py, tinyllm_lab/ffn.py): the cases `check` runs, and the mistakes.

The KV cache is a class: each case builds one, drives it the way day 5's model does (every layer
`update`s, then one `advance`), and returns what it observed: the keys and values each `update`
returned, `pos`, and the arrays. `cached_self_attention` is checked with the course's own cache
(dressed as the learner's KVCache class, see `course_cache`), over a prompt and then decoding steps,
so that a position or cache mistake shows at step 2.
"""

import functools

import numpy as np

from tinyllm_lab.attention import attention, attention_weights, causal_mask, merge_heads
from tinyllm_lab.kv_cache import KVCache
from tinyllm_lab.lab.check import Case, Exercise, Mistake
from tinyllm_lab.lab.exercises_day1 import randn, raises_value_error
from tinyllm_lab.lab.exercises_day3 import layer_parts, layer_weights
from tinyllm_lab.ops import linear, silu
from tinyllm_lab.rope import rope_tables


# --- the cache a case hands to the learner's layer --------------------------------------------

def learner_cache_class(impl):  # -> the KVCache class that impl's code checks its cache against
    """The `KVCache` that the learner's code sees: in the globals of the `cached_self_attention` it calls
    (for `block`), or in its own (the notebook or `my_tinyllm.kv_cache`); the course's when there is none."""
    names = getattr(impl, "__globals__", None) or {}
    layer = names.get("cached_self_attention")
    for scope in (getattr(layer, "__globals__", None) or {}, names):
        cls = scope.get("KVCache")
        if isinstance(cls, type):
            return cls
    return KVCache


@functools.cache
def _course_behaviour(cls):  # -> a subclass of the learner's class `cls` with every member of the course's KVCache
    if issubclass(KVCache, cls):
        return KVCache
    members = {name: value for name, value in vars(KVCache).items() if name not in ("__dict__", "__weakref__")}
    return type("KVCache", (cls,), members)


def course_cache(impl, n_layers, max_seq_len, n_kv_heads, head_dim):  # -> a course KVCache, of the learner's class
    """The course's cache, so that a check of a layer or block tests that code alone, built as an instance of the
    learner's own KVCache class: the course's code refuses a cache that is not a KVCache (isinstance), and so
    does a learner's who copied it, against their own class."""
    return _course_behaviour(learner_cache_class(impl))(n_layers, max_seq_len, n_kv_heads, head_dim)


# --- KVCache ----------------------------------------------------------------------------------

def drive_cache(KVCache):  # a prompt of 3 tokens, then 1, then 2, through 2 layers
    cache = KVCache(2, 8, 2, 4)
    seen = {}
    for step, T in enumerate([3, 1, 2]):
        k, v = randn(90 + step, (T, 2, 4)), randn(95 + step, (T, 2, 4))
        for layer in range(2):
            keys, values = cache.update(layer, k + layer, v - layer)
            seen[f"step {step}, layer {layer}: keys returned"] = np.array(keys)  # a copy: update may return views
            seen[f"step {step}, layer {layer}: values returned"] = np.array(values)
        cache.advance(T)
        seen[f"pos after step {step}"] = cache.pos
    seen["keys array"], seen["values array"] = np.array(cache.keys), np.array(cache.values)
    return seen


def drive_reset(KVCache):  # 4 tokens, reset, then 2 new ones
    cache = KVCache(1, 6, 1, 2)
    cache.update(0, randn(100, (4, 1, 2)), randn(101, (4, 1, 2)))
    cache.advance(4)
    cache.reset()
    seen = {"pos after reset": cache.pos, "keys after reset": np.array(cache.keys),
            "values after reset": np.array(cache.values)}
    keys, values = cache.update(0, randn(102, (2, 1, 2)), randn(103, (2, 1, 2)))
    seen["keys returned"], seen["values returned"] = np.array(keys), np.array(values)
    cache.advance(2)
    seen["pos"] = cache.pos
    return seen


def drive_forgotten_layer(KVCache):  # layer 0 writes 3 tokens, layer 1 none, then advance(3)
    cache = KVCache(2, 8, 1, 2)
    cache.update(0, randn(104, (3, 1, 2)), randn(105, (3, 1, 2)))
    try:
        cache.advance(3)
    except Exception:
        return "advance(3) refused"
    return "advance(3) accepted"


class SimpleCache:
    """A correct cache without the input checks: the mistakes below each change one thing of it."""

    def __init__(self, n_layers, max_seq_len, n_kv_heads, head_dim):
        self.keys = np.zeros((n_layers, max_seq_len, n_kv_heads, head_dim), dtype=np.float32)
        self.values = np.zeros((n_layers, max_seq_len, n_kv_heads, head_dim), dtype=np.float32)
        self.pos = 0
        self.written = np.zeros(n_layers, dtype=np.int64)

    def update(self, layer, k, v):
        end = self.pos + k.shape[0]
        self.keys[layer, self.pos:end], self.values[layer, self.pos:end] = k, v
        self.written[layer] = end
        return self.keys[layer, :end], self.values[layer, :end]

    def advance(self, n):
        if np.any(self.written != self.pos + n):
            raise ValueError(f"advance({n}): not every layer wrote positions {self.pos}..{self.pos + n - 1}")
        self.pos += n

    def reset(self):
        self.keys.fill(0)
        self.values.fill(0)
        self.pos = 0
        self.written.fill(0)


class CacheWritesAtZero(SimpleCache):
    def update(self, layer, k, v):
        T = k.shape[0]
        self.keys[layer, :T], self.values[layer, :T] = k, v
        self.written[layer] = self.pos + T
        return self.keys[layer, :self.pos + T], self.values[layer, :self.pos + T]


class CacheNeverAdvances(SimpleCache):
    def update(self, layer, k, v):
        end = self.pos + k.shape[0]
        self.keys[layer, self.pos:end], self.values[layer, self.pos:end] = k, v
        return self.keys[layer, :end], self.values[layer, :end]

    def advance(self, n):
        pass


class CacheAdvanceUnchecked(SimpleCache):
    def advance(self, n):
        self.pos += n


class CacheReturnsNewOnly(SimpleCache):
    def update(self, layer, k, v):
        super().update(layer, k, v)
        return k, v


class CacheReturnsWholeBuffer(SimpleCache):
    def update(self, layer, k, v):
        super().update(layer, k, v)
        return self.keys[layer], self.values[layer]


class CacheMovesPosInUpdate(SimpleCache):
    def update(self, layer, k, v):
        end = self.pos + k.shape[0]
        self.keys[layer, self.pos:end], self.values[layer, self.pos:end] = k, v
        self.pos = end
        return self.keys[layer, :end], self.values[layer, :end]

    def advance(self, n):
        pass


class CacheFloat64(SimpleCache):
    def __init__(self, n_layers, max_seq_len, n_kv_heads, head_dim):
        super().__init__(n_layers, max_seq_len, n_kv_heads, head_dim)
        self.keys = np.zeros((n_layers, max_seq_len, n_kv_heads, head_dim))
        self.values = np.zeros((n_layers, max_seq_len, n_kv_heads, head_dim))


class CacheResetKeepsData(SimpleCache):
    def reset(self):
        self.pos = 0
        self.written.fill(0)


class CacheResetKeepsPos(SimpleCache):
    def reset(self):
        self.keys.fill(0)
        self.values.fill(0)


KV_CACHE = Exercise(4, "kv_cache", "KVCache", cases=[
    Case("a prompt of 3, then 1, then 2 tokens", drive_cache,
         inputs="KVCache(n_layers=2, max_seq_len=8, n_kv_heads=2, head_dim=4); each step: update(layer, k, v) "
                "for layers 0 and 1 with k, v [T, 2, 4] float32, then advance(T), for T = 3, 1, 2",
         note="keys returned by update must be all positions so far, 0 .. pos+T-1"),
    Case("reset", drive_reset,
         inputs="KVCache(1, 6, 1, 2); update + advance(4); reset(); update(0, k, v) with k, v [2, 1, 2]; advance(2)",
         note="after reset() the cache equals a freshly built one"),
    Case("advance after a forgotten layer", drive_forgotten_layer,
         inputs="KVCache(2, 8, 1, 2); update(0, k, v) with 3 tokens (layer 1 writes nothing); advance(3)",
         note="advance(n) must refuse (raise) unless every layer wrote positions pos .. pos+n-1"),
], mistakes=[
    Mistake("KVCache.writes_at_position_0",
            "update writes the new tokens at position 0 instead of at pos, overwriting the cached ones: write "
            "them at positions pos .. pos+T-1 (self.keys[layer, self.pos:self.pos + T] = k).",
            CacheWritesAtZero),
    Mistake("KVCache.never_advances",
            "advance does not move pos on, so every step writes over the same positions: advance(n) adds n to pos.",
            CacheNeverAdvances),
    Mistake("KVCache.advance_unchecked",
            "advance(n) does not check that every layer wrote exactly positions pos .. pos+n-1 (the `written` "
            "bookkeeping, day 4 section 3): a forgotten layer would leave zeros that later queries attend to.",
            CacheAdvanceUnchecked),
    Mistake("KVCache.returns_new_only",
            "update returns only the new keys and values; attention needs all of them so far: "
            "self.keys[layer, :pos + T] and self.values[layer, :pos + T].",
            CacheReturnsNewOnly),
    Mistake("KVCache.returns_whole_buffer",
            "update returns the whole preallocated buffer, the empty (zero) positions too: return only positions "
            "0 .. pos+T-1, or later queries attend to positions that hold no token.",
            CacheReturnsWholeBuffer),
    Mistake("KVCache.pos_moved_in_update",
            "update moves pos itself, so the second layer writes after the first layer's tokens: every layer "
            "writes the same positions pos .. pos+T-1, and pos moves once, in advance(T), after the last layer.",
            CacheMovesPosInUpdate),
    Mistake("KVCache.float64_arrays",
            "the cache arrays are float64: np.zeros(shape) without dtype=np.float32 makes float64, and the keys "
            "it returns then turn attention float64.",
            CacheFloat64),
    Mistake("KVCache.reset_keeps_data",
            "reset sets pos back to 0 but leaves the old keys and values in the arrays: a fresh cache is all "
            "zeros (self.keys.fill(0)).",
            CacheResetKeepsData),
    Mistake("KVCache.reset_keeps_pos",
            "reset does not set pos back to 0, so the next text is written after the old one.",
            CacheResetKeepsPos),
])


# --- cached_self_attention --------------------------------------------------------------------

def new_tokens(x, wq, wk, wv, cos, sin, n_heads, n_kv_heads, start):  # q, k rotated at start.., v
    return layer_parts(x, wq, wk, wv, cos, sin, np.arange(start, start + len(x)), n_heads, n_kv_heads)


def cached_positions_restart(x, wq, wk, wv, wo, cos, sin, n_heads, n_kv_heads, cache, layer, maps=None):
    q, k, v = new_tokens(x, wq, wk, wv, cos, sin, n_heads, n_kv_heads, 0)  # positions from 0, not from cache.pos
    keys, values = cache.update(layer, k, v)
    mask = causal_mask(len(x), keys.shape[0])
    if maps is not None:
        maps.append(attention_weights(q, keys, mask))
    return linear(merge_heads(attention(q, keys, values, mask)), wo)


def cached_attends_new_only(x, wq, wk, wv, wo, cos, sin, n_heads, n_kv_heads, cache, layer, maps=None):
    q, k, v = new_tokens(x, wq, wk, wv, cos, sin, n_heads, n_kv_heads, cache.pos)
    cache.update(layer, k, v)
    mask = causal_mask(len(x), len(x))
    if maps is not None:
        maps.append(attention_weights(q, k, mask))
    return linear(merge_heads(attention(q, k, v, mask)), wo)


def cached_no_mask(x, wq, wk, wv, wo, cos, sin, n_heads, n_kv_heads, cache, layer, maps=None):
    q, k, v = new_tokens(x, wq, wk, wv, cos, sin, n_heads, n_kv_heads, cache.pos)
    keys, values = cache.update(layer, k, v)
    mask = np.ones((len(x), keys.shape[0]), dtype=bool)
    if maps is not None:
        maps.append(attention_weights(q, keys, mask))
    return linear(merge_heads(attention(q, keys, values, mask)), wo)


def cached_advances(x, wq, wk, wv, wo, cos, sin, n_heads, n_kv_heads, cache, layer, maps=None):
    q, k, v = new_tokens(x, wq, wk, wv, cos, sin, n_heads, n_kv_heads, cache.pos)
    keys, values = cache.update(layer, k, v)
    mask = causal_mask(len(x), keys.shape[0])
    if maps is not None:
        maps.append(attention_weights(q, keys, mask))
    cache.advance(len(x))
    return linear(merge_heads(attention(q, keys, values, mask)), wo)


def cached_ignores_maps(x, wq, wk, wv, wo, cos, sin, n_heads, n_kv_heads, cache, layer, maps=None):
    q, k, v = new_tokens(x, wq, wk, wv, cos, sin, n_heads, n_kv_heads, cache.pos)
    keys, values = cache.update(layer, k, v)
    return linear(merge_heads(attention(q, keys, values, causal_mask(len(x), keys.shape[0]))), wo)


def cached_case(seed, D, n_heads, n_kv_heads, steps, with_maps=False):  # -> run(cached_self_attention)
    def run(cached_self_attention):
        head_dim = D // n_heads
        cos, sin = rope_tables(head_dim, 16)
        weights = layer_weights(seed, D, n_heads, n_kv_heads)
        cache = course_cache(cached_self_attention, 1, 16, n_kv_heads, head_dim)  # checks the layer alone
        outputs = []
        for step, T in enumerate(steps):
            x = randn(seed + 10 + step, (T, D))
            if with_maps:
                maps = []
                out = cached_self_attention(x, *weights, cos, sin, n_heads, n_kv_heads, cache, 0, maps=maps)
                outputs += [out, maps]
            else:
                outputs.append(cached_self_attention(x, *weights, cos, sin, n_heads, n_kv_heads, cache, 0))
            cache.advance(T)  # the caller advances, once every layer has written
        return outputs
    return run


CACHED_SELF_ATTENTION = Exercise(4, "kv_cache", "cached_self_attention", cases=[
    Case("a prompt of 3, then 1, then 1 token (H = K = 2)", cached_case(110, 16, 2, 2, [3, 1, 1]),
         inputs="D 16, H = K = 2, Dh 8, a KVCache(1, 16, 2, 8); x [3, 16], then [1, 16], then [1, 16], "
                "cache.advance(T) after each call; output [i] is step i's [T, D]",
         note="step 0 is a prompt at positions 0..2; steps 1 and 2 decode at positions 3 and 4"),
    Case("GQA ratio 2: a prompt of 4, then 2, then 1", cached_case(120, 32, 4, 2, [4, 2, 1]),
         inputs="D 32, H 4, K 2, Dh 8; x [4, 32], then [2, 32], then [1, 32], cache.advance(T) after each call"),
    Case("maps", cached_case(130, 16, 2, 2, [3, 1], with_maps=True),
         inputs="D 16, H = K = 2; x [3, 16] then [1, 16], each with maps=[]; output: [out, maps] of each step",
         note="a list passed as maps receives this layer's attention probabilities [H, T, S]"),
], mistakes=[
    Mistake("cached_self_attention.positions_restart",
            "positions restart at 0 instead of continuing from the cache: the new tokens sit at positions "
            "cache.pos .. cache.pos+T-1, and RoPE must rotate q and k by those.",
            cached_positions_restart),
    Mistake("cached_self_attention.attends_new_only",
            "attends only to the new tokens' keys and values: use the keys and values cache.update returns "
            "(all positions 0 .. pos+T-1), with causal_mask(T, pos + T).",
            cached_attends_new_only),
    Mistake("cached_self_attention.no_causal_mask",
            "no causal mask among the new tokens: a prompt's token t would see tokens after it. Use "
            "causal_mask(T, pos + T): the new queries are the last T of the pos + T positions.",
            cached_no_mask),
    Mistake("cached_self_attention.advances_cache",
            "cached_self_attention advances the cache itself: it only writes its layer, and the caller calls "
            "cache.advance(T) once, after the last layer (day 5's model has several layers).",
            cached_advances),
    Mistake("cached_self_attention.ignores_maps",
            "the maps argument is ignored: when a list is passed, append this layer's attention probabilities "
            "[H, T, S] to it (attention_weights(q, keys, mask)).",
            cached_ignores_maps),
])


# --- swiglu -----------------------------------------------------------------------------------

def swiglu_swapped(x, w_gate, w_up, w_down):
    return linear(linear(x, w_gate) * silu(linear(x, w_up)), w_down)


def swiglu_silu_after_product(x, w_gate, w_up, w_down):
    return linear(silu(linear(x, w_gate) * linear(x, w_up)), w_down)


def swiglu_silu_on_both(x, w_gate, w_up, w_down):
    return linear(silu(linear(x, w_gate)) * silu(linear(x, w_up)), w_down)


def swiglu_no_silu(x, w_gate, w_up, w_down):
    return linear(linear(x, w_gate) * linear(x, w_up), w_down)


def swiglu_case(seed, T, D, F):  # -> run(swiglu)
    def run(swiglu):
        return swiglu(randn(seed, (T, D)), randn(seed + 1, (F, D), scale=D ** -0.5),
                      randn(seed + 2, (F, D), scale=D ** -0.5), randn(seed + 3, (D, F), scale=F ** -0.5))
    return run


def swiglu_no_shape_check(x, w_gate, w_up, w_down):  # numpy's broadcasting error for weights that do not fit
    return linear(silu(linear(x, w_gate)) * linear(x, w_up), w_down)


def swiglu_mismatch(swiglu):  # w_gate [16, 8] but w_up [12, 8]: the gate and up projections differ in F
    w_gate, w_up = randn(161, (16, 8)), randn(162, (12, 8))
    return raises_value_error(lambda: swiglu(randn(160, (3, 8)), w_gate, w_up, randn(163, (8, 16))), (16, 8), (12, 8))


SWIGLU = Exercise(4, "ffn", "swiglu", cases=[
    Case("T 3, D 8, F 16", swiglu_case(140, 3, 8, 16)),
    Case("T 1, D 16, F 24", swiglu_case(150, 1, 16, 24)),
    Case("weights that do not fit", swiglu_mismatch,
         inputs="x [3, 8], w_gate [16, 8], w_up [12, 8], w_down [8, 16] float32",
         note="w_gate and w_up must both be [F, D]: the course raises ValueError naming the shapes, not numpy's "
              "broadcasting error"),
], mistakes=[
    Mistake("swiglu.gate_up_swapped",
            "gate and up are swapped: SiLU goes on the gate projection, silu(linear(x, w_gate)) * linear(x, w_up) "
            "(Meta: w2(silu(w1 x) * w3 x)).",
            swiglu_swapped),
    Mistake("swiglu.silu_after_product",
            "SiLU is applied to the product; it acts on the gate projection alone: silu(linear(x, w_gate)) * linear(x, w_up).",
            swiglu_silu_after_product),
    Mistake("swiglu.silu_on_both",
            "SiLU is applied to both projections; only the gate gets it, the up projection passes as it is.",
            swiglu_silu_on_both),
    Mistake("swiglu.no_silu",
            "SiLU is missing: the gate is silu(linear(x, w_gate)), not linear(x, w_gate).",
            swiglu_no_silu),
    Mistake("swiglu.no_shape_check",
            "weights that do not fit give numpy's broadcasting error between the two projections, which names "
            "neither weight: check that w_gate and w_up are both [F, D] and w_down is [D, F], and raise ValueError "
            "naming the shapes.",
            swiglu_no_shape_check),
])


EXERCISES = [KV_CACHE, CACHED_SELF_ATTENTION, SWIGLU]
