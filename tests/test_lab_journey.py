"""The whole journey of a learner through the lab, day 1 to day 7, in a fresh workspace.

Each day, as a learner finishing it would: fill every stub of the exercise notebook with the
solution's body, then run the notebook top to bottom (days 1-7 in order, then the optional day 8,
which has no exercises and promotes its own module) (kernel in the workspace; its last cells
promote the day into the learner's package `my_tinyllm`). Day 7 ends with the learner's engine
writing from the trained model: the text must be the command line's (the course's engine) for
the same prompt, seed and settings. Then every exercise's check passes on the learner's package.

A second learner makes one mistake (RoPE positions not offset by the cache in decode) in
otherwise correct code and runs days 4 and 5: day 4's check names the mistake, and day 5's `trace` cell
(and `trace` called directly) names the first wrong tensor and the step.

The journey's time is printed (a measurement, not a timed assertion).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinyllm_lab.lab import syllabus
from tinyllm_lab.lab import workspace as ws
from tinyllm_lab.lab.progress import progress
from test_lab_workspace import REPO, execute, fill, make_course, run_in

PROMPT, SEED, MAX_NEW_TOKENS = "To be, or not to be", 1, 60  # what day 7's last cell writes with


def course_text():  # the course's engine, through its command line (which the learner's package never touches)
    result = subprocess.run([sys.executable, "-m", "tinyllm_lab", PROMPT, "--seed", str(SEED),
                             "--max-new-tokens", str(MAX_NEW_TOKENS)], capture_output=True, text=True, check=True,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])))
    return result.stdout.removesuffix("\n")


def stream_text(cell):
    return "".join(output.get("text", "") for output in cell.outputs if output.output_type == "stream"
                   and output.name == "stdout")


def test_journey_from_empty_functions_to_the_learners_own_engine(tmp_path):  # its time: pytest --durations
    workspace = make_course(tmp_path)
    executed = {}
    paths = sorted(workspace.glob("day*_*.ipynb"), key=lambda p: (ws.notebook_day(p), p.name))  # days 1-7, then day 8
    assert list(dict.fromkeys(ws.notebook_day(p) for p in paths))[:7] == list(range(1, 8))  # day 6 has two notebooks
    for path in paths:
        day = ws.notebook_day(path)
        fill(path, [name for _, name in syllabus.EXERCISES.get(day, [])], day)
        nb, error = execute(path, workspace)
        assert error is None, f"{path.name}, filled with the solutions, stopped: {error.ename}: {error.evalue}"
        promotion = next(c for c in nb.cells if "promote_day(" in c.source)
        assert "still the course's" not in stream_text(promotion), stream_text(promotion)
        executed[day] = nb

    engine = next(c for c in executed[7].cells if c.get("id") == "lab-engine")
    written = stream_text(engine)
    expected = course_text()
    assert expected.startswith(PROMPT) and len(expected) > len(PROMPT) + 40
    assert written == f"{expected}\n\nYour engine (my_tinyllm) writes exactly the text the course's engine writes, " \
                      f"with the same seed and settings.\n"

    rows = progress(workspace).rows
    assert [(r.name, r.status) for r in rows if r.status != "passing"] == []
    assert len(rows) == len(syllabus.exercises())


RIGHT = "positions = np.arange(start, start + T)"
WRONG = "positions = np.arange(T)"  # the mistake: positions restart at 0 at every decode step


def test_trace_names_the_first_wrong_tensor_of_a_journey_with_one_mistake(tmp_path):
    """Days 1-3 right and promoted; day 4 with the mistake and day 5 right, both run as notebooks."""
    if not (REPO / "tinyllm_lab" / "lab" / "trace.py").exists():
        pytest.skip("tinyllm_lab/lab/trace.py is not there yet")
    workspace = make_course(tmp_path)

    def mistake(name, text):
        if name == "cached_self_attention":
            assert RIGHT in text, "the solution's cached_self_attention changed: update this test's mistake"
            return text.replace(RIGHT, WRONG)
        return text
    for day in range(1, 6):
        fill(ws.find_notebook(workspace, day), [name for _, name in syllabus.EXERCISES[day]], day, edit=mistake)
        if day <= 3:
            ws.promote_day(day, workspace)
    day4, error = execute(ws.find_notebook(workspace, 4), workspace)
    assert error is None, f"{error.ename}: {error.evalue}"
    checked = next(c for c in day4.cells if c.source == "check(cached_self_attention)")
    assert "diagnosis: positions restart at 0" in checked.outputs[0]["data"]["text/plain"]
    day5, error = execute(ws.find_notebook(workspace, 5), workspace)
    assert error is None, f"{error.ename}: {error.evalue}"
    traced = next(c for c in day5.cells if c.get("id") == "lab-trace").outputs[0]["data"]["text/plain"]
    assert "q after RoPE" in traced and "decode step 1" in traced and "positions restart at 0" in traced, traced

    out = run_in(workspace, "from tinyllm_lab.lab import trace\nr = trace('my_tinyllm')\n"
                            "print(r.passed, r.name, r.layer, r.step, sep='|')\nprint(r.report)").stdout
    passed, name, layer, step = out.splitlines()[0].split("|")
    assert (passed, name, layer, step) == ("False", "q after RoPE", "0", "decode step 1"), out
    assert "positions restart at 0" in out, out
