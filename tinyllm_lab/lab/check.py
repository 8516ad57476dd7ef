"""`check(fn)`: does a learner's function do what the course's does, and if not, which mistake is it?

How a check works, for the curious learner:

1. `check(rms_norm)` looks up the exercise named `rms_norm` (its reference is
   `tinyllm_lab.ops.rms_norm`, the course's solution).
2. Each exercise has a few *cases*: small, seeded inputs chosen to catch real mistakes (huge
   logits for softmax, positions past 0 for RoPE, 2 and 4 query heads per kv head, a cache that
   already holds tokens, ...). A case is a function `run(impl) -> output` that calls `impl` (your
   function, or the reference) on those inputs.
3. For each case in order, the reference and your function are run, and their outputs compared:
   type, shape, dtype (float32 stays float32), then values within `atol + rtol * |expected|`.
4. At the first case that differs, the check looks for the *diagnosis*: each exercise carries a
   catalogue of mistakes people really make, each written out as a wrong function. The mistake
   whose output equals yours (on the failing case, and on as many other cases as possible) is
   named. If none matches, a generic hint is given where one applies (float64, transposed, nan).

The exercises and their catalogues live in `tinyllm_lab/lab/exercises_day1.py` ... `exercises_day7.py`.
"""

import importlib
import inspect
import math
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyllm_lab.lab import syllabus


# --- the data model: what an exercise is ---------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One test input for an exercise. `run(impl) -> output` calls `impl` on seeded inputs.

    `impl` is the function (or class) under test: the reference, the learner's, or a mistake's.
    The output may be an array, a scalar, a str or bytes, or a tuple / list / dict of those.
    `run` must build its inputs afresh on every call (an impl may modify them in place).
    `inputs`: the inputs in words, e.g. "x [3, 16] float32"; when empty, the check describes the
    arguments of the first call `run` makes (functions only).
    `note`: what the case is there to catch, shown when it fails.
    """
    name: str
    run: object  # callable: impl -> output
    atol: float = 1e-5
    rtol: float = 1e-4
    inputs: str = ""
    note: str = ""


@dataclass(frozen=True)
class Mistake:
    """A catalogued mistake: `impl` is a wrong version, with the same signature as the reference.

    `id`: a short stable name ("rms_norm.eps_outside_sqrt"); `diagnosis`: one or two sentences in
    the notebook's words, saying what is wrong and what the course does instead.
    """
    id: str
    diagnosis: str
    impl: object  # callable or class


@dataclass(frozen=True)
class Exercise:
    """A function or class the learner writes: its reference is `tinyllm_lab.<module>.<name>`."""
    day: int
    module: str
    name: str
    cases: list
    mistakes: list = field(default_factory=list)

    @property
    def reference(self):
        return getattr(importlib.import_module(f"tinyllm_lab.{self.module}"), self.name)


# --- the registry: every exercise of the days whose catalogue exists -----------------------

_REGISTRY = None


def exercises():  # -> {name: Exercise}
    """Every checkable exercise, by name, from `tinyllm_lab.lab.exercises_day1` .. `exercises_day7`.

    A day whose module does not exist yet is skipped. Raises ValueError if two exercises share a name.
    """
    global _REGISTRY
    if _REGISTRY is None:
        registry = {}
        for day in sorted(syllabus.EXERCISES):
            module_name = f"tinyllm_lab.lab.exercises_day{day}"
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as e:
                if e.name != module_name:  # the module exists but something it imports does not
                    raise
                continue
            for exercise in module.EXERCISES:
                if exercise.name in registry:
                    raise ValueError(f"two exercises are named {exercise.name!r} (days "
                                     f"{registry[exercise.name].day} and {exercise.day})")
                registry[exercise.name] = exercise
        _REGISTRY = registry
    return _REGISTRY


def find_exercise(name):  # -> Exercise
    """The exercise called `name`; ValueError listing the checkable names if there is none."""
    registry = exercises()
    if name not in registry:
        names = ", ".join(registry)
        raise ValueError(f"check: there is no exercise named {name!r}; the functions and classes that "
                         f"can be checked are: {names}")
    return registry[name]


# --- the result ------------------------------------------------------------------------------

@dataclass
class CheckResult:
    """What `check` found. Its repr is the report, so a cell ending in `check(fn)` shows it.

    `status`: "passing", "failing", or "not started" (the function still raises
    NotImplementedError). `case`: the first failing case's name; `mistake` / `diagnosis`: the
    catalogued mistake the output matches (id and sentence), or None.
    """
    name: str
    passed: bool
    status: str
    case: str = None
    diagnosis: str = None
    mistake: str = None
    report: str = ""
    parts_failing: list = field(default_factory=list)  # the learner's own functions it uses that fail their checks

    def __repr__(self):
        return self.report

    def _repr_pretty_(self, p, cycle):  # IPython
        p.text(self.report)


# --- comparing two outputs -------------------------------------------------------------------

@dataclass
class _Raised:
    """Stands for "the call raised this exception" in place of an output."""
    error: BaseException

    def __str__(self):
        return f"{type(self.error).__name__}: {self.error}"


def _describe(value):  # -> str: "[3, 16] float32", "str of 5 characters", ...
    if isinstance(value, np.ndarray):
        return f"{list(value.shape)} {value.dtype}"
    if isinstance(value, str) and value.startswith("raises "):  # a case that expects an error (exercises_day1)
        return f"that it {value}"
    if isinstance(value, (str, bytes)):
        return f"{type(value).__name__} of length {len(value)}"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__} of {len(value)}: (" + ", ".join(_describe(v) for v in value) + ")"
    if isinstance(value, dict):
        return f"dict of {len(value)} entries"
    if isinstance(value, np.generic):
        return f"{value.dtype} scalar {value!r}"
    if isinstance(value, _Raised):
        return f"an exception ({value})"
    return f"{type(value).__name__} {value!r}" if isinstance(value, (int, float, bool)) else type(value).__name__


def _fmt(x):
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (complex, np.complexfloating)):
        return str(x)
    x = float(x)
    return repr(x) if not math.isfinite(x) else f"{x:.6g}"


def _where(path):  # "the output", "output[0]", "output['keys']"
    return f"output{path}" if path else "the output"


def _compare(expected, got, atol, rtol, path=""):  # -> None if equal, else a list of lines saying how they differ
    """How `got` differs from `expected`, in words (None when they agree within the tolerance)."""
    if isinstance(got, _Raised) or isinstance(expected, _Raised):
        if isinstance(got, _Raised) and isinstance(expected, _Raised) and str(got) == str(expected):
            return None  # the same exception with the same message (only when matching mistakes)
        return [f"{_where(path)}: expected {_describe(expected)}, got {_describe(got)}"]
    if isinstance(expected, np.ndarray):
        return _compare_arrays(expected, got, atol, rtol, path)
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return [f"{_where(path)}: expected a {type(expected).__name__} of {len(expected)} items, got {_describe(got)}"]
        for i, (e, g) in enumerate(zip(expected, got)):
            diff = _compare(e, g, atol, rtol, f"{path}[{i}]")
            if diff:
                return diff
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(got) != set(expected):
            keys = lambda d: ", ".join(map(repr, d)) if isinstance(d, dict) else _describe(d)  # noqa: E731
            return [f"{_where(path)}: expected a dict with keys {keys(expected)}; got {keys(got)}"]
        for key in expected:
            diff = _compare(expected[key], got[key], atol, rtol, f"{path}[{key!r}]")
            if diff:
                return diff
        return None
    if isinstance(expected, (str, bytes)):
        if type(got) is not type(expected):
            return [f"{_where(path)}: expected {_describe(expected)}, got {_describe(got)}"]
        if got == expected:
            return None
        i = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))
        return [f"{_where(path)}: expected {expected[:60]!r}, got {got[:60]!r}",
                f"first difference at index {i}: expected {expected[i:i + 10]!r}, got {got[i:i + 10]!r}"]
    if isinstance(expected, (bool, np.bool_)):
        if isinstance(got, (bool, np.bool_)) and bool(got) == bool(expected):
            return None
        return [f"{_where(path)}: expected {expected!r}, got {_describe(got)}"]
    if isinstance(expected, (int, float, np.number)):
        if isinstance(got, np.ndarray) and got.shape == ():
            got = got[()]
        if not isinstance(got, (int, float, np.number)) or isinstance(got, (bool, np.bool_)):
            return [f"{_where(path)}: expected the number {_fmt(expected)}, got {_describe(got)}"]
        if isinstance(expected, (np.floating, np.integer)) and isinstance(got, np.generic) and got.dtype != expected.dtype:
            return [f"{_where(path)}: expected a {expected.dtype} scalar, got a {got.dtype} scalar"]
        if np.isclose(float(got), float(expected), atol=atol, rtol=rtol, equal_nan=True):
            return None
        return [f"{_where(path)}: expected {_fmt(expected)}, got {_fmt(got)} "
                f"(error {_fmt(abs(float(got) - float(expected)))})"]
    if expected is None:
        return None if got is None else [f"{_where(path)}: expected None, got {_describe(got)}"]
    try:
        same = bool(got == expected)
    except Exception:  # e.g. an array compared with an object: not the same
        same = False
    return None if same else [f"{_where(path)}: expected {expected!r}, got {got!r}"]


def _compare_arrays(expected, got, atol, rtol, path):
    where = _where(path)
    if not isinstance(got, np.ndarray):
        return [f"{where}: expected a numpy array {_describe(expected)}, got {_describe(got)}"]
    if got.shape != expected.shape:
        return [f"{where}: expected shape {list(expected.shape)}, got shape {list(got.shape)}"]
    lines = []
    if got.dtype != expected.dtype:
        lines.append(f"{where}: expected dtype {expected.dtype}, got dtype {got.dtype}")
    if expected.dtype.kind in "biu" or got.dtype.kind not in "fcbiu":
        bad = expected != got if got.dtype.kind in "fcbiu" else np.ones(expected.shape, dtype=bool)
        max_error = None
    else:
        e, g = expected.astype(np.float64), got.astype(np.complex128 if got.dtype.kind == "c" else np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            bad = ~np.isclose(g, e, atol=atol, rtol=rtol, equal_nan=True)
            err = np.where(np.isnan(e) & np.isnan(g), 0.0, np.abs(g - e))  # nan where exactly one is nan
        max_error = float(np.max(np.where(np.isnan(err), np.inf, err))) if err.size else 0.0
    if np.any(bad):
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        lines.append(f"{where}: {int(np.sum(bad))} of {expected.size} values differ; first at index "
                     f"{list(index)}: expected {_fmt(expected[index])}, got {_fmt(got[index])}")
        if max_error is not None:
            nan = " (nan in one of them)" if np.isnan(e).any() != np.isnan(g).any() else ""
            lines.append(f"max abs error {_fmt(max_error)}{nan} (tolerance {atol:g} + {rtol:g} * |expected|)")
    return lines or None


# --- generic diagnoses, for outputs no catalogued mistake explains ---------------------------

def _leaves(value):  # every array or scalar inside an output, in order
    if isinstance(value, (tuple, list)):
        for v in value:
            yield from _leaves(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    else:
        yield value


RETURNED_NONE = ("your function returned None: is a `return` missing? (A function whose body ends "
                 "without `return ...` gives None, whatever it computed.)")
DTYPE_RULE = ("the output is {got} for {got} input: the dtype rule (day 1, section 7) converts every "
              "argument once, at entry, with `as_float32`, so the result is float32 whatever it is given.")


def _generic_diagnosis(expected, got):  # -> str or None
    if got is None and expected is not None:
        return RETURNED_NONE
    pairs = list(zip(_leaves(expected), _leaves(got)))
    if any(g is None and e is not None for e, g in pairs):
        return RETURNED_NONE
    if any(isinstance(e, np.ndarray) and isinstance(g, np.ndarray) and e.dtype == np.float32
           and g.dtype == np.float16 and g.shape == e.shape for e, g in pairs):
        return DTYPE_RULE.format(got="float16")
    for e, g in pairs:
        if isinstance(e, np.ndarray) and isinstance(g, np.ndarray):
            if e.dtype == np.float32 and g.dtype == np.float64 and _compare(e, g.astype(np.float32), 1e-5, 1e-4) is None:
                return ("computed in float64: somewhere a float64 value (a Python float turned into "
                        "np.float64, np.sqrt of a Python number, an array made without dtype=np.float32) "
                        "promoted the float32 arrays; numpy 2 does this silently. Keep every constant float32.")
            if g.dtype.kind == "f" and e.dtype.kind == "f" and np.isnan(g).any() and not np.isnan(e).any():
                return ("your output contains nan where the reference has none: look for an overflow "
                        "(exp of a large number is inf, and inf / inf = nan) or a 0 / 0.")
            if g.dtype.kind == "f" and np.isinf(g).any() and not np.isinf(e).any():
                return "your output contains inf where the reference has none: something overflowed float32."
            if g.shape != e.shape and g.ndim == e.ndim and sorted(g.shape) == sorted(e.shape):
                return (f"the axes are in the wrong order: shape {list(g.shape)} instead of {list(e.shape)} "
                        f"(a missing or extra transpose?).")
            if g.shape != e.shape:
                return f"the output has shape {list(g.shape)}, but the course's has {list(e.shape)}."
    return None


# --- check -----------------------------------------------------------------------------------

def _call(run, impl):  # -> output, or _Raised(error)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # a naive softmax overflows: the report says so, not a warning
            return run(impl)
    except Exception as error:  # the learner's code may raise anything: report it, never crash
        return _Raised(error)


def _where_raised(error):  # -> "rms_norm: `return x / np.sqrt(ms)`": the last line of the learner's code it passed
    here = Path(__file__).parent  # frames of the check and the catalogue are not the learner's
    numpy_dir = Path(np.__file__).parent
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if not Path(f.filename).is_relative_to(here) and not Path(f.filename).is_relative_to(numpy_dir)]
    if not frames or not frames[-1].line:
        return None
    return f"{frames[-1].name}: `{frames[-1].line.strip()}`"


def _recording(reference, calls):  # the reference, remembering the arguments of each call
    def recorded(*args, **kwargs):
        calls.append((args, kwargs))
        return reference(*args, **kwargs)
    return recorded


def _describe_arg(value):
    if isinstance(value, np.ndarray):
        text = f"[{', '.join(map(str, value.shape))}] {value.dtype}"
        if value.dtype.kind in "iu" and value.size <= 8:
            text += f" = {value.tolist()}"
        return text
    if isinstance(value, (int, float, bool, str, np.generic)):
        return repr(value.item() if isinstance(value, np.generic) else value)
    return type(value).__name__


def _describe_inputs(exercise, case, reference):  # -> "x [3, 16] float32, weight [16] float32, eps=1e-05"
    if case.inputs or inspect.isclass(reference):
        return case.inputs
    calls = []
    _call(case.run, _recording(reference, calls))
    if not calls:
        return ""
    args, kwargs = calls[0]
    try:
        bound = inspect.signature(reference).bind(*args, **kwargs).arguments
    except TypeError:
        bound = {f"arg{i}": a for i, a in enumerate(args)} | kwargs
    text = ", ".join(f"{name} {_describe_arg(v)}" if isinstance(v, np.ndarray) else f"{name}={_describe_arg(v)}"
                     for name, v in bound.items())
    return text + (f" (and {len(calls) - 1} more call(s))" if len(calls) > 1 else "")


def _diagnose(exercise, failing, outputs):  # -> the Mistake whose outputs match the learner's, or None
    """The catalogued mistake that matches the learner's output on the failing case and on the most cases."""
    best, best_score = None, 0
    for mistake in exercise.mistakes:
        if _compare(_call(failing.run, mistake.impl), outputs[failing.name], failing.atol, failing.rtol) is not None:
            continue
        score = 1 + sum(_compare(_call(case.run, mistake.impl), outputs[case.name], case.atol, case.rtol) is None
                        for case in exercise.cases if case.name in outputs and case is not failing)  # 1: the failing case
        if score > best_score:
            best, best_score = mistake, score
    return best


def _code_names(code):  # every global name a code object (and the lambdas, comprehensions inside it) reads
    names = set(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _code_names(const)
    return names


def _learners_parts(obj, name):  # -> [(exercise name, the learner's object)] that obj uses, directly or not
    """The other exercises the learner's `obj` calls: functions and classes it reads from its globals
    (its methods' too), followed through the learner's own code, never into the course's package."""
    registry, found, seen, todo = exercises(), {}, set(), [obj]
    root = str(getattr(obj, "__module__", "")).split(".")[0]  # the learner's package (my_tinyllm) or module
    while todo:
        current = todo.pop()
        module = str(getattr(current, "__module__", ""))
        if id(current) in seen or root in ("", "tinyllm_lab") or module.split(".")[0] != root:
            continue  # only the learner's own code is followed: never the course's, numpy's or anyone else's
        seen.add(id(current))
        functions = [current] if inspect.isfunction(current) else (
            [m for m in vars(current).values() if inspect.isfunction(m)] if inspect.isclass(current) else [])
        for function in functions:
            for used in sorted(_code_names(function.__code__)):
                value = function.__globals__.get(used)
                if value is None or not (inspect.isfunction(value) or inspect.isclass(value)):
                    continue
                if used in registry and used != name and used not in found and value is not registry[used].reference:
                    found[used] = value
                todo.append(value)
    return [(n, found[n]) for n in registry if n in found]  # in course order


def check(obj, name=None):  # -> CheckResult
    """Check a learner's function or class against the course's, on cases chosen to catch real mistakes.

    The reference is found by `obj.__name__` (or `name`, to check a function under another name).
    Returns a CheckResult (`.passed`, `.status`, `.report`, ...), shown as its report in a notebook.
    When it fails, the learner's own functions it uses (e.g. `block` inside `Model`) are checked
    too, and those that fail are named in the report: the likely cause.
    Raises ValueError for a name that is not an exercise. Never raises because of the learner's
    code: an exception from it is reported.
    """
    result = _check(obj, name)
    if result.passed or result.status == "not started":
        return result
    failing = []
    for part, impl in _learners_parts(obj, result.name):
        part_result = _check(impl, part)
        if part_result.status == "failing":
            failing.append(part_result)
    if failing:
        lines = [f"  your own functions it uses fail their checks (the likely cause; fix them first): "
                 f"{', '.join(r.name for r in failing)}"]
        for r in failing:
            said = f"diagnosis: {r.diagnosis}" if r.diagnosis else f"failing on case {r.case!r}"
            lines.append(f"    check({r.name}): {said}")
        result.report += "\n" + "\n".join(lines)
        result.parts_failing = [r.name for r in failing]
    return result


def _check(obj, name=None):  # -> CheckResult: check without looking at the parts obj uses
    name = name or getattr(obj, "__name__", None)
    if name is None:
        raise ValueError(f"check: pass the function or class itself (e.g. check(rms_norm)); got {obj!r}")
    exercise = find_exercise(name)
    reference = exercise.reference
    where = f"day {exercise.day}, {exercise.module}.py"

    outputs = {}  # the learner's output on each case, for the diagnosis
    failing, expected_failing, diff = None, None, None
    for i, case in enumerate(exercise.cases):
        expected = _call(case.run, reference)
        if isinstance(expected, _Raised):  # a bug in the catalogue, not the learner's: say so loudly
            raise RuntimeError(f"check: the reference {name} raised on case {case.name!r}: {expected}") from expected.error
        got = _call(case.run, obj)
        if isinstance(got, _Raised) and isinstance(got.error, NotImplementedError):
            if i == 0:
                report = (f"{name} ({where}): not started. It still raises NotImplementedError: write its "
                          f"body in the cell above, run that cell, then run this check again.")
                return CheckResult(name, False, "not started", report=report)
        outputs[case.name] = got
        diff = _compare(expected, got, case.atol, case.rtol)
        if diff:
            failing, expected_failing = case, expected
            break
    if failing is None:
        cases = "; ".join(c.name for c in exercise.cases)  # names may hold commas themselves
        report = f"{name} ({where}): passing, all {len(exercise.cases)} cases agree with the course ({cases})."
        return CheckResult(name, True, "passing", report=report)

    # The remaining cases too: a mistake that matches the learner on more of them is the better diagnosis.
    for case in exercise.cases:
        if case.name not in outputs:
            outputs[case.name] = _call(case.run, obj)
    got = outputs[failing.name]
    lines = [f"{name} ({where}): failing on case {exercise.cases.index(failing) + 1} of "
             f"{len(exercise.cases)}, {failing.name!r}."]
    if failing.note:
        lines.append(f"  this case: {failing.note}")
    inputs = _describe_inputs(exercise, failing, reference)
    if inputs:
        lines.append(f"  inputs: {inputs}")
    if isinstance(got, _Raised):
        if isinstance(got.error, NotImplementedError):
            lines.append(f"  part of it is not written yet: NotImplementedError: {got.error}")
        else:
            lines.append(f"  your code raised {type(got.error).__name__}: {got.error}")
            origin = _where_raised(got.error)
            if origin:
                lines.append(f"  raised in {origin}")
    else:
        if not isinstance(expected_failing, dict) or _describe(expected_failing) != _describe(got):
            lines.append(f"  expected {_describe(expected_failing)}, got {_describe(got)}")
        lines += [f"  {line}" for line in diff]

    mistake = _diagnose(exercise, failing, outputs)
    if mistake is not None:
        diagnosis = mistake.diagnosis
    elif isinstance(got, _Raised):
        diagnosis = None
    else:
        diagnosis = _generic_diagnosis(expected_failing, got)
    if diagnosis:
        lines.append(f"  diagnosis: {diagnosis}")
    return CheckResult(name, False, "failing", case=failing.name, diagnosis=diagnosis,
                       mistake=mistake.id if mistake else None, report="\n".join(lines))
