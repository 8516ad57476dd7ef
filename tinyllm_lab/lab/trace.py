"""The first wrong tensor: a learner's assembled model next to the reference, intermediate by intermediate.

`trace("my_tinyllm")` builds the learner's `Model` and tinyllm_lab's on the same weights, feeds
both the same tokens (a prompt, then `decode_steps` single tokens through the KV cache) and
compares the named intermediates in the order the data meets them:

    RoPE cos/sin tables, embedding,
    per layer: attention_norm output, q/k/v projections, q and k after RoPE, keys and values
               from the cache, attention probabilities [H, T, S], attention heads (input of wo),
               attention output, residual h, ffn_norm output, FFN gate / silu(gate) / up /
               hidden / out, block output,
    final norm, logits.

The first one that differs beyond tolerance is reported with its layer, step ("prefill" or
"decode step n"), shapes and max error, and a diagnosis where one matches: a model-level mistake
(the reference run again with that mistake gives exactly the learner's tensors: positions
restarting at 0 in decode, a cache that never advances, a residual or the final norm missing,
post-norm, ...) and the `check` of the learner's function that produced the tensor.

How the intermediates are caught: while each forward pass runs, the course functions bound in
the package's modules (`linear`, `rms_norm`, `apply_rope`, `attention_weights`, `swiglu`,
`block`, ... as imported by name, e.g. `from my_tinyllm.ops import rms_norm` in model.py) are
wrapped so every call's output is recorded, and put back afterwards (also on error). A record is
named by the weight it was called with (`linear(x, layer.wq)` is layer i's q projection) or by
where it was called. The learner changes nothing in their code; a function of theirs that fell
back to the reference is traced like any other. A tensor their code computes without the course
function (say `x @ wq.T` inline) is not caught and not compared: the report lists such names.
"""

import contextlib
import copy
import functools
import importlib
import io
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import tinyllm_lab.model as ref_model
from tinyllm_lab.config import ModelConfig
from tinyllm_lab.kv_cache import KVCache
from tinyllm_lab.model import ModelWeights, random_weights

lab_check = importlib.import_module("tinyllm_lab.lab.check")  # the module (the package's `check` is the function)

MODULES = ("ops", "rope", "attention", "kv_cache", "ffn", "model")  # the package modules the model is assembled from
TRACED = ("linear", "softmax", "rms_norm", "silu", "apply_rope", "attention_weights", "attention",
          "cached_self_attention", "swiglu", "block")  # the functions whose calls are recorded

LAYER_NAMES = (  # one layer's intermediates, in data order
    "attention_norm output", "q projection", "k projection", "v projection", "q after RoPE", "k after RoPE",
    "keys from the cache", "values from the cache", "attention probabilities", "attention heads (input of wo)",
    "attention output", "residual h", "ffn_norm output", "FFN gate x W1^T", "FFN silu(gate)", "FFN up x W3^T",
    "FFN hidden silu(gate)*up", "FFN out", "block output")

# linear(x, weight): the weight's field -> (name of x, name of the output)
LINEAR_NAMES = {"wq": ("attention_norm output", "q projection"), "wk": (None, "k projection"),
                "wv": (None, "v projection"), "wo": ("attention heads (input of wo)", "attention output"),
                "w1": ("ffn_norm output", "FFN gate x W1^T"), "w3": (None, "FFN up x W3^T"),
                "w2": ("FFN hidden silu(gate)*up", "FFN out"), "output": ("final norm", None)}

DEFAULT_CONFIG = ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, hidden_dim=64,
                             vocab_size=48, max_seq_len=16)  # small, with grouped-query attention (K < H)


@dataclass(repr=False)
class TraceResult:
    """What `trace` found. Its repr (what a notebook cell shows) is `report`.

    `passed`: every compared tensor matches at every step. Otherwise `name`, `layer` (None outside
    the blocks), `step` ("prefill" / "decode step n"), `max_error`, `expected_shape` and `got_shape`
    describe the first wrong tensor; `diagnosis` names the mistake where one matches (`mistake`:
    its id); `function` is the learner's function that produced the tensor and `check` the
    `CheckResult` of the first failing check near it. `error`: what the learner's code raised
    (`status` "not started" for a NotImplementedError), with `name` None.
    """
    passed: bool
    report: str
    status: str = "passing"               # "passing", "failing" or "not started"
    name: str | None = None
    layer: int | None = None
    step: str | None = None
    max_error: float | None = None
    expected_shape: tuple | None = None
    got_shape: tuple | None = None
    diagnosis: str | None = None
    mistake: str | None = None
    function: str | None = None
    check: object = None
    error: str | None = None
    compared: int = 0                     # how many tensors were compared (and matched) before the verdict
    not_captured: list = field(default_factory=list)  # names the learner's code computed without a course function

    def __repr__(self):
        return self.report

    def _repr_pretty_(self, p, cycle):  # IPython
        p.text(self.report)


# ---------------------------------------------------------------------------------------------
# Recording the calls of one forward pass
# ---------------------------------------------------------------------------------------------

@dataclass(eq=False)
class _Call:
    module: str                # the module whose global was called, e.g. "my_tinyllm.kv_cache"
    name: str                  # the global's name, e.g. "apply_rope"
    fn: object                 # the function that ran (the learner's, or the reference's fallback)
    parent: object             # the enclosing recorded _Call, or None (called from Model.forward)
    layer: int | None          # the layer it belongs to (from the weights it was given, or its caller's)
    role: tuple | None         # (layer, field) of the first weight among its arguments
    x: object = None           # a copy of its first argument
    output: object = None      # a copy of what it returned
    calls_inside: list = field(default_factory=list)  # the records it encloses, callees before their callers


def _copy(value):  # arrays (also inside tuples) copied, so later writes cannot change a record
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    return value


class _Recorder:
    """Wraps module globals; records every call in completion order (callees before their caller)."""

    def __init__(self, weights):
        self.roles = {}  # id(weight array or LayerWeights) -> (layer, field)
        self.by_shape = {}  # shape -> [(array, (layer, field))]: to recognise a copy of a weight by its values
        self._alive = [weights]  # the ids stay valid while the recorder lives
        named = [(layer, (i, name)) for i, layer in enumerate(weights.layers)
                 for name in ref_model.LayerWeights.__dataclass_fields__]
        named = [(getattr(layer, name), (i, name)) for layer, (i, name) in named]
        named += [(weights.norm, (None, "norm")), (weights.output, (None, "output"))]
        for i, layer in enumerate(weights.layers):
            self.roles[id(layer)] = (i, "layer")
        for array, role in named:
            self.roles[id(array)] = role
            self.by_shape.setdefault(array.shape, []).append((array, role))
        self.calls, self.stack, self.layer = [], [], None

    def role_of(self, args):  # the first argument that is one of the weights (or a copy of exactly one): (layer, field)
        for a in args:
            role = self.roles.get(id(a))
            if role is not None:
                return role
        for a in args:
            if isinstance(a, np.ndarray):
                same = [role for array, role in self.by_shape.get(a.shape, ()) if np.array_equal(array, a)]
                if len(same) == 1:
                    return same[0]
        return None

    def wrap(self, module, name, fn):
        @functools.wraps(fn)
        def traced(*args, **kwargs):
            values = list(args) + list(kwargs.values())
            role = self.role_of(values)
            if role is not None:
                self.layer = role[0]
            else:  # the layer index among its arguments: block(.., i), cached_self_attention(.., layer), update(layer)
                at = {"block": 6, "cached_self_attention": 10, "update": 0}.get(name)
                if at is not None and len(args) > at and isinstance(args[at], (int, np.integer)):
                    self.layer = int(args[at])
            call = _Call(module, name, fn, self.stack[-1] if self.stack else None, self.layer, role,
                         _copy(values[0]) if values else None)
            self.stack.append(call)
            try:
                out = fn(*args, **kwargs)
            finally:
                self.stack.pop()
            call.output = _copy(out)
            self.calls.append(call)
            return out
        return traced


@contextlib.contextmanager
def _wrapped(modules, recorder, patches=()):
    """Within the block, `patches` ((module, name, replacement) ...) are in place and every TRACED global of
    `modules` records its calls into `recorder`; everything is put back on exit, also on error."""
    saved = []
    try:
        for module, name, replacement in patches:
            saved.append((module, name, module.__dict__[name]))
            setattr(module, name, replacement)
        done = set()
        for module in modules:
            if id(module) in done:
                continue
            done.add(id(module))
            for name in TRACED:
                fn = module.__dict__.get(name)
                if callable(fn) and not isinstance(fn, type):
                    saved.append((module, name, fn))
                    setattr(module, name, recorder.wrap(module.__name__, name, fn))
        yield
    finally:
        for module, name, fn in reversed(saved):
            setattr(module, name, fn)


# ---------------------------------------------------------------------------------------------
# Naming the records: (layer, name) -> tensor
# ---------------------------------------------------------------------------------------------

@dataclass
class _Tensor:
    value: object
    producer: object           # the _Call that computed it (for an argument: the caller), or None (Model.forward)
    priority: int              # 0: the direct source; 1: a fallback source


def _passed_in_by(call):  # the record whose code computed call's first argument x (None: Model.forward)
    """x was made by call's caller, unless the caller got it as its own x and passed it on (up to the block)."""
    producer, x = call.parent, call.x
    while (producer is not None and producer.name != "block" and isinstance(producer.x, np.ndarray)
           and isinstance(x, np.ndarray) and producer.x.shape == x.shape and np.array_equal(producer.x, x)):
        producer = producer.parent
    return producer


def _name_calls(calls, config, out):  # [_Call], ModelConfig, forward's return -> {(layer, name): _Tensor}
    named = {}

    def put(layer, name, value, producer, priority=0):
        key = (layer, name)
        if name is None or value is None or (key in named and named[key].priority <= priority):
            return
        named[key] = _Tensor(value, producer, priority)

    rope_count = {}
    for c in calls:
        L, field_ = c.role if c.role else (c.layer, None)
        out_ = c.output
        if c.name == "linear" and c.role and c.role[1] in LINEAR_NAMES:
            x_name, out_name = LINEAR_NAMES[c.role[1]]
            put(L, x_name, c.x, _passed_in_by(c))
            put(L, out_name, out_, c)
        elif c.name == "rms_norm" and field_ == "attention_norm":
            put(L, "attention_norm output", out_, c, 1)
            if L == 0:
                put(None, "embedding", c.x, c.parent, 1)
        elif c.name == "rms_norm" and field_ == "ffn_norm":
            put(L, "residual h", c.x, _passed_in_by(c))
            put(L, "ffn_norm output", out_, c, 1)
        elif c.name == "rms_norm" and field_ == "norm":
            put(None, "final norm", out_, c, 1)
            put(config.n_layers - 1, "block output", c.x, c.parent, 1)
        elif c.name == "block" and c.layer is not None:
            put(c.layer, "block output", out_, c)
            if c.layer == 0:
                put(None, "embedding", c.x, None)
        elif c.name == "apply_rope" and isinstance(out_, np.ndarray) and out_.ndim == 3 and c.layer is not None:
            n = rope_count[c.layer] = rope_count.get(c.layer, 0) + 1
            heads = out_.shape[1]
            if config.n_heads != config.n_kv_heads and heads in (config.n_heads, config.n_kv_heads):
                which = "q" if heads == config.n_heads else "k"
            else:
                which = {1: "q", 2: "k"}.get(n)
            if which:
                put(c.layer, f"{which} after RoPE", out_, c)
        elif c.name == "attention_weights":
            put(c.layer, "attention probabilities", out_, c)
        elif c.name == "softmax" and isinstance(out_, np.ndarray) and out_.ndim == 3 and c.layer is not None:
            put(c.layer, "attention probabilities", out_, c, 1)
        elif c.name == "attention" and isinstance(out_, np.ndarray) and out_.ndim == 3:
            put(c.layer, "attention heads (input of wo)", out_.reshape(out_.shape[0], -1), c, 1)
        elif c.name == "cached_self_attention":
            put(c.layer, "attention output", out_, c, 1)
        elif c.name == "silu" and c.layer is not None:
            put(c.layer, "FFN silu(gate)", out_, c)
        elif c.name == "swiglu":
            put(c.layer, "FFN out", out_, c, 1)
        elif c.name == "update" and isinstance(out_, tuple) and len(out_) == 2:
            put(c.layer, "keys from the cache", out_[0], c)
            put(c.layer, "values from the cache", out_[1], c)
    put(None, "logits", _copy(out), None)
    return named


def _order(config, step):  # the (layer, name) keys of one step, in data order
    keys = [(None, "RoPE cos table"), (None, "RoPE sin table")] if step == 0 else []
    keys.append((None, "embedding"))
    keys += [(i, name) for i in range(config.n_layers) for name in LAYER_NAMES]
    return keys + [(None, "final norm"), (None, "logits")]


def _step_name(step):
    return "prefill" if step == 0 else f"decode step {step}"


# ---------------------------------------------------------------------------------------------
# Running a model: every step's named tensors, or the exception it raised
# ---------------------------------------------------------------------------------------------

@dataclass
class _Run:
    steps: list                # per step: {(layer, name): _Tensor}
    error: BaseException | None = None
    error_step: int | None = None
    error_where: str | None = None     # qualified name of the package function that raised


def _raised_in(error, package_dirs):  # the innermost frame of the traceback inside one of `package_dirs`
    where, tb = None, error.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if any(Path(code.co_filename).resolve().is_relative_to(d) for d in package_dirs):
            module = tb.tb_frame.f_globals.get("__name__", "?")
            where = f"{module}.{code.co_qualname}"
        tb = tb.tb_next
    return where


def _run(modules, config, weights, feeds, patches=(), cache_factory=None):  # -> _Run
    """Build `modules["model"].Model(config, weights)` and run `feeds` (token arrays, one per step), recording each."""
    run = _Run(steps=[])
    dirs = {Path(m.__file__).resolve().parent for m in modules.values() if getattr(m, "__file__", None)}
    try:
        model = modules["model"].Model(config, weights)
        cache = cache_factory(config) if cache_factory else model.new_cache()
    except Exception as e:  # noqa: BLE001 -- reported to the learner, whatever it is
        run.error, run.error_step, run.error_where = e, 0, _raised_in(e, dirs)
        return run
    tables = {"RoPE cos table": getattr(model, "cos", None), "RoPE sin table": getattr(model, "sin", None)}
    all_modules = list(modules.values()) + [importlib.import_module(f"tinyllm_lab.{m}") for m in MODULES]
    for step, tokens in enumerate(feeds):
        recorder = _Recorder(weights)
        try:
            with _wrapped(all_modules, recorder, patches):
                if hasattr(cache, "update"):
                    with contextlib.suppress(AttributeError, TypeError):
                        cache.update = recorder.wrap(type(cache).__module__, "update", cache.update)
                try:  # a nan or inf is reported as a wrong tensor, not as numpy warnings
                    with np.errstate(all="ignore"):
                        out = model.forward(tokens, cache)
                finally:
                    with contextlib.suppress(AttributeError, TypeError):
                        del cache.update
        except Exception as e:  # noqa: BLE001
            run.error, run.error_step, run.error_where = e, step, _raised_in(e, dirs)
            _calls_inside(recorder.calls)
            run.steps.append(_name_calls(recorder.calls, config, None))  # no logits: forward raised before them
            return run
        _calls_inside(recorder.calls)
        named = _name_calls(recorder.calls, config, out)
        if step == 0:
            for name, table in tables.items():
                if isinstance(table, np.ndarray):
                    named[(None, name)] = _Tensor(table.copy(), None, 0)
        run.steps.append(named)
    return run


# ---------------------------------------------------------------------------------------------
# Comparing
# ---------------------------------------------------------------------------------------------

def _difference(expected, got, atol):  # -> None when they match, else a dict describing the difference
    """Match: same shape, float32 when the reference is, and |got - expected| <= atol * max(1, max|expected|)."""
    e = np.asarray(expected)
    try:
        g = np.asarray(got)
    except Exception:  # noqa: BLE001 -- a learner's object that is no array at all
        return {"why": f"got a {type(got).__name__}, not an array", "max_error": float("inf"), "got_shape": None}
    if g.shape != e.shape:
        return {"why": f"shape {list(g.shape)}, expected {list(e.shape)}", "max_error": float("inf"),
                "got_shape": g.shape}
    if not np.issubdtype(g.dtype, np.number):
        return {"why": f"dtype {g.dtype}, expected {e.dtype}", "max_error": float("inf"), "got_shape": g.shape}
    if e.dtype == np.float32 and g.dtype != np.float32:
        why = f"dtype {g.dtype}, expected float32"
    else:
        why = None
    e64, g64 = e.astype(np.float64), g.astype(np.float64)
    both_nan = np.isnan(e64) & np.isnan(g64)
    with np.errstate(invalid="ignore"):
        diff = np.where(both_nan, 0.0, np.abs(g64 - e64))
    diff = np.where(np.isnan(diff), np.inf, diff)  # a nan on one side only: as wrong as can be
    finite = np.abs(e64[np.isfinite(e64)])
    tol = atol * max(1.0, float(finite.max()) if finite.size else 1.0)
    max_error = float(diff.max()) if diff.size else 0.0
    if max_error <= tol and why is None:
        return None
    index = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
    return {"why": why, "max_error": max_error, "tol": tol, "got_shape": g.shape, "index": tuple(int(i) for i in index),
            "expected_value": float(e64[index]) if diff.size else None,
            "got_value": float(g64[index]) if diff.size else None}


def _keys(config, n_steps):  # every (step, layer, name) in data order
    return [(s, layer, name) for s in range(n_steps) for layer, name in _order(config, s)]


def _first_difference(ref, got, config, atol):
    """Walk ref's tensors in data order: (first differing key, its difference, number matched, names not captured)."""
    matched, missing = 0, []
    for s, layer, name in _keys(config, len(ref.steps)):
        if (layer, name) not in ref.steps[s]:
            continue
        if s >= len(got.steps):
            break
        if (layer, name) not in got.steps[s]:
            if got.error is None or s < got.error_step:
                missing.append(name)
            continue
        d = _difference(ref.steps[s][(layer, name)].value, got.steps[s][(layer, name)].value, atol)
        if d is not None:
            return (s, layer, name), d, matched, missing
        matched += 1
    return None, None, matched, missing


def _agreement(run, learner, config, atol):
    """How many of the learner's tensors, in data order, `run` reproduces, and the key where it stops (None: all)."""
    n = 0
    for s, layer, name in _keys(config, len(learner.steps)):
        b = learner.steps[s].get((layer, name))
        if b is None:
            continue  # not captured on the learner's side: nothing to reproduce
        a = run.steps[s].get((layer, name)) if s < len(run.steps) else None
        if a is None or _difference(a.value, b.value, atol) is not None:
            return n, (s, layer, name)
        n += 1
    return n, None


# ---------------------------------------------------------------------------------------------
# Model-level mistakes: the reference run again with one mistake put in
# ---------------------------------------------------------------------------------------------

def _block_without_attention_residual(x, layer, config, cos, sin, cache, i, maps=None):
    m = ref_model  # looked up at call time, so the traced functions record
    a = m.cached_self_attention(m.rms_norm(x, layer.attention_norm, config.norm_eps), layer.wq, layer.wk, layer.wv,
                                layer.wo, cos, sin, config.n_heads, config.n_kv_heads, cache, i, maps)
    h = a  # the mistake: h = attn(norm(x)) without "x +"
    return h + m.swiglu(m.rms_norm(h, layer.ffn_norm, config.norm_eps), layer.w1, layer.w3, layer.w2)


def _block_without_ffn_residual(x, layer, config, cos, sin, cache, i, maps=None):
    m = ref_model
    a = m.cached_self_attention(m.rms_norm(x, layer.attention_norm, config.norm_eps), layer.wq, layer.wk, layer.wv,
                                layer.wo, cos, sin, config.n_heads, config.n_kv_heads, cache, i, maps)
    h = x + a
    return m.swiglu(m.rms_norm(h, layer.ffn_norm, config.norm_eps), layer.w1, layer.w3, layer.w2)  # no "h +"


def _block_post_norm(x, layer, config, cos, sin, cache, i, maps=None):
    m = ref_model  # the original Transformer's order: norm(x + sublayer(x))
    a = m.cached_self_attention(x, layer.wq, layer.wk, layer.wv, layer.wo, cos, sin, config.n_heads,
                                config.n_kv_heads, cache, i, maps)
    h = m.rms_norm(x + a, layer.attention_norm, config.norm_eps)
    return m.rms_norm(h + m.swiglu(h, layer.w1, layer.w3, layer.w2), layer.ffn_norm, config.norm_eps)


def _block_with_norms_swapped(x, layer, config, cos, sin, cache, i, maps=None):
    m = ref_model  # attention reads norm(x) with ffn_norm's weight, the feed-forward with attention_norm's
    a = m.cached_self_attention(m.rms_norm(x, layer.ffn_norm, config.norm_eps), layer.wq, layer.wk, layer.wv,
                                layer.wo, cos, sin, config.n_heads, config.n_kv_heads, cache, i, maps)
    h = x + a
    return h + m.swiglu(m.rms_norm(h, layer.attention_norm, config.norm_eps), layer.w1, layer.w3, layer.w2)


class _CacheThatIsNotAdvanced(KVCache):  # Model.forward without cache.advance(T): the next update raises
    def advance(self, n):
        pass


class _CacheNotAdvancedUnchecked(KVCache):  # forward without cache.advance(T) nor its half-written check
    """The course's `Model.forward` refuses a half-written cache up front; a learner's forward that does not
    check reaches the next step's update, which refuses the second write: this cache lets the model's check
    through (written looks like pos) and puts `written` back before the next update."""

    def advance(self, n):
        self.wrote = self.written.copy()
        self.written[:] = self.pos

    def update(self, layer, k, v):
        if hasattr(self, "wrote"):
            self.written[:] = self.wrote
            del self.wrote
        return super().update(layer, k, v)


class _CacheThatNeverAdvances(KVCache):  # pos stays 0: every forward pass writes over positions 0 .. T-1
    def advance(self, n):
        self.written[:] = self.pos

    def update(self, layer, k, v):
        self.written[layer] = self.pos
        return super().update(layer, k, v)


def _mistakes(weights):  # [(id, diagnosis, patches, cache_factory)], patches: [(module, name, replacement)]
    import tinyllm_lab.attention as att
    import tinyllm_lab.kv_cache as kvc
    from tinyllm_lab.attention import attention_weights
    from tinyllm_lab.ffn import swiglu
    from tinyllm_lab.ops import rms_norm
    from tinyllm_lab.rope import apply_rope

    def rope_from_zero(x, cos, sin, positions):  # positions t instead of cache.pos + t
        positions = np.asarray(positions)
        return apply_rope(x, cos, sin, positions - positions[0])

    def unscaled(q, k, mask):  # q * sqrt(Dh) cancels the 1/sqrt(Dh) inside: scores q k^T
        return attention_weights(q * np.float32(np.sqrt(q.shape[-1])), k, mask)

    def naive_softmax(x, axis=-1):
        with np.errstate(over="ignore", invalid="ignore"):
            e = np.exp(x)
            return e / np.sum(e, axis=axis, keepdims=True)

    def swapped(x, w_gate, w_up, w_down):
        return swiglu(x, w_up, w_gate, w_down)

    final = weights.norm

    def no_final_norm(x, weight, eps=1e-5):
        return x if weight is final else rms_norm(x, weight, eps)

    def cache_never_advances(c):
        return _CacheThatNeverAdvances(c.n_layers, c.max_seq_len, c.n_kv_heads, c.head_dim)

    def cache_not_advanced(c):
        return _CacheThatIsNotAdvanced(c.n_layers, c.max_seq_len, c.n_kv_heads, c.head_dim)

    def cache_not_advanced_unchecked(c):
        return _CacheNotAdvancedUnchecked(c.n_layers, c.max_seq_len, c.n_kv_heads, c.head_dim)

    not_advanced = ("the cache is never advanced (cache.pos stays 0): each decode step writes its key and value over "
                    "position 0 and its query sits at position 0; call cache.advance(T) once every layer has written")

    return [
        ("positions_restart", "positions restart at 0 instead of continuing from the cache: at decode step n the new "
         "token sits at position cache.pos + t, so RoPE must rotate it by that angle, not by t's",
         [(kvc, "apply_rope", rope_from_zero)], None),
        ("cache_not_advanced", not_advanced, [], cache_never_advances),
        ("cache_not_advanced", not_advanced, [], cache_not_advanced),
        ("cache_not_advanced", not_advanced, [], cache_not_advanced_unchecked),
        ("attention_residual_missing", "the residual around attention is missing: h = attention(norm(x)) instead of "
         "h = x + attention(norm(x))", [(ref_model, "block", _block_without_attention_residual)], None),
        ("ffn_residual_missing", "the residual around the feed-forward is missing: the block returns "
         "ffn(norm(h)) instead of h + ffn(norm(h))", [(ref_model, "block", _block_without_ffn_residual)], None),
        ("post_norm", "this is post-norm (norm(x + sublayer(x)), the original Transformer); Llama normalizes "
         "before each sublayer: h = x + attention(norm(x)), out = h + ffn(norm(h))",
         [(ref_model, "block", _block_post_norm)], None),
        ("norm_weights_mixed_up", "the norm weights are mixed up: attention's input must be normalized with "
         "layer.attention_norm and the feed-forward's with layer.ffn_norm",
         [(ref_model, "block", _block_with_norms_swapped)], None),
        ("final_norm_missing", "the final RMSNorm is missing: the output head is applied to the last block's "
         "output instead of rms_norm(x, weights.norm)", [(ref_model, "rms_norm", no_final_norm)], None),
        ("scale_missing", "the attention scores are not divided by sqrt(Dh): softmax(q k^T) instead of "
         "softmax(q k^T / sqrt(Dh))", [(att, "attention_weights", unscaled), (kvc, "attention_weights", unscaled)],
         None),
        ("softmax_no_max", "softmax without subtracting the maximum: exp of a score above ~88 overflows float32 to "
         "inf, and inf / inf gives nan probabilities", [(att, "softmax", naive_softmax)], None),
        ("gate_up_swapped", "SwiGLU's gate and up are swapped: silu is applied to x W3^T (up) instead of x W1^T "
         "(gate); Meta: w2(silu(w1(x)) * w3(x))", [(ref_model, "swiglu", swapped)], None),
    ]


def _model_level_diagnosis(learner, ref_modules, config, weights, feeds, first, atol):  # -> (id, diagnosis) or None
    """The catalogued model-level mistake whose run reproduces the learner's tensors furthest, through `first`."""
    keys = _keys(config, len(feeds))
    best = None
    for mistake_id, diagnosis, patches, cache_factory in _mistakes(weights):
        run = _run(ref_modules, config, weights, feeds, patches, cache_factory)
        agreed, broke = _agreement(run, learner, config, atol)
        same_error = (learner.error is not None and run.error is not None and run.error_step == learner.error_step
                      and type(run.error) is type(learner.error) and str(run.error) == str(learner.error))
        if first is None:  # the learner's code raised before any tensor differed: the mistake must raise the same
            ok = same_error
        else:  # it must reproduce the learner's tensors up to and including the first wrong one
            ok = broke is None or keys.index(broke) > keys.index(first)
        score = (agreed, same_error)
        if ok and (best is None or score > best[0]):
            best = (score, mistake_id, diagnosis)
    return best[1:] if best else None


# ---------------------------------------------------------------------------------------------
# check(...) on the learner's functions near the first wrong tensor
# ---------------------------------------------------------------------------------------------

def _check_candidates(producer, learner_modules):  # the learner's functions to check, innermost first
    out = []
    if producer is not None:  # its callees, then itself, then its callers
        out += [c.fn for c in producer.calls_inside]
        node = producer
        while node is not None:
            out.append(node.fn)
            node = node.parent
    for module, name in (("kv_cache", "KVCache"), ("model", "block"), ("model", "Model")):  # then the assembly
        obj = getattr(learner_modules.get(module), name, None)
        if obj is not None:
            out.append(obj)
    seen, unique = set(), []
    for fn in out:
        if id(fn) not in seen and getattr(fn, "__module__", "").split(".")[0] != "tinyllm_lab":  # references pass
            seen.add(id(fn))
            unique.append(fn)
    return unique


def _first_failing_check(candidates):  # -> (qualified name, CheckResult) or (None, None)
    for fn in candidates:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                result = lab_check.check(fn)
        except Exception:  # noqa: BLE001 -- not a checkable name, or the check itself failed: try the next
            continue
        if not result.passed:
            return _qualname(fn), result
    return None, None


def _calls_inside(calls):  # fill every record's calls_inside (calls are in completion order: innermost first)
    for c in calls:
        node = c.parent
        while node is not None:
            node.calls_inside.append(c)
            node = node.parent


# ---------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------

def default_weights(config=DEFAULT_CONFIG, seed=0):  # -> ModelWeights
    """Seeded random weights that make mistakes visible: activations of order 1, norm weights not all 1,
    and query head 0 sharp enough that its attention scores pass 88 (where a softmax that does not
    subtract the max overflows) while the other heads stay soft (where a missing 1/sqrt(Dh) shows)."""
    rng = np.random.default_rng(seed)
    w = random_weights(config, rng, std=1 / np.sqrt(config.dim))
    for norm in [w.norm] + [a for layer in w.layers for a in (layer.attention_norm, layer.ffn_norm)]:
        norm += np.float32(0.2) * rng.standard_normal(norm.shape, np.float32)
    for layer in w.layers:
        layer.wq[: config.head_dim] *= np.float32(32.0)  # the rows of query head 0
        layer.wk *= np.float32(2.0)
    return w


def _load(package):  # -> {module name: module}
    if isinstance(package, str):
        try:
            package = importlib.import_module(package)
        except ImportError as e:
            raise ValueError(f"trace: cannot import the package {package!r} ({e}); run from the folder that holds it "
                             f"(for the lab: workspace/, where `import my_tinyllm` works) or pass the module") from None
    if not isinstance(package, types.ModuleType):
        raise ValueError(f"trace: package must be a module or its import name, got {type(package).__name__}")
    modules = {}
    for name in MODULES:
        try:
            modules[name] = importlib.import_module(f"{package.__name__}.{name}")
        except ModuleNotFoundError:
            continue
    if "model" not in modules or not hasattr(modules["model"], "Model"):
        raise ValueError(f"trace: {package.__name__} has no model.Model: promote day 5 (the model) first")
    return modules


def _model_inputs(config, weights):  # (config, weights) from trace's arguments
    from tinyllm_lab.weights import load_model
    if isinstance(weights, (str, Path)):
        if config is not None:
            raise ValueError("trace: give either a weights folder (its config.json is the config) or config + weights")
        model = load_model(weights)
        return model.config, model.weights
    if weights is None:
        config = DEFAULT_CONFIG if config is None else config
        return config, default_weights(config)
    if not isinstance(weights, ModelWeights) or not isinstance(config, ModelConfig):
        raise ValueError("trace: weights must be a weights folder, or ModelWeights given together with its ModelConfig "
                         f"as config; got weights={type(weights).__name__}, config={type(config).__name__}")
    ref_model.check_weights(config, weights)
    return config, weights


def _prompt(config, tokens, decode_steps):  # -> [P] int array
    if not isinstance(decode_steps, (int, np.integer)) or decode_steps < 0:
        raise ValueError(f"trace: decode_steps must be a non-negative integer, got {decode_steps!r}")
    if tokens is None:
        n = min(6, config.max_seq_len - decode_steps)
        if n < 1:
            raise ValueError(f"trace: {decode_steps} decode steps leave no room for a prompt in "
                             f"max_seq_len = {config.max_seq_len}")
        tokens = np.random.default_rng(1).integers(0, config.vocab_size, size=n)
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or tokens.size == 0 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"trace: tokens must be a non-empty 1-D array of ints, got {tokens.dtype} {tokens.shape}")
    if tokens.min() < 0 or tokens.max() >= config.vocab_size:
        raise ValueError(f"trace: token ids must lie in 0..{config.vocab_size - 1}, got {tokens.min()}..{tokens.max()}")
    if tokens.size + decode_steps > config.max_seq_len:
        raise ValueError(f"trace: {tokens.size} prompt tokens + {decode_steps} decode steps do not fit "
                         f"max_seq_len = {config.max_seq_len}")
    return tokens


def _greedy_feeds(config, weights, prompt, decode_steps):  # -> [prompt, [t1], [t2], ...]: the reference's choices
    model = ref_model.Model(config, weights)
    cache = model.new_cache()
    feeds, logits = [prompt], model.forward(prompt, cache)
    for _ in range(decode_steps):
        feeds.append(np.array([int(np.argmax(logits[-1]))]))
        logits = model.forward(feeds[-1], cache)
    return feeds


def trace(package="my_tinyllm", *, config=None, weights=None, tokens=None, decode_steps=3, atol=1e-4):
    """Run the learner's model and the reference side by side and report the first intermediate that differs.

    package: the learner's package (a module, or its import name) laid out like tinyllm_lab: its `model`
    module has `Model`; the functions it uses are imported by name (`from my_tinyllm.ops import rms_norm`).
    weights: None (seeded random weights for `config`, by default a small grouped-query model, see
    `default_weights`), a Hugging Face weights folder (e.g. the course's `weights/`), or ModelWeights
    given with their ModelConfig as `config`. tokens: the prompt ([P] ints; default 6 seeded ids).
    After the prefill, `decode_steps` single tokens go through the cache: each is the reference's
    greedy choice, fed to both models. A tensor matches when it has the reference's shape (and
    float32 where the reference is) and max |got - expected| <= atol * max(1, max |expected|).
    Returns a TraceResult; its repr is the report. Raises ValueError for arguments that do not fit
    (a package without model.Model, tokens outside the vocabulary, too many steps for max_seq_len).
    """
    learner_modules = _load(package)
    config, weights = _model_inputs(config, weights)
    prompt = _prompt(config, tokens, decode_steps)
    not_started = _course_model_stands_in(learner_modules)
    if not_started is not None:
        return not_started
    ref_modules = {m: importlib.import_module(f"tinyllm_lab.{m}") for m in MODULES}

    feeds = _greedy_feeds(config, weights, prompt, decode_steps)
    ref = _run(ref_modules, config, weights, feeds)
    if ref.error is not None:
        raise RuntimeError(f"trace: the reference model itself failed: {ref.error}") from ref.error

    learner = _run(learner_modules, config, copy.deepcopy(weights), feeds)
    first, diff, matched, missing = _first_difference(ref, learner, config, atol)
    setting = _setting(config, prompt, decode_steps, atol)
    pkg = learner_modules["model"].__name__.rsplit(".", 1)[0]
    missing = list(dict.fromkeys(missing))
    if first is None and learner.error is None:
        return TraceResult(True, _report_pass(pkg, setting, matched, missing), compared=matched, not_captured=missing)
    not_written = first is None and isinstance(learner.error, NotImplementedError)
    found = None if not_written else _model_level_diagnosis(learner, ref_modules, config, weights, feeds, first, atol)
    mistake, diagnosis = found if found else (None, None)
    if first is None:  # the learner's code raised before any tensor differed
        return _error_result(pkg, setting, learner, matched, missing, mistake, diagnosis)
    s, layer, name = first
    producer = learner.steps[s][(layer, name)].producer
    function, check_result = _first_failing_check(_check_candidates(producer, learner_modules))
    if diagnosis is None and check_result is not None:
        diagnosis = check_result.diagnosis
    where = _qualname(producer.fn) if producer is not None else _qualname(learner_modules["model"].Model.forward)
    if producer is not None:
        caller = _qualname(producer.parent.fn) if producer.parent else "Model.forward"
        where_text = f"{where} (called from {caller})"
    else:
        where_text = where
    report = _report_fail(pkg, setting, first, diff, ref, learner, matched, missing, diagnosis, where_text, function,
                          check_result)
    got_shape = tuple(diff["got_shape"]) if diff["got_shape"] is not None else None
    return TraceResult(False, report, "failing", name=name, layer=layer, step=_step_name(s),
                       max_error=diff["max_error"], expected_shape=tuple(ref.steps[s][(layer, name)].value.shape),
                       got_shape=got_shape, diagnosis=diagnosis, mistake=mistake, function=function or where,
                       check=check_result, compared=matched, not_captured=missing)


def _stand_ins(module):  # -> the names a module of the lab's learner package stands in for (("*",): all of it)
    return tuple(getattr(module, "__lab_stand_ins__", ()))


def _course_model_stands_in(learner_modules):  # -> a "not started" TraceResult, or None when the learner's model runs
    """Before day 5 is promoted, the learner's model.py is the course's (a stand-in): its Model calls the
    course's functions only, so a trace would compare the course with itself. Say so, and name what is
    the learner's so far."""
    model = learner_modules["model"]
    stood_in = _stand_ins(model)
    if "*" not in stood_in and "Model" not in stood_in:
        return None
    pkg = model.__name__.rsplit(".", 1)[0]
    why = (f"{pkg}/model.py is still the course's (day 5 is not promoted yet)" if "*" in stood_in
           else f"{pkg}.model.Model is still the course's (its methods are stubs)")
    yours = [name for name, module in learner_modules.items() if "*" not in _stand_ins(module)]
    lines = [f"trace({pkg}): not started: {why}, so none of your model code would run: the course's Model "
             f"calls only the course's functions, and comparing it with itself tells nothing.",
             f"  your modules so far: {', '.join(f'{pkg}/{n}.py' for n in yours) if yours else 'none'} "
             f"(the others are still the course's)",
             "  write Model (and block) in day 5, promote it (`python -m tinyllm_lab.lab promote day5`), then trace again."]
    return TraceResult(False, "\n".join(lines), "not started", function=f"{model.__name__}.Model")


# ---------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------

def _qualname(fn):  # "my_tinyllm.kv_cache.cached_self_attention"
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', getattr(fn, '__name__', '?'))}"


def _setting(config, prompt, decode_steps, atol):
    c = config
    gqa = " (grouped-query)" if c.n_kv_heads < c.n_heads else ""
    return (f"model dim={c.dim}, n_layers={c.n_layers}, n_heads={c.n_heads}, n_kv_heads={c.n_kv_heads}{gqa}; "
            f"a prompt of {len(prompt)} tokens, then {decode_steps} decode steps; tolerance atol={atol:g}")


def _report_pass(pkg, setting, matched, missing):
    lines = [f"trace({pkg}): passing: all {matched} intermediates match the reference, prefill and decode.",
             f"  {setting}"]
    if missing:
        lines.append(f"  not compared (not among your code's calls of the course functions): {', '.join(missing)}")
    return "\n".join(lines)


def _where_text(layer, name, step):
    return f"`{name}`" + (f" in layer {layer}" if layer is not None else "") + f" at {step}"


def _report_fail(pkg, setting, first, diff, ref, learner, matched, missing, diagnosis, where, function, check_result):
    s, layer, name = first
    expected = ref.steps[s][(layer, name)].value
    lines = [f"trace({pkg}): the first wrong tensor is {_where_text(layer, name, _step_name(s))}.", f"  {setting}",
             f"  everything before it matches ({matched} tensors)."]
    got_shape = list(diff["got_shape"]) if diff["got_shape"] is not None else None
    lines.append(f"  expected shape {list(expected.shape)}, got {got_shape}")
    if diff.get("expected_value") is not None and diff["max_error"] > diff["tol"]:
        lines.append(f"  max |got - expected| = {diff['max_error']:.3g} at {list(diff['index'])}: expected "
                     f"{diff['expected_value']:.6g}, got {diff['got_value']:.6g} (tolerance {diff['tol']:.3g} "
                     f"= atol * max(1, max |expected|))")
    if diff.get("why"):
        lines.append(f"  {diff['why']}")
    lines.append(f"  computed in: {where}")
    if diagnosis:
        lines.append(f"  diagnosis: {diagnosis}")
    if check_result is not None:
        said, name_ = check_result.diagnosis, function.rsplit(".", 1)[-1]
        if said:
            lines.append(f"  check({name_}) fails: {said}")
        else:  # no catalogued mistake matched: its report says which case fails and how
            report = check_result.report.strip().splitlines()
            lines += [f"  check({name_}) fails:"] + [f"    {line}" for line in report]
    if learner.error is not None:
        error, step = learner.error, _step_name(learner.error_step)
        lines.append(f"  (afterwards your code raised {type(error).__name__} at {step}: {error})")
    if missing:
        lines.append(f"  not compared (not among your code's calls of the course functions): {', '.join(missing)}")
    return "\n".join(lines)


def _error_result(pkg, setting, learner, matched, missing, mistake, diagnosis):
    e, step = learner.error, _step_name(learner.error_step)
    where = learner.error_where or "your code"
    if isinstance(e, NotImplementedError):
        report = (f"trace({pkg}): {where} is not written yet (it raised NotImplementedError at {step}):\n"
                  f"  {e}\n  write it (or finish its stub), promote, and trace again.")
        return TraceResult(False, report, "not started", step=step, function=where,
                           error=f"NotImplementedError: {e}", compared=matched, not_captured=missing)
    lines = [f"trace({pkg}): your model raised {type(e).__name__} at {step}, in {where}, after {matched} tensors "
             f"matched the reference:", f"  {e}", f"  {setting}"]
    if diagnosis:
        lines.append(f"  diagnosis: {diagnosis}")
    return TraceResult(False, "\n".join(lines), "failing", step=step, diagnosis=diagnosis, mistake=mistake,
                       function=where, error=f"{type(e).__name__}: {e}", compared=matched, not_captured=missing)
