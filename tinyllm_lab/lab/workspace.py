"""The learner's workspace: exercise notebooks made from the course's, and the learner's own package.

    workspace/                      (git-ignored; the course's notebooks/ stay the solutions)
        day1_math_primitives.ipynb  an exercise notebook per course notebook (day 6 has two)
        ...
        my_tinyllm/                 the learner's engine: what they promote, day by day
        .lab.json                   what was generated from what (so edits are never overwritten)

An exercise notebook is the solution notebook with, for every exercise of the syllabus
(`tinyllm_lab.lab.syllabus`), the body replaced by a stub that raises NotImplementedError naming
the function and the day (signature, shape comment and docstring kept; for a class, every
method), a `check(name)` cell after each exercise's cell, a progress cell at the top, imports of
promoted modules pointing at `my_tinyllm` instead of `tinyllm_lab`, the promotion cell at the end
promoting into `my_tinyllm`, and no outputs. Day 5 ends with `trace`, day 7 with the learner's
engine writing the course's text. A notebook with no exercises is copied with its imports
rewritten.

The learner's package is created with the workspace: every module starts as a stand-in for the
course's (a notice says so when imported), so day 3 imports day 2's functions even when day 2 is
unfinished. Promoting a day replaces its modules with the learner's cells; a function still a
stub there is replaced by the course's, again with a one-line notice naming it.

Nothing a learner wrote is overwritten: regenerating keeps every notebook whose cells differ from
what was generated (a hash in .lab.json), and when the course's notebook changed meanwhile the new
version is written beside it (`dayN_...new.ipynb`) unless the learner asks to replace theirs
(which is kept as a backup first).
"""

import ast
import copy
import hashlib
import importlib
import inspect
import json
import re
import sys
import time
from pathlib import Path

import tinyllm_lab
from tinyllm_lab import promote
from tinyllm_lab.lab import syllabus

REPO = Path(tinyllm_lab.__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
DEFAULT_WORKSPACE = REPO / "workspace"
PACKAGE = "my_tinyllm"
STATE = ".lab.json"
COURSE_PACKAGE_DIR = Path(tinyllm_lab.__file__).resolve().parent
LEARNER_HEADER = ("# Promoted from workspace/{notebook}: your code, by `python -m tinyllm_lab.lab promote`.\n"
                  "# Do not edit here: edit the notebook's `{marker} {module}` cells and promote again.\n\n")
PLACEHOLDER = (f"# {PACKAGE}.{{module}}: not promoted yet. Until you promote {{notebook}}, this module is the\n"
               f"# course's tinyllm_lab.{{module}} (a notice says so when it is imported).\n"
               "from tinyllm_lab.lab.workspace import stand_in_module\n\n"
               "stand_in_module(globals(), {module!r}, {notebook!r})\n")
PLACEHOLDER_FIRST_LINE = f"# {PACKAGE}.{{module}}: not promoted yet."


def _nbformat():  # the nbformat module, imported on first use
    # nbformat and its JSON-schema validator take ~0.9 s to import: only the commands that read or write
    # notebooks pay it, not `import tinyllm_lab.lab` nor the stand-ins every learner module imports
    import nbformat
    return nbformat


def workspace_dir(workspace=None):  # -> Path
    """The workspace: `workspace` if given, else the current folder if it is one (a notebook's
    kernel runs there), else the repository's workspace/."""
    if workspace is not None:
        return Path(workspace)
    if (Path.cwd() / STATE).is_file():
        return Path.cwd()
    return DEFAULT_WORKSPACE


def notebook_day(path):  # -> int or None: "day3_attention.ipynb" -> 3
    match = re.match(r"day(\d+)_", Path(path).name)
    return int(match.group(1)) if match else None


def notebook_exercises(notebook, day=None):  # -> [(module, name)]: the exercises this notebook holds
    """The syllabus's exercises of the notebook's day whose module the notebook promotes, in syllabus order.

    A day may have several notebooks (day 6: day6_safetensors.ipynb promotes `safetensors`,
    day6_weights.ipynb `weights`); each holds the exercises of the modules it promotes.
    `day`: the notebook's day (default: from its file name, "day6_weights.ipynb" -> 6).
    """
    day = notebook_day(notebook) if day is None else day
    own = promote.promoted_cells(Path(notebook))
    return [(module, name) for module, name in syllabus.EXERCISES.get(day, []) if module in own]


def promoted_modules(notebook_dir=NOTEBOOKS):  # -> {module: notebook name}
    """Every module the course's notebooks promote, with the notebook that promotes it."""
    return {module: nb.name for module, nb in promote.owners(notebook_dir).items()}


# --- rewriting code: imports, stubs, definitions ----------------------------------------------

def rewrite_imports(source, modules):  # str, {module names} -> str
    """Point imports (and uses) of the course's promoted modules at the learner's package.

    `from tinyllm_lab.ops import softmax` -> `from my_tinyllm.ops import softmax`;
    `import tinyllm_lab.ffn` and `tinyllm_lab.ffn.swiglu(...)` -> `my_tinyllm.ffn...`;
    `from tinyllm_lab import ops as pkg` -> `from my_tinyllm import ops as pkg`. Other modules
    (`tinyllm_lab.reference`, `tinyllm_lab.lab`, `import tinyllm_lab`) stay the course's.
    """
    if not modules:
        return source
    names = "|".join(sorted(map(re.escape, modules), key=len, reverse=True))
    source = re.sub(rf"\btinyllm_lab\.({names})\b", rf"{PACKAGE}.\1", source)

    def from_import(match):  # `from tinyllm_lab import a, b as c`: split promoted from course modules
        indent, items = match.group(1), [item.strip() for item in match.group(2).split(",")]
        ours = [item for item in items if item.split(" as ")[0].strip() in modules]
        theirs = [item for item in items if item not in ours]
        lines = [f"{indent}from {PACKAGE} import {', '.join(ours)}"] if ours else []
        lines += [f"{indent}from tinyllm_lab import {', '.join(theirs)}"] if theirs else []
        lines[0] += match.group(3) or ""  # a trailing comment stays on the first line
        return "\n".join(lines)
    return re.sub(r"^([ \t]*)from tinyllm_lab import ([\w ,]+?)([ \t]*#.*)?$", from_import, source, flags=re.M)


def _stub_message(qualname, day):
    return (f"{qualname} (day {day}) is not written yet: write its body in the cell that defines it, "
            f"run that cell, then the check cell below it")


def _body_start(node):  # -> index into node.body of the first statement after the docstring
    first = node.body[0]
    is_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
    return 1 if is_doc else 0


def _stub_function(lines, node, qualname, day):  # lines of one def, relative to node -> stubbed lines
    """Keep decorators, signature (with its shape comment) and docstring; the body becomes one raise."""
    start = _node_start(node)
    body = node.body[_body_start(node):]
    if node.body[0].lineno == node.lineno:  # `def f(x): return x`, all on one line
        head = lines[node.lineno - 1][:node.body[0].col_offset].rstrip()
        indent = re.match(r"\s*", lines[node.lineno - 1]).group(0) + "    "
        return lines[start - 1:node.lineno - 1] + [head, f"{indent}raise NotImplementedError({_stub_message(qualname, day)!r})"]
    if body:
        keep_until = body[0].lineno - 1  # 1-based last line kept: everything before the first statement
        # comments between the docstring (or signature) and the first statement are part of the solution
        doc_end = node.body[0].end_lineno if _body_start(node) else _signature_end(lines, node)
        keep_until = min(keep_until, doc_end)
        indent = re.match(r"\s*", lines[body[0].lineno - 1]).group(0)
    else:  # a docstring only
        keep_until = node.body[0].end_lineno
        indent = re.match(r"\s*", lines[node.body[0].lineno - 1]).group(0)
    kept = lines[start - 1:keep_until]
    return kept + [f"{indent}raise NotImplementedError({_stub_message(qualname, day)!r})"]


def _signature_end(lines, node):  # 1-based line of the `:` that ends the def's signature
    parts = [n for n in ast.walk(node.args) if hasattr(n, "end_lineno")] + ([node.returns] if node.returns else [])
    last = max([node.lineno] + [n.end_lineno for n in parts])
    for i in range(last, node.body[0].lineno):
        if lines[i - 1].split("#")[0].rstrip().endswith(":"):
            return i
    return last


def _node_start(node):  # 1-based first line, decorators included
    return min([node.lineno] + [d.lineno for d in node.decorator_list])


def _stub_class(lines, node, day):  # lines of one class -> every method a stub
    out, cursor = [], _node_start(node)
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out += lines[cursor - 1:_node_start(item) - 1]
            out += _stub_function(lines, item, f"{node.name}.{item.name}", day)
            cursor = item.end_lineno + 1
    out += lines[cursor - 1:node.end_lineno]
    return out


def _parses(source):  # -> bool
    try:
        ast.parse(source)
        return True
    except SyntaxError:
        return False


def top_level_definitions(source):  # -> {name: ast node} for the top-level defs and classes
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    return {node.name: node for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def definition_text(source, name):  # -> the lines of top-level `name`, decorators included, or None
    node = top_level_definitions(source).get(name)
    if node is None:
        return None
    return "\n".join(source.split("\n")[_node_start(node) - 1:node.end_lineno])


def replace_definition(source, name, text):  # -> source with top-level `name` replaced by `text`
    """Replace the lines of the top-level function or class `name` (decorators included) by `text`."""
    node = top_level_definitions(source).get(name)
    if node is None:
        raise ValueError(f"no top-level def or class named {name!r} in this cell")
    lines = source.split("\n")
    return "\n".join(lines[:_node_start(node) - 1] + text.split("\n") + lines[node.end_lineno:])


def stub_definition(source, name, day):  # -> the stub text of top-level `name` in `source`
    node = top_level_definitions(source)[name]
    lines = source.split("\n")
    if isinstance(node, ast.ClassDef):
        return "\n".join(_stub_class(lines, node, day))
    return "\n".join(_stub_function(lines, node, name, day))


def is_stub(node):  # -> True when a def's body (after its docstring) is one `raise NotImplementedError...`
    body = node.body[_body_start(node):]
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].exc is None:
        return False
    exc = body[0].exc.func if isinstance(body[0].exc, ast.Call) else body[0].exc
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def stubbed_methods(node):  # ClassDef -> [method names still stubs]
    return [item.name for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and is_stub(item)]


# --- generating an exercise notebook -------------------------------------------------------------

def _cell_hash(nb):  # sha256 of the cells' types and sources: what a learner edits (not outputs)
    cells = [[cell.cell_type, cell.source] for cell in nb.cells]
    return hashlib.sha256(json.dumps(cells, ensure_ascii=False).encode("utf-8")).hexdigest()


def _file_hash(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _is_promotion_cell(cell):
    return cell.cell_type == "code" and ("promote.compare(" in cell.source or "promote.check(" in cell.source)


def _code(source, cell_id):
    cell = _nbformat().v4.new_code_cell(source)
    cell.id = cell_id
    return cell


def _markdown(source, cell_id):
    cell = _nbformat().v4.new_markdown_cell(source)
    cell.id = cell_id
    return cell


def _top_cells(name, day, exercises):
    written = ", ".join(f"`{n}`" for _, n in exercises) if exercises else "nothing: this day has no exercises"
    text = (f"**Your exercise notebook.** Today you write: {written}. Each still raises "
            f"`NotImplementedError`: write its body in its cell, run the cell, then run the `check(...)` "
            f"cell below it, which compares your code with the course's and names the mistake when it "
            f"finds one. The last code cells promote your functions into your own package, "
            f"`my_tinyllm` (in this folder), which the next days import; a function you have not "
            f"finished is stood in for by the course's, with a notice. Save the notebook (Ctrl+S) "
            f"before promoting: promotion reads the saved file. The solution is `notebooks/{name}`; "
            f"`python -m tinyllm_lab.lab reset day{day} NAME` puts one exercise back to its stub.\n\n"
            f"Your progress over days 1 to 7 (day 8 is optional, with no exercises; what you have promoted into `my_tinyllm`):")
    return [_markdown(text, "lab-intro"),
            _code("from tinyllm_lab.lab import check, progress\n\nprogress()", "lab-progress")]


def _promotion_source(name):
    return ("from tinyllm_lab.lab.workspace import promote_day\n\n"
            f"# your cells marked `#| promote: ...`, as saved (Ctrl+S first) -> my_tinyllm/, never tinyllm_lab/\n"
            f"print(promote_day({name!r}, namespace=globals()))")


TRACE_SOURCE = """from tinyllm_lab.lab import trace

# your promoted model (my_tinyllm) and the course's on the same weights and tokens: prefill, then decode
trace("my_tinyllm")"""

ENGINE_SOURCE = '''import sys
from pathlib import Path

import numpy as np

import tinyllm_lab
import tinyllm_lab.session, tinyllm_lab.tokenizer, tinyllm_lab.weights
import my_tinyllm.session, my_tinyllm.tokenizer, my_tinyllm.weights

COURSE_WEIGHTS = Path(tinyllm_lab.__file__).resolve().parents[1] / "weights"  # the trained model


def write(engine, prompt="To be, or not to be", seed=1, max_new_tokens=60):  # engine: (weights, session, tokenizer) modules
    """The text an engine writes from the trained model: the command line's settings (temperature 0.8, top-p 0.95)."""
    weights, session, tokenizer = engine
    model = weights.load_model(COURSE_WEIGHTS)
    tok = tokenizer.Tokenizer.load(COURSE_WEIGHTS / "tokenizer.json")
    ids = session.Session(model, eos_id=tok.eos_id).generate(
        tok.encode(prompt, bos=True), max_new_tokens, np.random.default_rng(seed), temperature=0.8, top_p=0.95)
    return prompt + tok.decode([i for i in ids if i != tok.eos_id])


course_text = write((tinyllm_lab.weights, tinyllm_lab.session, tinyllm_lab.tokenizer))
your_text = write((my_tinyllm.weights, my_tinyllm.session, my_tinyllm.tokenizer))
print(your_text)
print()
if your_text == course_text:
    print("Your engine (my_tinyllm) writes exactly the text the course's engine writes, with the same seed and settings.")
else:
    at = next((i for i, (a, b) in enumerate(zip(your_text, course_text)) if a != b), min(len(your_text), len(course_text)))
    print(f"Your engine's text differs from the course's from character {at}: {your_text[at:at + 30]!r} "
          f"instead of {course_text[at:at + 30]!r}. Run progress() and trace('my_tinyllm') to find where.")
stood_in = [f"{name}.{n}" for name, module in sorted(sys.modules.items()) if name.startswith("my_tinyllm.")
            for n in getattr(module, "__lab_stand_ins__", ())]
if stood_in:
    print("Still the course's in your package (not written yet):", ", ".join(stood_in))'''


CHECK_IMPORT = "from tinyllm_lab.lab import check  # check(fn): your function against the course's\n"


def rewrite_prose(text, modules, day):  # str (markdown) -> str: the solution's promotion described as the learner's
    """`tinyllm_lab/ops.py` -> `my_tinyllm/ops.py` (for promoted modules) and the course's promotion command
    `python -m tinyllm_lab.promote ...` -> `python -m tinyllm_lab.lab promote dayN`: in the workspace, a
    learner's cells are promoted into their own package, never into the course's."""
    if modules:
        names = "|".join(sorted(map(re.escape, modules), key=len, reverse=True))
        text = re.sub(rf"\btinyllm_lab/({names})\.py\b", rf"{PACKAGE}/\1.py", text)
    text = re.sub(r"python -m tinyllm_lab\.promote(?:[ \t]+(?:--check|[\w.-]+\.ipynb))*",
                  f"python -m tinyllm_lab.lab promote day{day}", text)
    # what the solution's promotion cell did (compare the package with the cells) -> what the learner's does
    does = "the cell below promotes them into your package (save the notebook first) and names any exercise still the course's"
    text = re.sub(rf"were copied into `{PACKAGE}/", f"are copied into `{PACKAGE}/", text)
    text = re.sub(r"The check below compares the package file with those cells(?:\s*\([^)]*\))?"
                  r"(?:; the test suite runs the same check)?([.:])", lambda m: does[0].upper() + does[1:] + m.group(1), text)
    text = re.sub(r";\s+the check compares them\s+as code:", f": {does}:", text)
    return text.replace(", `--check` verifies it", "")


def keep_own_exercises(source, wanted):  # str, {exercise name: module} of this notebook -> str
    """Import in the promoted module, but not in the notebook, the exercises this same notebook defines.

    Day 5's session cell imports `sample` from my_tinyllm.sampling: run in the notebook, that line
    would put the promoted (or the course's) `sample` in place of the one the learner just wrote
    above. So `from my_tinyllm.sampling import check_rng, sample` becomes the import of the others
    plus `if __name__ != "__main__":` (true in my_tinyllm/session.py, false in the notebook) for `sample`.
    """
    def split(match):
        indent, module, items = match.group(1), match.group(2), [i.strip() for i in match.group(3).split(",")]
        own = [i for i in items if wanted.get(i) == module]
        if not own:
            return match.group(0)
        others = [i for i in items if i not in own]
        lines = [f"{indent}from {PACKAGE}.{module} import {', '.join(others)}"] if others else []
        return "\n".join(lines + [f"{indent}if __name__ != \"__main__\":  # true in {PACKAGE}, false here: in this "
                                  f"notebook {', '.join(own)} stay{'s' if len(own) == 1 else ''} what you wrote above",
                                  f"{indent}    from {PACKAGE}.{module} import {', '.join(own)}"])
    return re.sub(rf"^([ \t]*)from {PACKAGE}\.(\w+) import ([\w ,]+?)[ \t]*$", split, source, flags=re.M)


def generate(notebook, modules=None, day=None):  # -> nbformat NotebookNode
    """The exercise notebook for one solution notebook (see the module docstring).

    `modules`: the promoted module names whose imports point at my_tinyllm (default: those of
    the notebooks beside `notebook`). Raises ValueError when an exercise of the syllabus for this
    day, of a module this notebook promotes (`notebook_exercises`), is not defined in any of the
    notebook's `#| promote:` cells.
    """
    notebook = Path(notebook)
    modules = set(promoted_modules(notebook.parent) if modules is None else modules)
    day = notebook_day(notebook) if day is None else day
    nb = _nbformat().read(notebook, as_version=4)
    exercises = notebook_exercises(notebook, day)
    wanted = {name: module for module, name in exercises}
    found = []
    cells = []
    for index, cell in enumerate(nb.cells):
        cell = copy.deepcopy(cell)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
        if _is_promotion_cell(cell):
            cell.source = _promotion_source(notebook.name)
            cells.append(cell)
            continue
        checks = []
        if cell.cell_type == "code":
            first = cell.source.split("\n", 1)[0]
            if first.startswith(promote.MARKER):
                module = first[len(promote.MARKER):].strip()
                for name in top_level_definitions(cell.source):
                    if wanted.get(name) == module and name not in found:
                        cell.source = replace_definition(cell.source, name, stub_definition(cell.source, name, day))
                        found.append(name)
                        checks.append(_code(f"check({name})", f"{cell.get('id', index)}-check-{name}"[:64]))
            cell.source = keep_own_exercises(rewrite_imports(cell.source, modules), wanted)
        cells.append(cell)
        cells.extend(checks)
    for cell in cells:
        if cell.cell_type == "markdown":
            cell.source = rewrite_prose(cell.source, modules, day)
    first_code = next((c for c in cells if c.cell_type == "code"), None)
    if wanted and first_code is not None:  # a check cell run after this one finds `check`, whatever came before
        first_code.source = CHECK_IMPORT + first_code.source
    missing = [name for name in wanted if name not in found]
    if missing:
        raise ValueError(f"{notebook.name}: the syllabus lists {', '.join(missing)} for day {day}, but no "
                         f"`{promote.MARKER} MODULE` cell of the notebook defines it (tinyllm_lab/lab/syllabus.py)")
    if exercises:
        cells[1:1] = _top_cells(notebook.name, day, exercises)
    end = next((i for i in range(len(cells) - 1, -1, -1)
                if cells[i].cell_type == "markdown" and cells[i].source.lstrip().startswith("## Exercises")), len(cells))
    extra = []
    if ("model", "Model") in exercises:
        extra = [_markdown("**When every function passes but the model does not**, `trace` runs your promoted "
                           "model and the course's on the same weights and tokens and names the first "
                           "intermediate tensor that differs, the step, and the likely mistake.", "lab-trace-intro"),
                 _code(TRACE_SOURCE, "lab-trace")]
    if exercises and day == max(syllabus.EXERCISES):
        extra = [_markdown("**Your engine, end to end.** Your package `my_tinyllm` loads the trained model in "
                           "`weights/` and writes from the same prompt with the same seed and settings as the "
                           "course's engine (the command line's `--seed 1 --max-new-tokens 60`):", "lab-engine-intro"),
                 _code(ENGINE_SOURCE, "lab-engine")]
    cells[end:end] = extra
    nb.cells = cells
    return nb


# --- the learner's package ---------------------------------------------------------------------

def _learner_package(workspace):
    return Path(workspace) / PACKAGE


def _refuse_course_path(path):  # learner promotion must never write into the course's package
    path = Path(path).resolve()
    if path == COURSE_PACKAGE_DIR or COURSE_PACKAGE_DIR in path.parents:
        raise ValueError(f"refusing to write {path}: it is inside the course's package {COURSE_PACKAGE_DIR}")


def ensure_package(workspace, modules):  # -> [lines]: the package and a stand-in for every unpromoted module
    """Create `my_tinyllm/` with a stand-in module for each of `modules` ({module: notebook}) not there yet."""
    package = _learner_package(workspace)
    _refuse_course_path(package)
    package.mkdir(parents=True, exist_ok=True)
    lines = []
    init = package / "__init__.py"
    if not init.exists():
        init.write_text('"""Your engine: the functions you wrote in the workspace\'s notebooks, promoted day by day."""\n',
                        encoding="utf-8")
        lines.append(f"{PACKAGE}/: created")
    for module, notebook in sorted(modules.items()):
        path = package / f"{module}.py"
        if not path.exists():
            path.write_text(PLACEHOLDER.format(module=module, notebook=notebook), encoding="utf-8")
            lines.append(f"{PACKAGE}/{module}.py: the course's until you promote {notebook}")
    return lines


def stand_in_module(namespace, module, notebook):
    """Make a placeholder module of the learner's package the course's `tinyllm_lab.<module>`, with a notice."""
    reference = importlib.import_module(f"tinyllm_lab.{module}")
    namespace.update({k: v for k, v in vars(reference).items() if not k.startswith("__")})
    namespace["__lab_stand_ins__"] = ("*",)
    print(f"[{PACKAGE}] {module}: not promoted yet (promote {notebook}): using the course's tinyllm_lab.{module} whole",
          file=sys.stderr)


def stand_in(namespace, module, names):
    """Replace the learner's functions that are still stubs by the course's, each with a one-line notice."""
    reference = importlib.import_module(f"tinyllm_lab.{module}")
    for name, why in names.items():
        namespace[name] = getattr(reference, name)
        print(f"[{PACKAGE}] {module}.{name} {why}: using the course's tinyllm_lab.{module}.{name}", file=sys.stderr)
    namespace["__lab_stand_ins__"] = tuple(names)
    namespace["__lab_stand_in_why__"] = dict(names)  # progress says why, e.g. a cell that lost its marker line


def _stand_ins(source, module):  # -> {name: why} for the exercises of `module` still stubs in `source`
    exercise_names = {name for _, m, name in syllabus.exercises() if m == module}
    out = {}
    for name, node in top_level_definitions(source).items():
        if name not in exercise_names:
            continue
        if isinstance(node, ast.ClassDef):
            stubs = stubbed_methods(node)
            if stubs:
                out[name] = f"still has stub methods ({', '.join(stubs)})"
        elif is_stub(node):
            out[name] = "is not written yet"
    return out


class NotSaved(ValueError):
    """Promotion refused: the kernel ran other versions of the promoted functions than the saved notebook holds.

    In a notebook it shows as its one-line message, without a traceback into the lab's code."""

    def _render_traceback_(self):  # IPython shows these lines instead of the traceback
        return [f"{type(self).__name__}: {self}"]


def _not_as_saved(path, namespace):  # -> [names] of promoted defs whose running version is not the saved one
    """The functions and classes of `path`'s promoted cells that `namespace` (a kernel's globals)
    holds in another version than the saved notebook: edited and not saved, or saved and not run.
    Only what the kernel defined itself counts: a name a later cell rebound by an import is skipped."""
    saved, promoted = {}, []
    for cell in _nbformat().read(path, as_version=4).cells:
        if cell.cell_type == "code":
            for name, node in top_level_definitions(cell.source).items():
                saved.setdefault(name, []).append(node)
                if cell.source.startswith(promote.MARKER):
                    promoted.append(name)

    def running(obj):  # -> ast of a function's source as the kernel ran it, or None when unknown
        try:
            source = inspect.getsource(obj)
            if source[:1].isspace():  # a method: parse it indented, so its docstring keeps its own indentation
                return ast.parse("if True:\n" + source).body[0].body[0]
            return ast.parse(source).body[0]
        except (OSError, TypeError, SyntaxError, IndexError):
            return None
    stale = []
    for name in promoted:
        obj = namespace.get(name)
        if getattr(obj, "__module__", None) != namespace.get("__name__"):
            continue  # imported (e.g. `from my_tinyllm.sampling import sample`), not run from a cell: nothing to compare
        if inspect.isfunction(obj):
            node = running(obj)
            if node is not None and all(ast.dump(node) != ast.dump(s) for s in saved[name]):
                stale.append(name)
        elif inspect.isclass(obj):
            methods = {m.name: ast.dump(m) for s in saved[name] if isinstance(s, ast.ClassDef)
                       for m in s.body if isinstance(m, ast.FunctionDef)}
            for attr, member in vars(obj).items():
                node = running(member) if inspect.isfunction(member) else None
                if node is not None and methods.get(attr) != ast.dump(node):
                    stale.append(f"{name}.{attr}")
    return stale


def promote_day(notebook, workspace=None, namespace=None):  # -> str: one line per module written
    """Promote the learner's cells of one workspace notebook into `my_tinyllm/` (never tinyllm_lab/).

    `notebook`: a name such as "day1_math_primitives.ipynb", "day1" or 1 (a day of several notebooks,
    such as day 6, promotes each of them, in name order). Each module's cells are
    written, imports pointing at my_tinyllm; an exercise still a stub ends up as the course's
    (a notice names it on import). Modules already imported in this Python are forgotten, so the
    next import reads the new file. Promotion reads the saved notebook: pass the kernel's
    `globals()` as `namespace` to refuse (ValueError naming them) when a promoted function that
    ran differs from the saved one. Raises FileNotFoundError for an unknown notebook.
    """
    workspace = workspace_dir(workspace)
    paths = find_notebooks(workspace, notebook)
    if len(paths) > 1:
        return "\n".join(promote_day(path.name, workspace, namespace) for path in paths)
    path = paths[0]
    stale = _not_as_saved(path, namespace) if namespace is not None else []
    if stale:
        raise NotSaved(f"nothing promoted: {', '.join(stale)} in the saved {path.name} is not what this kernel "
                         f"ran. Save the notebook (Ctrl+S), run the cells that define them (and their checks), "
                         f"then this cell again.")
    owners, cells = promoted_modules(NOTEBOOKS), promote.promoted_cells(path)  # each notebook read once
    modules = set(owners) | set(cells)
    package = _learner_package(workspace)
    _refuse_course_path(package)
    package.mkdir(parents=True, exist_ok=True)
    lines = []
    day = notebook_day(path)
    course = [m for m, nb in owners.items() if nb == path.name.replace(".new.ipynb", ".ipynb")]
    for module in course:
        if module not in cells:  # every `#| promote: MODULE` line of this module was removed
            target = package / f"{module}.py"
            _refuse_course_path(target)
            target.write_text(PLACEHOLDER.format(module=module, notebook=path.name), encoding="utf-8")
            sys.modules.pop(f"{PACKAGE}.{module}", None)
            lost = [n for d, m, n in syllabus.exercises(day) if m == module] if day in syllabus.EXERCISES else []
            lines.append(f"{PACKAGE}/{module}.py: no cell of {path.name} starts with `{promote.MARKER} {module}` "
                         f"(was that first line removed?): the course's module stands in whole"
                         + (f", for {', '.join(lost)} too" if lost else "")
                         + f". Put the line `{promote.MARKER} {module}` back at the top of the cells that define them.")
    for module, sources in cells.items():
        text = rewrite_imports(promote.render(path, module, sources, header=LEARNER_HEADER), modules)
        stubs = _stand_ins(text, module)
        defined, parses = top_level_definitions(text), _parses(text)
        absent = [n for d, m, n in syllabus.exercises() if m == module and d == day and n not in defined
                  and parses]  # (code that does not parse fails on import, with Python's own error)
        course_file = COURSE_PACKAGE_DIR / f"{module}.py"
        given = [n for n in top_level_definitions(course_file.read_text(encoding="utf-8")) if n not in defined
                 and n not in absent and not n.startswith("_") and parses] if course_file.exists() else []
        absent += given  # given code (e.g. as_float32) whose cell lost its marker line: later days import it too
        stubs.update({n: f"was not found in your `{promote.MARKER} {module}` cells" for n in absent})
        if stubs:
            text += ("\n\n# Still stubs: the course's stand in for them, with a notice, until you write them.\n"
                     "from tinyllm_lab.lab.workspace import stand_in\n\n"
                     f"stand_in(globals(), {module!r}, {stubs!r})\n")
        target = package / f"{module}.py"
        _refuse_course_path(target)
        target.write_text(text, encoding="utf-8")
        sys.modules.pop(f"{PACKAGE}.{module}", None)
        done = [name for _, m, name in syllabus.exercises() if m == module and name not in stubs
                and name in defined]  # the stand-in lines appended above define no exercise
        note = f"yours: {', '.join(done) or 'no exercise'}" + (
            f"; still the course's: {', '.join(n for n in stubs if n not in absent)}" if set(stubs) - set(absent) else "")
        lines.append(f"{PACKAGE}/{module}.py <- {path.name} ({note})")
        if absent:
            lines.append(f"  {', '.join(absent)}: no `{promote.MARKER} {module}` cell defines "
                         f"{'it' if len(absent) == 1 else 'them'} (a cell without that first line is not promoted): "
                         f"the course's stands in. Put `{promote.MARKER} {module}` back as the first line of the cell "
                         f"that defines {'it' if len(absent) == 1 else 'them'}, save, and promote again.")
    return "\n".join(lines) if lines else f"{path.name} has no `{promote.MARKER}` cells"


# --- the workspace: make, update, reset ----------------------------------------------------------

def find_notebooks(workspace, notebook):  # -> [Path]: the workspace notebooks of "day6", 6 or a file name
    """Every workspace notebook `notebook` names: a file name (".ipynb" optional) names one; a day ("day6" or 6) names each
    notebook of that day (day 6 has two). Raises FileNotFoundError, listing the notebooks there, when none."""
    workspace = Path(workspace)
    key = str(notebook)
    if key.isdigit():
        key = f"day{key}"
    if key.endswith(".ipynb") or (workspace / f"{Path(key).name}.ipynb").exists():  # a file name, with or without .ipynb
        path = workspace / Path(key if key.endswith(".ipynb") else f"{key}.ipynb").name
        if path.exists():
            return [path]
    else:
        matches = sorted(p for p in workspace.glob(f"{key}_*.ipynb") if not p.name.endswith((".new.ipynb",)) and ".backup-" not in p.name)
        if matches:
            return matches
    available = ", ".join(p.name for p in sorted(workspace.glob("day*.ipynb"))) or "none (run `python -m tinyllm_lab.lab workspace`)"
    raise FileNotFoundError(f"no exercise notebook {notebook!r} in {workspace}; there are: {available}")


def find_notebook(workspace, notebook):  # -> Path of the workspace notebook for "day3", 3 or a file name
    """The one workspace notebook `notebook` names; FileNotFoundError when none, ValueError when a day has several."""
    matches = find_notebooks(workspace, notebook)
    if len(matches) == 1:
        return matches[0]
    raise ValueError(f"{notebook!r} names {len(matches)} notebooks: {', '.join(p.name for p in matches)}; name one of them")


def _read_state(workspace):
    path = Path(workspace) / STATE
    if not path.exists():
        return {"notebooks": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def _write_state(workspace, state):
    (Path(workspace) / STATE).write_text(json.dumps(state, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _beside(path, tag):  # day1_x.ipynb -> day1_x.<tag>.ipynb
    return path.with_name(f"{path.stem}.{tag}.ipynb")


def make_workspace(workspace=None, notebook_dir=NOTEBOOKS, replace=()):  # -> [report lines]
    """Make or update the workspace; never overwrites a notebook whose cells the learner changed.

    For each course notebook: written if absent; regenerated if the learner has not changed it and
    the course's changed; kept if the learner changed it. When both changed, the new version is
    written beside it as `dayN_....new.ipynb`, or, for a notebook named in `replace` ("day3",
    3 or the file name), the learner's is first copied to `dayN_....backup-<time>.ipynb` and then
    replaced. Also creates the learner's package with a stand-in for each unpromoted module.
    """
    workspace = workspace_dir(workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    state = _read_state(workspace)
    modules = promoted_modules(notebook_dir)
    replace = {f"day{r}" if str(r).isdigit() else str(r) for r in replace}
    sources = promote.notebooks(notebook_dir)
    unknown = replace - {p.name for p in sources} - {f"day{notebook_day(p)}" for p in sources}
    if unknown:
        raise ValueError(f"--replace {', '.join(sorted(unknown))}: no such course notebook; there are: "
                         f"{', '.join(p.name for p in sources)}")
    lines = []
    for source in sources:
        name, target = source.name, workspace / source.name
        record = state["notebooks"].get(name)
        source_hash = _file_hash(source)
        wants_replace = name in replace or f"day{notebook_day(name)}" in replace
        if target.exists() and record is None and not wants_replace:
            lines.append(f"{name}: kept (it was not made by this workspace; pass --replace day{notebook_day(name)} to replace it)")
            continue
        if target.exists() and record is not None:
            learner_changed = _cell_hash(_nbformat().read(target, as_version=4)) != record["generated"]
            course_changed = source_hash != record["source"]
            if not course_changed and not wants_replace:
                lines.append(f"{name}: {'kept, with your edits' if learner_changed else 'up to date'}")
                continue
            if learner_changed and not wants_replace:
                new = _beside(target, "new")
                _nbformat().write(generate(source, modules), new)
                lines.append(f"{name}: the course's notebook changed since your copy was made, and you have edited "
                             f"yours: kept yours; the new version is {new.name}. Take what you want from it, or run "
                             f"`python -m tinyllm_lab.lab workspace --replace day{notebook_day(name)}` "
                             f"(your version is kept as a backup)")
                continue
        nb = generate(source, modules)
        generated = _cell_hash(nb)  # before any of the learner's code is carried over: theirs counts as an edit
        action = "created"
        if target.exists():
            if wants_replace:
                backup = _beside(target, "backup-" + time.strftime("%Y%m%d-%H%M%S"))
                backup.write_bytes(target.read_bytes())
                carried, left = carry_over(_nbformat().read(target, as_version=4), nb, notebook_day(name))
                action = f"replaced by the course's current version (yours is kept as {backup.name})"
                if carried:
                    action += f"; your {', '.join(carried)} carried over into it"
                if left:
                    action += (f"; NOT carried over (no longer an exercise cell of the new version): "
                               f"{', '.join(left)}: copy what you need from {backup.name}")
            else:
                action = "updated to the course's current version (you had not edited it)"
        _nbformat().write(nb, target)
        _beside(target, "new").unlink(missing_ok=True)
        state["notebooks"][name] = {"source": source_hash, "generated": generated}
        lines.append(f"{name}: {action}")
    lines += ensure_package(workspace, modules)
    _write_state(workspace, state)
    return lines


def _written_by_learner(node):  # a def the learner wrote (not a stub); a class with at least one written method
    if isinstance(node, ast.ClassDef):
        methods = [m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]
        return any(not is_stub(m) for m in methods)
    return not is_stub(node)


def carry_over(old, new, day):  # -> ([names carried over], [names that could not be])
    """Put the learner's written exercises of notebook `old` into the freshly generated `new` (in place).

    Each exercise of `day` that the learner wrote (not a stub) in a code cell of `old` replaces its stub
    in the cell of `new` that defines it. An exercise the new version no longer defines is not carried
    (the caller keeps the old notebook as a backup)."""
    carried, left = [], []
    for _, name in syllabus.EXERCISES.get(day, []):
        mine = next((definition_text(c.source, name) for c in old.cells if c.cell_type == "code"
                     and name in top_level_definitions(c.source)
                     and _written_by_learner(top_level_definitions(c.source)[name])), None)
        if mine is None:
            continue
        cell = next((c for c in new.cells if c.cell_type == "code" and c.source.startswith(promote.MARKER)
                     and name in top_level_definitions(c.source)), None)
        if cell is None:
            left.append(name)
            continue
        cell.source = replace_definition(cell.source, name, mine)
        carried.append(name)
    return carried, left


def reset(day, name, workspace=None, notebook_dir=NOTEBOOKS):  # -> str: what was done
    """Put one exercise of a workspace notebook back to its stub; the learner's version is kept aside.

    The learner's definition goes to `workspace/backups/dayN_NAME-<time>.py` and the stub of the
    course's current notebook replaces it in its cell. Raises ValueError when NAME is not an
    exercise of that day or no cell of the notebook defines it.
    """
    workspace = workspace_dir(workspace)
    paths = find_notebooks(workspace, day)
    course = [Path(notebook_dir) / p.name.replace(".new.ipynb", ".ipynb") for p in paths]
    path = next((p for p, c in zip(paths, course) if c.is_file()  # a day of several notebooks: the one holding it
                 and name in {n for _, n in notebook_exercises(c, notebook_day(p))}), paths[0])
    number = notebook_day(path)
    module = dict((n, m) for m, n in syllabus.EXERCISES.get(number, [])).get(name)
    if module is None:
        names = ", ".join(n for _, n in syllabus.EXERCISES.get(number, []))
        raise ValueError(f"{name!r} is not an exercise of day {number}; its exercises are: {names}")
    fresh = generate(Path(notebook_dir) / path.name.replace(".new.ipynb", ".ipynb"), promoted_modules(notebook_dir))
    stub = next(definition_text(c.source, name) for c in fresh.cells
                if c.cell_type == "code" and c.source.startswith(promote.MARKER) and definition_text(c.source, name))
    nb = _nbformat().read(path, as_version=4)
    cell = next((c for c in nb.cells if c.cell_type == "code" and c.source.startswith(promote.MARKER)
                 and definition_text(c.source, name)), None)
    cell = cell or next((c for c in nb.cells if c.cell_type == "code" and definition_text(c.source, name)), None)
    if cell is None:
        raise ValueError(f"no cell of {path.name} defines {name} (at the top level of a cell): nothing to reset")
    mine = definition_text(cell.source, name)
    if mine == stub:
        return f"{name} in {path.name} is already its stub: nothing changed"
    backups = workspace / "backups"
    backups.mkdir(exist_ok=True)
    backup = backups / f"day{number}_{name}-{time.strftime('%Y%m%d-%H%M%S')}.py"
    backup.write_text(f"{promote.MARKER} {module}\n"
                      f"# Your {name} from {path.name}, before `reset` put the stub back. To restore it, paste this\n"
                      f"# file into the cell that defines {name}, replacing the stub, and keep the first line\n"
                      f"# `{promote.MARKER} {module}` at the top of that cell: only cells that start with it are promoted.\n"
                      f"{mine}\n", encoding="utf-8")
    cell.source = replace_definition(cell.source, name, stub)
    _nbformat().write(nb, path)
    return (f"{name} in {path.name} is its stub again; your version is in {backup.relative_to(workspace)}. "
            f"If the notebook is open, reload it from disk (File > Reload Notebook from Disk).")
