"""`progress()`: every exercise of the seven days, for the learner's promoted package `my_tinyllm`.

Each exercise is "not started" (its module is not promoted yet, or the promoted function is still
a stub, so the course's stands in for it), "failing" (with the one-line diagnosis of `check`) or
"passing". Used by the top cell of every exercise notebook and by `python -m tinyllm_lab.lab progress`.
"""

import contextlib
import importlib
import io
import sys
from dataclasses import dataclass, field

from tinyllm_lab.lab import syllabus, workspace as ws
from tinyllm_lab.lab.check import check  # every syllabus exercise has one (a test keeps them in step)


@dataclass
class Row:
    """One exercise: `status` is "not started", "failing" or "passing"; `detail` says why, in one line."""
    day: int
    module: str
    name: str
    status: str
    detail: str = ""


@dataclass
class Progress:
    """Every exercise's row, in course order. Its repr is the table; `.passing` counts the passing ones."""
    rows: list = field(default_factory=list)
    package: str = ""

    @property
    def passing(self):
        return sum(row.status == "passing" for row in self.rows)

    @property
    def report(self):
        width = max((len(f"{r.module}.{r.name}") for r in self.rows), default=0)
        lines = [f"{self.package}: {self.passing} of {len(self.rows)} exercises passing"]
        for r in self.rows:
            detail = f": {r.detail}" if r.detail else ""
            lines.append(f"day {r.day}  {f'{r.module}.{r.name}':<{width}}  {r.status}{detail}")
        return "\n".join(lines)

    def __repr__(self):
        return self.report

    def _repr_pretty_(self, p, cycle):  # IPython shows the table, not a dataclass repr
        p.text(self.report)


def _one_line(text, limit=160):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


@contextlib.contextmanager
def _fresh_package(workspace):
    """Import the learner's package afresh from `workspace` (as saved on disk), quietly, and leave
    this Python's own imports of it (a notebook kernel's) as they were."""
    saved = {k: v for k, v in sys.modules.items() if k == ws.PACKAGE or k.startswith(ws.PACKAGE + ".")}
    for k in saved:
        del sys.modules[k]
    sys.path.insert(0, str(workspace))
    try:
        yield
    finally:
        sys.path.remove(str(workspace))
        for k in [k for k in sys.modules if k == ws.PACKAGE or k.startswith(ws.PACKAGE + ".")]:
            del sys.modules[k]
        sys.modules.update(saved)


def progress(workspace=None):  # -> Progress
    """Every exercise of the seven days: not started / failing (with the diagnosis) / passing.

    Reads the learner's package `my_tinyllm` in `workspace` (default: the current folder when it
    is a workspace, else the repository's workspace/) as promoted so far, and runs `check` on
    each exercise it holds. Raises FileNotFoundError when there is no workspace yet.
    """
    workspace = ws.workspace_dir(workspace)
    if not (workspace / ws.PACKAGE).is_dir():
        raise FileNotFoundError(f"no learner package in {workspace}: run `python -m tinyllm_lab.lab workspace` first")
    rows = []
    with _fresh_package(workspace), contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        modules = {}
        for day, module, name in syllabus.exercises():
            if module not in modules:
                try:
                    modules[module] = importlib.import_module(f"{ws.PACKAGE}.{module}")
                except Exception as error:  # the learner's module may not even import: say so on its rows
                    modules[module] = error
            mod = modules[module]
            if isinstance(mod, Exception):
                rows.append(Row(day, module, name, "failing",
                                _one_line(f"{ws.PACKAGE}/{module}.py does not import: {type(mod).__name__}: {mod}")))
                continue
            stand_ins = getattr(mod, "__lab_stand_ins__", ())
            if "*" in stand_ins:
                rows.append(Row(day, module, name, "not started", f"day {day} not promoted yet"))
            elif name in stand_ins:
                why = getattr(mod, "__lab_stand_in_why__", {}).get(name, "")
                why = why if why and why != "is not written yet" and not why.startswith("still has") else "still a stub"
                rows.append(Row(day, module, name, "not started", f"{why} (the course's stands in)"))
            elif not hasattr(mod, name):
                rows.append(Row(day, module, name, "not started", f"not in {ws.PACKAGE}/{module}.py"))
            else:
                result = check(getattr(mod, name))
                detail = result.diagnosis or next((line.strip() for line in result.report.splitlines()[1:]
                                                   if line.strip().startswith(("expected", "your code", "part of"))), "")
                rows.append(Row(day, module, name, result.status, "" if result.passed else _one_line(detail)))
    return Progress(rows, package=ws.PACKAGE)
