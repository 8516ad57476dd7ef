"""Notebooks give the same stored outputs whatever the environment's matplotlib backend.

With `MPLBACKEND=Agg` (common on servers and in CI) a notebook that does not declare the inline
backend shows its figures as nothing but `<Figure size ...>` text, and strict nbval fails. Every
notebook that plots therefore runs `%matplotlib inline` before its first plot. Two checks:

- statically, over every notebook (cheap): the declaration comes before the first plotting cell;
- for real, on two notebooks (day 1 and day 5, about 10 s each): strict nbval in a subprocess with
  `MPLBACKEND=Agg` set. Re-executing every notebook a second time would add minutes to the suite.
"""

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
RUN_UNDER_AGG = ["day1_math_primitives.ipynb", "day5_model_session.ipynb"]


def code_cells(path):
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def first_index(sources, predicate):  # index of the first cell whose source satisfies predicate, or None
    return next((i for i, s in enumerate(sources) if predicate(s)), None)


def plots(source):
    return "plt." in source or ".plot(" in source or "imshow(" in source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_plotting_notebook_declares_the_inline_backend_before_its_first_plot(path):
    sources = code_cells(path)
    first_plot = first_index(sources, plots)
    if first_plot is None:
        pytest.skip(f"{path.name} draws no plot")
    declared = first_index(sources, lambda s: any(line.strip() == "%matplotlib inline" for line in s.splitlines()))
    assert declared is not None and declared <= first_plot, (
        f"{path.name}: code cell {first_plot} plots, but no `%matplotlib inline` comes before it; with "
        f"MPLBACKEND=Agg its figures would be stored as text and strict nbval would fail")


def test_the_notebooks_this_checks_exist():
    assert set(RUN_UNDER_AGG) <= {p.name for p in NOTEBOOKS}


def test_strict_nbval_passes_with_mplbackend_agg():
    env = {**os.environ, "MPLBACKEND": "Agg"}
    paths = [f"notebooks/{name}" for name in RUN_UNDER_AGG]
    # pyproject's addopts apply: --nbval --nbval-current-env, the sanitizer, -p no:cacheprovider
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", *paths], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"nbval under MPLBACKEND=Agg failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    assert " passed" in result.stdout and "failed" not in result.stdout
