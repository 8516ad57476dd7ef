"""The lab's workspace: exercise notebooks, the learner's package, never losing the learner's work.

- Each exercise notebook, generated afresh, runs top to bottom (kernel in the workspace) up to its
  first stub, which raises the clear NotImplementedError; no other error comes first.
- The generated notebooks: stubs keep signature, shape comment and docstring; a check cell after
  each exercise; progress at the top; imports of promoted modules point at my_tinyllm; the
  promotion cell promotes into my_tinyllm; outputs cleared; trace on day 5, the engine on day 7.
- Learner edits survive regeneration; a changed course notebook is written beside, or replaces
  the learner's after a backup; `reset` restores one stub and keeps the learner's version.
- Promotion writes only into the learner's package; stubs and unpromoted modules fall back to
  the course's with a notice; progress says not started / failing (diagnosis) / passing.
"""

import ast
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tinyllm_lab import promote
from tinyllm_lab.lab import syllabus
from tinyllm_lab.lab import workspace as ws
from tinyllm_lab.lab.__main__ import main as lab_main
from tinyllm_lab.lab.progress import progress

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
SOLUTIONS = {nb.name: nb for nb in NOTEBOOKS}


def make_course(tmp_path):  # -> the workspace folder, next to a link to weights/ (notebooks read ../weights)
    (tmp_path / "weights").symlink_to(REPO / "weights", target_is_directory=True)
    workspace = tmp_path / "workspace"
    ws.make_workspace(workspace)
    return workspace


def execute(path, workspace, timeout=600):  # -> (the executed notebook, the CellExecutionError or None)
    nb = nbformat.read(path, as_version=4)
    env_client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(workspace)}})
    try:
        env_client.execute()
    except CellExecutionError as error:
        return nb, error
    return nb, None


def solution_definition(day, name):  # the solution notebook's text of exercise `name`
    for path in NOTEBOOKS:
        if ws.notebook_day(path) == day:
            for cell in nbformat.read(path, as_version=4).cells:
                if cell.cell_type == "code" and cell.source.startswith("#| promote:"):
                    text = ws.definition_text(cell.source, name)
                    if text:
                        return text
    raise LookupError(name)


def fill(path, names, day, edit=lambda name, text: text):
    """Write the solution's definition of each of `names` into the workspace notebook, as a learner would."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            for name in names:
                if ws.definition_text(cell.source, name) and cell.source.startswith("#| promote:"):
                    cell.source = ws.replace_definition(cell.source, name, edit(name, solution_definition(day, name)))
    nbformat.write(nb, path)


def tree_hashes(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.py"))}


@pytest.fixture(scope="module")
def generated():  # {notebook name: exercise notebook}, generated once for the static tests
    return {path.name: ws.generate(path) for path in NOTEBOOKS}


# --- the exercise notebooks run to their first stub ----------------------------------------------

@pytest.mark.parametrize("notebook", [p.name for p in NOTEBOOKS])
def test_exercise_notebook_runs_to_its_first_stub(tmp_path, notebook):
    workspace = make_course(tmp_path)
    nb, error = execute(workspace / notebook, workspace)
    day = ws.notebook_day(notebook)
    names = [name for _, name in ws.notebook_exercises(SOLUTIONS[notebook])]
    if not names:  # a notebook without exercises runs through
        assert error is None, f"{notebook} has no exercises but stopped with {error}"
        return
    assert error is not None, f"{notebook} ran to the end with every exercise a stub"
    assert error.ename == "NotImplementedError", f"{notebook}: the first error is {error.ename}: {error.evalue}"
    match = re.match(r"([\w.]+) \(day (\d+)\) is not written yet", error.evalue)
    assert match, error.evalue
    assert match.group(1).split(".")[0] in names and int(match.group(2)) == day


# --- what an exercise notebook holds ---------------------------------------------------------------

@pytest.mark.parametrize("notebook", [p.name for p in NOTEBOOKS])
def test_stubs_keep_signature_and_docstring_and_have_a_check_after(generated, notebook):
    day = ws.notebook_day(notebook)
    cells = generated[notebook].cells
    for _, name in ws.notebook_exercises(SOLUTIONS[notebook]):
        index = next(i for i, c in enumerate(cells) if c.cell_type == "code" and c.source.startswith("#| promote:")
                     and ws.definition_text(c.source, name))
        stub = ast.parse(ws.definition_text(cells[index].source, name)).body[0]
        solution = ast.parse(solution_definition(day, name)).body[0]
        functions = [(stub, solution, name)] if not isinstance(stub, ast.ClassDef) else [
            (s, r, f"{name}.{s.name}") for s, r in zip(
                [n for n in stub.body if isinstance(n, ast.FunctionDef)],
                [n for n in solution.body if isinstance(n, ast.FunctionDef)])]
        assert functions, name
        for s, r, qualname in functions:
            assert ast.dump(s.args) == ast.dump(r.args) and s.name == r.name
            assert ast.get_docstring(s) == ast.get_docstring(r)
            assert ws.is_stub(s), f"{qualname} is not a stub"
            assert f"{qualname} (day {day}) is not written yet" in ast.unparse(s.body[-1])
        def_line = solution_definition(day, name).split("\n")[0]
        assert def_line in cells[index].source  # the shape comment on the def line stays
        following = [c.source for c in cells[index + 1:index + 6] if c.source.startswith("check(")]
        assert f"check({name})" in following


def test_generated_notebooks_point_at_the_learner_package(generated):
    modules = set(ws.promoted_modules())
    for name, nb in generated.items():
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.outputs == [] and c.execution_count is None for c in code)
        for cell in code:
            if cell.id == "lab-engine":  # compares the learner's engine with the course's on purpose
                continue
            for module in modules:
                assert f"tinyllm_lab.{module}" not in cell.source, (name, cell.id)
                assert not re.search(rf"from tinyllm_lab import .*\b{module}\b", cell.source), (name, cell.id)
        nbformat.validate(nb)
        assert len({c.id for c in nb.cells}) == len(nb.cells)
        if not promote.promoted_cells(SOLUTIONS[name]):
            continue
        promotion = [c.source for c in code if "promote_day" in c.source]
        assert promotion == [f"from tinyllm_lab.lab.workspace import promote_day\n\n# your cells marked "
                             f"`#| promote: ...`, as saved (Ctrl+S first) -> my_tinyllm/, never tinyllm_lab/\n"
                             f"print(promote_day({name!r}, namespace=globals()))"]
        if ws.notebook_exercises(SOLUTIONS[name]):
            assert nb.cells[2].source == "from tinyllm_lab.lab import check, progress\n\nprogress()"
    assert any(c.source.startswith("from tinyllm_lab.lab import trace") for c in generated["day5_model_session.ipynb"].cells)
    assert any(c.id == "lab-engine" for c in generated["day7_tokenizer_demo.ipynb"].cells)


def test_a_notebook_without_exercises_is_copied_with_imports_rewritten(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Day 8"),
                nbformat.v4.new_code_cell("from tinyllm_lab.weights import load_model\nimport tinyllm_lab.reference")]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="hi")]
    nbformat.write(nb, tmp_path / "day8_real_models.ipynb")
    out = ws.generate(tmp_path / "day8_real_models.ipynb", modules={"weights"})
    assert [c.source for c in out.cells] == ["# Day 8", "from my_tinyllm.weights import load_model\nimport tinyllm_lab.reference"]
    assert out.cells[1].outputs == []


def test_the_optional_day_8_is_the_course_notebook_with_its_imports_rewritten(generated):
    """Day 8 has no exercises: no stubs, no check or progress cells; every cell is the course's with the imports
    of promoted modules pointing at my_tinyllm (so its cells that need ../shared keep their skip path and their
    nbval markers), and its promotion cell promotes hf_tokenizer into my_tinyllm. (It runs through: see
    test_exercise_notebook_runs_to_its_first_stub.)"""
    name = "day8_real_models.ipynb"
    if name not in SOLUTIONS:
        pytest.skip("notebooks/day8_real_models.ipynb is not there")
    assert ws.notebook_day(name) not in syllabus.EXERCISES
    source, out = nbformat.read(SOLUTIONS[name], as_version=4).cells, generated[name].cells
    assert [(c.id, c.cell_type) for c in out] == [(c.id, c.cell_type) for c in source]
    modules = set(ws.promoted_modules())
    assert "hf_tokenizer" in modules and "hf_tokenizer" in promote.owners()
    changed = [c.id for c, o in zip(source, out)
               if o.source != (ws.rewrite_imports(c.source, modules) if c.cell_type == "code"
                               else ws.rewrite_prose(c.source, modules, 8))]
    promotion = [o for o in out if "promote_day(" in o.source]
    assert [o.id for o in promotion] == changed and len(changed) == 1
    assert not any(o.source.startswith(("check(", "from tinyllm_lab.lab import check")) for o in out)
    assert not any("NotImplementedError" in o.source for o in out if o.source.startswith("#| promote:"))
    assert any("from my_tinyllm.tokenizer import" in o.source for o in out)


def test_rewrite_imports():
    modules = {"ops", "ffn", "kv_cache"}
    assert ws.rewrite_imports("from tinyllm_lab.ops import softmax", modules) == "from my_tinyllm.ops import softmax"
    assert ws.rewrite_imports("import tinyllm_lab.ffn\ny = tinyllm_lab.ffn.swiglu(x)", modules) == \
        "import my_tinyllm.ffn\ny = my_tinyllm.ffn.swiglu(x)"
    assert ws.rewrite_imports("from tinyllm_lab import ffn  # day 4", modules) == "from my_tinyllm import ffn  # day 4"
    assert ws.rewrite_imports("from tinyllm_lab import ops as pkg, reference", modules) == \
        "from my_tinyllm import ops as pkg\nfrom tinyllm_lab import reference"
    unchanged = "import tinyllm_lab\nfrom tinyllm_lab.lab import check\nfrom tinyllm_lab.opsx import y"
    assert ws.rewrite_imports(unchanged, modules) == unchanged


def test_stub_of_a_decorated_multiline_def_without_docstring_and_of_a_class():
    source = ("@staticmethod\ndef f(a,  # [T]\n      b):  # -> [T]\n    # the trick\n    return a + b\n\n\n"
              "class C:\n    '''doc'''\n    x = 1\n\n    @property\n    def p(self):\n        return 2\n")
    f = ws.stub_definition(source, "f", 3)
    assert f == ("@staticmethod\ndef f(a,  # [T]\n      b):  # -> [T]\n    raise NotImplementedError("
                 "'f (day 3) is not written yet: write its body in the cell that defines it, run that cell, then the check cell below it')")
    c = ws.stub_definition(source, "C", 3)
    assert c.startswith("class C:\n    '''doc'''\n    x = 1\n\n    @property\n    def p(self):\n        raise NotImplementedError('C.p (day 3)")
    assert ws.stubbed_methods(ast.parse(c).body[0]) == ["p"]
    one_liner = ws.stub_definition("def g(x): return x  # [T] -> [T]", "g", 3)
    assert one_liner.split("\n")[0] == "def g(x):" and ws.is_stub(ast.parse(one_liner).body[0])


# --- never losing the learner's work ------------------------------------------------------------

def edit_cell(path, needle, new_source):
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if needle in c.source)
    cell.source = new_source
    nbformat.write(nb, path)


def test_learner_edits_survive_regeneration_and_a_changed_course_notebook_is_offered(tmp_path):
    course = tmp_path / "notebooks"
    course.mkdir()
    for path in NOTEBOOKS[:2]:
        shutil.copy(path, course / path.name)
    workspace = tmp_path / "workspace"
    first = ws.make_workspace(workspace, notebook_dir=course)
    day1, day2 = (workspace / p.name for p in NOTEBOOKS[:2])
    assert f"{day1.name}: created" in first
    mine = "#| promote: ops\ndef linear(x, weight):  # mine\n    return x @ weight.T"
    edit_cell(day1, "def linear(", mine)
    before = day1.read_bytes()

    again = ws.make_workspace(workspace, notebook_dir=course)  # `make lab` again, nothing changed upstream
    assert day1.read_bytes() == before and f"{day1.name}: kept, with your edits" in again
    assert f"{day2.name}: up to date" in again

    for path in (course / day1.name, course / day2.name):  # `git pull` changes both course notebooks
        edit_cell(path, "## Summary", "## Summary (revised)")
    pulled = ws.make_workspace(workspace, notebook_dir=course)
    assert day1.read_bytes() == before
    new = workspace / day1.name.replace(".ipynb", ".new.ipynb")
    assert any(line.startswith(f"{day1.name}: the course's notebook changed") and new.name in line for line in pulled)
    assert any(c.source == "## Summary (revised)" for c in nbformat.read(new, as_version=4).cells)
    assert f"{day2.name}: updated to the course's current version (you had not edited it)" in pulled
    assert any(c.source == "## Summary (revised)" for c in nbformat.read(day2, as_version=4).cells)
    assert ws.make_workspace(workspace, notebook_dir=course) == pulled[:1] + \
        [f"{day2.name}: up to date"]  # reported again until the learner chooses; nothing else happens

    replaced = ws.make_workspace(workspace, notebook_dir=course, replace=["day1"])
    backups = list(workspace.glob("day1_*.backup-*.ipynb"))
    assert len(backups) == 1 and backups[0].read_bytes() == before
    assert any(backups[0].name in line for line in replaced)
    assert any(c.source == "## Summary (revised)" for c in nbformat.read(day1, as_version=4).cells)
    assert not new.exists()
    with pytest.raises(ValueError, match="--replace day9: no such course notebook; there are: day1_math_primitives.ipynb"):
        ws.make_workspace(workspace, notebook_dir=course, replace=["day9"])


def test_a_notebook_not_made_by_the_workspace_is_never_overwritten(tmp_path):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / NOTEBOOKS[0].name).write_text("{}", encoding="utf-8")  # say, copied there by hand
    lines = ws.make_workspace(workspace)
    assert (workspace / NOTEBOOKS[0].name).read_text(encoding="utf-8") == "{}"
    assert lines[0].startswith(f"{NOTEBOOKS[0].name}: kept (it was not made by this workspace")


def test_reset_puts_the_stub_back_and_keeps_the_learners_version(tmp_path):
    workspace = make_course(tmp_path)
    day1 = workspace / "day1_math_primitives.ipynb"
    fill(day1, ["rms_norm", "silu"], 1, edit=lambda name, text: text + "  # my version")
    out = ws.reset("day1", "rms_norm", workspace)
    backup = next((workspace / "backups").glob("day1_rms_norm-*.py"))
    assert backup.name in out and "# my version" in backup.read_text(encoding="utf-8")
    fresh = ws.generate(SOLUTIONS[day1.name])
    for cell, new in zip(nbformat.read(day1, as_version=4).cells, fresh.cells):
        if ws.definition_text(new.source, "rms_norm"):
            assert cell.source == new.source  # the stub again, the rest of the cell as it was
        if ws.definition_text(new.source, "silu"):
            assert "# my version" in cell.source  # the other exercise keeps the learner's work
    assert "already its stub" in ws.reset(1, "rms_norm", workspace)
    with pytest.raises(ValueError, match="'rope_tables' is not an exercise of day 1; its exercises are: linear"):
        ws.reset("day1", "rope_tables", workspace)
    with pytest.raises(FileNotFoundError, match="no exercise notebook 'day9'"):
        ws.reset("day9", "x", workspace)


# --- the learner's package ---------------------------------------------------------------------

def run_in(workspace, code, check=True):  # a fresh Python in the workspace, as a notebook kernel would be
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", code], cwd=workspace, env=env, capture_output=True, text=True,
                          check=check, timeout=300)


def test_promotion_writes_only_the_learner_package_and_stubs_fall_back_with_a_notice(tmp_path):
    workspace = make_course(tmp_path)
    course_before = tree_hashes(REPO / "tinyllm_lab")
    day1, day4 = workspace / "day1_math_primitives.ipynb", workspace / "day4_kv_cache_ffn.ipynb"
    fill(day1, ["linear", "softmax"], 1)  # rms_norm and silu still stubs
    out = ws.promote_day("day1", workspace)
    assert out == "my_tinyllm/ops.py <- day1_math_primitives.ipynb (yours: linear, softmax; still the course's: rms_norm, silu)"
    fill(day4, ["cached_self_attention", "swiglu"], 4)  # KVCache still a stub
    ws.promote_day(4, workspace)
    assert tree_hashes(REPO / "tinyllm_lab") == course_before
    assert sorted(p.name for p in (workspace / "my_tinyllm").glob("*.py")) == sorted(
        ["__init__.py"] + [f"{m}.py" for m in ws.promoted_modules()])
    ops = (workspace / "my_tinyllm" / "ops.py").read_text(encoding="utf-8")
    assert ops.startswith("# Promoted from workspace/day1_math_primitives.ipynb: your code")

    result = run_in(workspace, "import my_tinyllm.ops as o, my_tinyllm.rope as r, my_tinyllm.kv_cache as k\n"
                               "import tinyllm_lab.ops, tinyllm_lab.rope, tinyllm_lab.kv_cache\n"
                               "print(o.linear.__module__, o.rms_norm is tinyllm_lab.ops.rms_norm, "
                               "r.apply_rope is tinyllm_lab.rope.apply_rope, k.KVCache is tinyllm_lab.kv_cache.KVCache, "
                               "k.cached_self_attention.__module__)")
    assert result.stdout.split() == ["my_tinyllm.ops", "True", "True", "True", "my_tinyllm.kv_cache"]
    notices = result.stderr.splitlines()
    assert "[my_tinyllm] ops.rms_norm is not written yet: using the course's tinyllm_lab.ops.rms_norm" in notices
    assert "[my_tinyllm] ops.silu is not written yet: using the course's tinyllm_lab.ops.silu" in notices
    assert ("[my_tinyllm] rope: not promoted yet (promote day2_rope.ipynb): using the course's tinyllm_lab.rope whole"
            in notices)
    assert any(line.startswith("[my_tinyllm] kv_cache.KVCache still has stub methods (__init__, ") for line in notices)


def kernel_namespace(tmp_path, source):  # the globals of code run from a file, as a kernel's cells are
    path = tmp_path / "cell.py"
    path.write_text("import numpy as np\n\n" + source + "\n", encoding="utf-8")
    spec = importlib.util.spec_from_file_location("cell", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return vars(module)


def test_promotion_refuses_code_that_is_not_what_the_kernel_ran(tmp_path):
    workspace = make_course(tmp_path)
    day1 = workspace / "day1_math_primitives.ipynb"
    fill(day1, ["linear"], 1)
    edited = solution_definition(1, "linear").replace("return x @ weight.T", "return np.matmul(x, weight.T)")
    with pytest.raises(ValueError, match=r"nothing promoted: linear in the saved day1_math_primitives.ipynb is not "
                                         r"what this kernel ran. Save the notebook \(Ctrl\+S\)"):
        ws.promote_day("day1", workspace, namespace=kernel_namespace(tmp_path, edited))
    assert (workspace / "my_tinyllm" / "ops.py").read_text(encoding="utf-8").startswith("# my_tinyllm.ops: not promoted yet")
    same = solution_definition(1, "linear").replace("  # torch: F.linear(x, W)", "")  # a comment less: same code
    assert ws.promote_day("day1", workspace, namespace=kernel_namespace(tmp_path, same)).startswith("my_tinyllm/ops.py <- ")


def test_the_learner_package_is_never_written_inside_the_course_package(tmp_path):
    with pytest.raises(ValueError, match="inside the course's package"):
        ws.ensure_package(REPO / "tinyllm_lab", {"ops": "day1_math_primitives.ipynb"})
    assert not (REPO / "tinyllm_lab" / "my_tinyllm").exists()


def test_progress_not_started_failing_with_diagnosis_passing(tmp_path):
    workspace = make_course(tmp_path)
    naive = ("def softmax(x, axis=-1):  # [..., N] -> [..., N]\n"
             "    e = np.exp(x)\n    return e / np.sum(e, axis=axis, keepdims=True)")
    fill(workspace / "day1_math_primitives.ipynb", ["linear", "softmax"], 1,
         edit=lambda name, text: naive if name == "softmax" else text)
    ws.promote_day("day1", workspace)
    (workspace / "my_tinyllm" / "ffn.py").write_text("def swiglu(x:\n", encoding="utf-8")  # hand-edited, broken
    rows = {row.name: row for row in progress(workspace).rows}
    assert len(rows) == len(syllabus.exercises())
    assert rows["linear"].status == "passing"
    assert rows["softmax"].status == "failing" and "max" in rows["softmax"].detail
    assert (rows["rms_norm"].status, rows["rms_norm"].detail) == ("not started", "still a stub (the course's stands in)")
    assert (rows["apply_rope"].status, rows["apply_rope"].detail) == ("not started", "day 2 not promoted yet")
    assert rows["swiglu"].status == "failing"
    assert rows["swiglu"].detail.startswith("my_tinyllm/ffn.py does not import: SyntaxError: ")
    assert "my_tinyllm" not in sys.modules  # the test process imported nothing for good


def test_command_line(tmp_path, capsys):
    workspace = tmp_path / "workspace"
    assert lab_main(["--workspace", str(workspace), "workspace"]) == 0
    assert "day1_math_primitives.ipynb: created" in capsys.readouterr().out
    assert lab_main(["--workspace", str(workspace), "progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"my_tinyllm: 0 of {len(syllabus.exercises())} exercises passing\nday 1  ops.linear")
    assert lab_main(["--workspace", str(workspace), "promote", "day1"]) == 0
    assert capsys.readouterr().out.startswith("my_tinyllm/ops.py <- day1_math_primitives.ipynb (yours: no exercise;")
    assert lab_main(["--workspace", str(workspace), "reset", "day3", "softmax"]) == 2
    assert "error: 'softmax' is not an exercise of day 3" in capsys.readouterr().err


def test_make_lab_makes_the_workspace_and_starts_jupyter_as_root_too():
    out = subprocess.run(["make", "--no-print-directory", "-n", "lab"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "-m tinyllm_lab.lab workspace" in out
    jupyter = next(line for line in out.splitlines() if "jupyter lab" in line)
    assert jupyter.endswith("workspace/")
    assert ("--allow-root" in jupyter) == (os.geteuid() == 0)
    solutions = subprocess.run(["make", "--no-print-directory", "-n", "solutions"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert solutions.splitlines()[-1].endswith("notebooks/")


def test_day7_engine_cell_says_which_parts_are_still_the_courses(tmp_path):
    workspace = make_course(tmp_path)  # nothing promoted: every module of my_tinyllm stands in
    out = run_in(workspace, ws.ENGINE_SOURCE).stdout.splitlines()
    assert out[-2] == "Your engine (my_tinyllm) writes exactly the text the course's engine writes, with the same seed and settings."
    assert out[-1] == ("Still the course's in your package (not written yet): my_tinyllm.session.*, "
                       "my_tinyllm.tokenizer.*, my_tinyllm.weights.*")


def test_an_exercise_missing_from_its_notebook_is_an_error_naming_it(tmp_path):
    nb = nbformat.read(SOLUTIONS["day1_math_primitives.ipynb"], as_version=4)
    nb.cells = [c for c in nb.cells if not ws.definition_text(c.source, "silu")]
    nbformat.write(nb, tmp_path / "day1_math_primitives.ipynb")
    with pytest.raises(ValueError, match=r"day1_math_primitives.ipynb: the syllabus lists silu for day 1, but no "
                                         r"`#\| promote: MODULE` cell of the notebook defines it"):
        ws.generate(tmp_path / "day1_math_primitives.ipynb")


def test_every_exercise_is_in_exactly_one_notebook_of_its_day_and_day_6_has_two():
    """A day may have several notebooks (day 6: the safetensors reader, then the loader): each holds the
    exercises of the modules it promotes, so every exercise of the syllabus is in exactly one of them."""
    held = [(ws.notebook_day(path), module, name) for path in NOTEBOOKS for module, name in ws.notebook_exercises(path)]
    assert sorted(held) == sorted(syllabus.exercises())
    assert {p.name: [n for _, n in ws.notebook_exercises(p)] for p in NOTEBOOKS if ws.notebook_day(p) == 6} == {
        "day6_safetensors.ipynb": ["read_header", "load_file"], "day6_weights.ipynb": ["weights_from_tensors"]}


def test_a_day_of_two_notebooks_promotes_both_and_resets_in_the_one_holding_the_exercise(tmp_path):
    workspace = make_course(tmp_path)
    with pytest.raises(ValueError, match="'day6' names 2 notebooks: day6_safetensors.ipynb, day6_weights.ipynb"):
        ws.find_notebook(workspace, "day6")
    out = ws.promote_day("day6", workspace)
    assert "my_tinyllm/safetensors.py <- day6_safetensors.ipynb" in out and "my_tinyllm/weights.py <- day6_weights.ipynb" in out
    fill(workspace / "day6_weights.ipynb", ["weights_from_tensors"], 6)
    assert "is its stub again" in ws.reset(6, "weights_from_tensors", workspace)
    assert "already its stub" in ws.reset("day6", "load_file", workspace)
