"""What a fresh learner hit in the lab (learner report, 02:05 UTC), each fed to the lab as it happened.

- A reset exercise's backup pasted back is promoted; a cell that lost its `#| promote:` line makes
  promotion name the exercise and fall back visibly (never silently dropped from the package).
- `workspace --replace` carries the learner's written exercises into the course's new version.
- trace before day 5 is promoted says "not started" (nothing of the learner's ran), not "passing".
- A block that adds the normed copy as the residual is named by check(block), check(Model) and trace.
- Day 1's checks hold the behaviour the notebook teaches; a missing `return`, a softmax over the
  whole array are diagnosed.
- The exercise notebooks describe promotion into my_tinyllm, import `check` up front; the course's
  promotion refuses to run in a workspace; the lab's command line never shows a traceback.
"""

import importlib.util
import subprocess
import sys
import uuid
from pathlib import Path

import nbformat
import numpy as np
import pytest

import tinyllm_lab
from tinyllm_lab import promote
from tinyllm_lab.lab import check, trace
from tinyllm_lab.lab import workspace as ws
from tinyllm_lab.lab.check import find_exercise

from test_lab_workspace import fill, make_course, run_in, solution_definition

REPO = Path(__file__).resolve().parents[1]
DAY1 = "day1_math_primitives.ipynb"


def cell_defining(nb, name):
    return next(c for c in nb.cells if c.cell_type == "code" and ws.definition_text(c.source, name))


# --- 1. a reset backup pasted back; a cell without its marker line -----------------------------

@pytest.mark.parametrize("paste", ["over the stub", "over the whole cell"])
def test_a_reset_backup_pasted_back_is_promoted(tmp_path, paste):
    workspace = make_course(tmp_path)
    day1 = workspace / DAY1
    fill(day1, ["linear", "softmax", "rms_norm", "silu"], 1)
    ws.reset("day1", "rms_norm", workspace)
    backup = next((workspace / "backups").glob("day1_rms_norm-*.py")).read_text(encoding="utf-8")
    assert backup.startswith("#| promote: ops\n") and "paste this" in backup
    nb = nbformat.read(day1, as_version=4)
    cell = cell_defining(nb, "rms_norm")
    if paste == "over the stub":
        cell.source = ws.replace_definition(cell.source, "rms_norm", backup.rstrip("\n"))
    else:
        cell.source = backup
    nbformat.write(nb, day1)
    out = ws.promote_day("day1", workspace)
    assert "yours: linear, softmax, rms_norm, silu" in out and "still the course's" not in out, out
    ran = run_in(workspace, "import my_tinyllm.ops as m, my_tinyllm.model; print(m.rms_norm.__module__)", check=False)
    assert ran.returncode == 0 and ran.stdout.strip() == "my_tinyllm.ops", ran.stderr


def test_a_cell_whose_marker_line_was_removed_is_named_and_stood_in_for(tmp_path):
    workspace = make_course(tmp_path)
    day1 = workspace / DAY1
    fill(day1, ["linear", "softmax", "rms_norm", "silu"], 1)
    nb = nbformat.read(day1, as_version=4)
    cell = cell_defining(nb, "rms_norm")
    cell.source = cell.source.split("\n", 1)[1]  # the `#| promote: ops` line deleted
    nbformat.write(nb, day1)
    out = ws.promote_day("day1", workspace)
    assert "yours: linear, softmax, silu" in out
    assert "rms_norm: no `#| promote: ops` cell defines it" in out and "the course's stands in" in out, out
    ran = run_in(workspace, "from my_tinyllm.ops import rms_norm; import my_tinyllm.model; print(rms_norm.__module__)",
                 check=False)
    assert ran.returncode == 0 and ran.stdout.strip() == "tinyllm_lab.ops", ran.stderr
    assert "[my_tinyllm] ops.rms_norm was not found in your `#| promote: ops` cells" in ran.stderr
    from tinyllm_lab.lab.progress import progress
    row = next(r for r in progress(workspace).rows if r.name == "rms_norm")
    assert row.status == "not started" and "was not found in your `#| promote: ops` cells" in row.detail


def test_given_code_whose_marker_line_was_removed_is_named_and_stood_in_for(tmp_path):
    workspace = make_course(tmp_path)
    day1 = workspace / DAY1
    fill(day1, ["linear", "softmax", "rms_norm", "silu"], 1)
    nb = nbformat.read(day1, as_version=4)
    cell = cell_defining(nb, "as_float32")  # given code, not an exercise; the learner's linear calls it
    cell.source = cell.source.split("\n", 1)[1]
    nbformat.write(nb, day1)
    out = ws.promote_day("day1", workspace)
    assert "yours: linear, softmax, rms_norm, silu" in out and "as_float32: no `#| promote: ops` cell defines it" in out
    ran = run_in(workspace, "from my_tinyllm.ops import linear\nimport numpy as np\n"
                            "print(linear(np.ones((2, 3), np.float16), np.ones((4, 3))).dtype)", check=False)
    assert ran.returncode == 0 and ran.stdout.strip() == "float32", ran.stderr


def test_a_module_whose_every_marker_line_was_removed_stands_in_whole(tmp_path):
    workspace = make_course(tmp_path)
    day2 = next(workspace.glob("day2_*.ipynb"))
    nb = nbformat.read(day2, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith("#| promote: rope"):
            cell.source = cell.source.split("\n", 1)[1]
    nbformat.write(nb, day2)
    out = ws.promote_day("day2", workspace)
    assert "my_tinyllm/rope.py: no cell of" in out and "starts with `#| promote: rope`" in out, out
    assert "rope_frequencies, rope_tables, apply_rope" in out
    assert (workspace / "my_tinyllm" / "rope.py").read_text(encoding="utf-8").startswith("# my_tinyllm.rope: not promoted yet")


# --- 2. --replace carries the learner's answers over ------------------------------------------

def test_replace_carries_the_learners_exercises_into_the_new_version(tmp_path):
    workspace = make_course(tmp_path)
    day1 = workspace / DAY1
    fill(day1, ["linear", "softmax"], 1)
    lines = ws.make_workspace(workspace, replace=["day1"])
    line = next(line for line in lines if line.startswith(DAY1))
    assert "your linear, softmax carried over into it" in line and ".backup-" in line, line
    nb = nbformat.read(day1, as_version=4)
    assert ws.definition_text(cell_defining(nb, "linear").source, "linear") == solution_definition(1, "linear")
    assert "NotImplementedError" in ws.definition_text(cell_defining(nb, "rms_norm").source, "rms_norm")
    # what was carried over is the learner's: a later regeneration keeps it as an edit
    assert any(line == f"{DAY1}: kept, with your edits" for line in ws.make_workspace(workspace))


# --- 3. trace before day 5 is promoted -----------------------------------------------------------

def test_trace_before_day5_is_promoted_says_nothing_of_the_learners_ran(tmp_path):
    workspace = make_course(tmp_path)
    fill(workspace / DAY1, ["linear", "softmax", "rms_norm", "silu"], 1)
    ws.promote_day("day1", workspace)
    ran = run_in(workspace, "from tinyllm_lab.lab import trace\nr = trace('my_tinyllm')\nprint(r.status, r.passed)\n"
                            "print(r.report)", check=False)
    assert ran.returncode == 0, ran.stderr
    status, report = ran.stdout.split("\n", 1)
    assert status == "not started False"
    assert "my_tinyllm/model.py is still the course's" in report and "none of your model code" in report
    assert "your modules so far: my_tinyllm/ops.py (the others are still the course's)" in report
    assert "passing" not in report


# --- 4. the normed copy used as the residual -----------------------------------------------------

def learner_block(x, layer, config, cos, sin, cache, i, maps=None):  # a learner's block: h = norm(x) + attn(...)
    from tinyllm_lab.ffn import swiglu
    from tinyllm_lab.kv_cache import cached_self_attention
    from tinyllm_lab.ops import rms_norm
    xn = rms_norm(x, layer.attention_norm, config.norm_eps)
    h = xn + cached_self_attention(xn, layer.wq, layer.wk, layer.wv, layer.wo, cos, sin, config.n_heads,
                                   config.n_kv_heads, cache, i, maps)
    hn = rms_norm(h, layer.ffn_norm, config.norm_eps)
    return h + swiglu(hn, layer.w1, layer.w3, layer.w2)


def test_check_names_the_norm_used_as_the_residual():
    result = check(learner_block, name="block")
    assert result.status == "failing" and result.mistake == "block.norm_as_residual", result.report
    assert "the normed copy is used as the residual" in result.report


@pytest.fixture
def buggy_package(tmp_path):  # a learner's package, the course's code with `h = rms_norm(x) + a` in block
    name = f"learner_{uuid.uuid4().hex[:8]}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("")
    modules = set(ws.promoted_modules())
    source = Path(tinyllm_lab.__file__).parent
    for module in modules:
        text = ws.rewrite_imports((source / f"{module}.py").read_text(encoding="utf-8"), modules).replace("my_tinyllm", name)
        if module == "model":
            assert "    h = x + a\n" in text
            text = text.replace("    h = x + a\n", "    h = rms_norm(x, layer.attention_norm, config.norm_eps) + a\n")
        (tmp_path / name / f"{module}.py").write_text(text, encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        import importlib
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


def test_check_model_and_trace_name_the_learners_failing_block(buggy_package):
    import importlib
    model = importlib.import_module(f"{buggy_package.__name__}.model")
    result = check(model.Model)
    assert result.status == "failing" and result.parts_failing == ["block"], result.report
    assert "your own functions it uses fail their checks (the likely cause; fix them first): block" in result.report
    assert find_exercise("block").mistakes[-1].diagnosis in result.report
    traced = trace(buggy_package)
    assert not traced.passed and traced.layer == 0 and traced.step == "prefill", traced.report
    assert traced.diagnosis is not None and "the normed copy is used as the residual" in traced.diagnosis, traced.report


# --- 5, 6. the documented behaviour; a missing return; a softmax over the whole array -------------

def test_a_learner_softmax_without_the_masked_row_error_fails_and_says_why():
    def softmax(x, axis=-1):
        x = np.asarray(x, dtype=np.float32)
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)
    result = check(softmax)
    assert result.case == "a row entirely -inf" and result.mistake == "softmax.no_distribution_check", result.report
    assert "expected that it raises ValueError, got [2, 4] float32" in result.report


def test_a_learner_linear_without_the_dtype_rule_or_the_shape_check_fails_and_says_why():
    def linear(x, weight):
        return x @ weight.T
    result = check(linear)
    assert result.case == "float16 and float64 input" and result.mistake == "linear.no_dtype_rule", result.report
    assert "expected dtype float32, got dtype float16" in result.report


def test_a_missing_return_is_diagnosed():
    def rms_norm(x, weight, eps=1e-5):
        x = np.asarray(x, dtype=np.float32)
        y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float32(eps)) * weight  # noqa: F841
    result = check(rms_norm)
    assert "got NoneType" in result.report
    assert result.diagnosis.startswith("your function returned None: is a `return` missing?"), result.report


def test_a_softmax_over_the_whole_array_is_diagnosed():
    def softmax(x, axis=-1):
        return np.exp(x - x.max()) / np.exp(x - x.max()).sum()
    assert check(softmax).mistake == "softmax.whole_array"


def test_the_notebooks_solution_still_passes():
    namespace = {"np": np}
    for name in ("as_float32", "linear", "softmax", "rms_norm", "silu"):
        exec(solution_definition(1, name), namespace)
    for name in ("linear", "softmax", "rms_norm", "silu"):
        assert check(namespace[name]).passed, check(namespace[name]).report


# --- 7, 8. the exercise notebooks' prose and imports; the course's promotion in a workspace -------

def test_exercise_notebooks_describe_the_learners_promotion_and_import_check_first():
    modules = set(ws.promoted_modules())
    for path in sorted((REPO / "notebooks").glob("day[1-7]_*.ipynb")):
        nb, day = ws.generate(path, modules), ws.notebook_day(path)
        prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        assert "python -m tinyllm_lab.promote" not in prose, path.name
        assert not any(f"tinyllm_lab/{m}.py" in prose for m in modules), path.name
        assert "The check below compares" not in prose and "--check` verifies" not in prose, path.name
        original = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
        if "python -m tinyllm_lab.promote" in original:
            assert f"python -m tinyllm_lab.lab promote day{day}" in prose, path.name
        first_code = next(c for c in nb.cells if c.cell_type == "code" and c.id != "lab-progress")  # the imports cell
        assert first_code.source.startswith(ws.CHECK_IMPORT), path.name  # the progress cell may be skipped
    day1 = ws.generate(REPO / "notebooks" / DAY1, modules)
    assert "my_tinyllm/ops.py" in "\n".join(c.source for c in day1.cells if c.cell_type == "markdown")


def test_the_courses_promotion_refuses_to_run_in_a_workspace(tmp_path, monkeypatch, capsys):
    workspace = make_course(tmp_path)
    monkeypatch.chdir(workspace)
    before = {p.name: p.read_bytes() for p in Path(tinyllm_lab.__file__).parent.glob("*.py")}
    assert promote.main([DAY1]) == 2
    err = capsys.readouterr().err
    assert "this is the lab's workspace" in err and "python -m tinyllm_lab.lab promote dayN" in err
    assert before == {p.name: p.read_bytes() for p in Path(tinyllm_lab.__file__).parent.glob("*.py")}


def test_an_unsaved_cell_is_refused_in_one_line_without_a_traceback(tmp_path):
    workspace = make_course(tmp_path)
    fill(workspace / DAY1, ["linear"], 1)
    edited = solution_definition(1, "linear").replace("return x @ weight.T", "return np.matmul(x, weight.T)")
    namespace = {"np": np}
    cell = tmp_path / "cell.py"
    cell.write_text(edited + "\n", encoding="utf-8")
    exec(compile(cell.read_text(), str(cell), "exec"), namespace)
    with pytest.raises(ValueError) as caught:
        ws.promote_day("day1", workspace, namespace=namespace)
    shown = caught.value._render_traceback_()  # what IPython shows instead of a traceback
    assert len(shown) == 1 and shown[0].startswith("NotSaved: nothing promoted: linear in the saved"), shown


# --- 9. the lab's command line never shows a traceback ------------------------------------------

def test_the_lab_command_line_into_a_closed_pipe_or_a_full_disk(tmp_path):
    workspace = make_course(tmp_path)
    command = [sys.executable, "-m", "tinyllm_lab.lab", "--workspace", str(workspace)]
    for args in (["progress"], ["workspace"]):
        piped = subprocess.run(" ".join(command + args) + " | head -1", shell=True, capture_output=True, text=True,
                               timeout=300, executable="/bin/bash")
        assert piped.returncode == 0 and "Traceback" not in piped.stderr, piped.stderr
        assert piped.stdout.count("\n") == 1
    if Path("/dev/full").exists():
        with open("/dev/full", "w") as full:
            done = subprocess.run(command + ["progress"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.strip() == "python -m tinyllm_lab.lab: error: cannot write the output: No space left on device"


def test_a_promoted_name_rebound_by_an_import_is_not_taken_for_an_unsaved_edit(tmp_path):
    # Found by a second fresh learner: day 5's session cell runs `from my_tinyllm.sampling import ...
    # sample`, which rebinds the learner's inline `sample` to the last promoted version. That object
    # was imported, not run from a cell, so it says nothing about unsaved edits and must not block
    # promotion; a function the kernel did run from a cell is still compared (the test above).
    workspace = make_course(tmp_path)
    fill(workspace / DAY1, ["linear"], 1)
    edited = solution_definition(1, "linear").replace("return x @ weight.T", "return np.matmul(x, weight.T)")
    module = tmp_path / "elsewhere.py"  # stands for my_tinyllm.ops: a different version of linear
    module.write_text("import numpy as np\n\n" + edited + "\n", encoding="utf-8")
    spec = importlib.util.spec_from_file_location("elsewhere", module)
    elsewhere = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(elsewhere)
    namespace = {"__name__": "__main__", "np": np, "linear": elsewhere.linear}
    assert "my_tinyllm/ops.py <- day1_math_primitives.ipynb" in ws.promote_day("day1", workspace, namespace=namespace)


def test_a_notebook_is_named_with_or_without_its_extension(tmp_path):
    # Found by a second fresh learner: `promote day6_weights` was refused with a list that held day6_weights.ipynb.
    workspace = make_course(tmp_path)
    assert ws.find_notebooks(workspace, DAY1.removesuffix(".ipynb")) == [workspace / DAY1]
    assert ws.find_notebooks(workspace, DAY1) == [workspace / DAY1]
    with pytest.raises(FileNotFoundError, match="no exercise notebook 'day1_nothing'"):
        ws.find_notebooks(workspace, "day1_nothing")


# --- a later fresh learner (README only): day 5's session cell replaced the `sample` just written ---

def test_the_session_cell_imports_sample_into_the_package_not_into_the_notebook(monkeypatch):
    # the learner's report: running day 5's session cell put the promoted (or the course's) sample in place
    # of the one written above it, so a wrong sample went unnoticed in the session demo
    session_cell = next(c.source for c in ws.generate(REPO / "notebooks" / "day5_model_session.ipynb").cells
                        if c.source.startswith("#| promote: session") and "import" in c.source)
    assert "from my_tinyllm.sampling import check_rng, check_sampling\n" in session_cell
    assert 'if __name__ != "__main__":' in session_cell and "    from my_tinyllm.sampling import sample" in session_cell
    fake = type(sys)("my_tinyllm.sampling")
    fake.check_rng, fake.check_sampling, fake.sample = "course check_rng", "course check_sampling", "promoted sample"
    monkeypatch.setitem(sys.modules, "my_tinyllm", type(sys)("my_tinyllm"))
    monkeypatch.setitem(sys.modules, "my_tinyllm.sampling", fake)
    imports = "\n".join(line for line in session_cell.splitlines() if "import" in line or line.startswith("if "))
    in_notebook = {"__name__": "__main__", "sample": "the learner's sample"}
    exec(imports, in_notebook)
    assert in_notebook["sample"] == "the learner's sample" and in_notebook["check_rng"] == "course check_rng"
    in_package = {"__name__": "my_tinyllm.session"}
    exec(imports, in_package)
    assert in_package["sample"] == "promoted sample"
