"""The project's set-up: pinned environments agree, the package stays numpy-only, promotion is in sync."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pip_pins():
    """{name: version} from requirements.txt (`name==version` lines)."""
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return dict(re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", l).groups() for l in lines if "==" in l and not l.startswith("#"))


def conda_pins():
    """{name: version} from environment.yml's pip section (`- name==version` lines)."""
    lines = (ROOT / "environment.yml").read_text().splitlines()
    return dict(re.fullmatch(r"\s*- ([A-Za-z0-9_.-]+)==(\S+)", l).groups() for l in lines
                if "==" in l and not l.lstrip().startswith("#"))


def test_environment_yml_matches_requirements():
    pip, conda = pip_pins(), conda_pins()
    assert "torch" in pip and "numpy" in pip, "requirements.txt lost its pins"
    assert conda == pip, f"environment.yml and requirements.txt disagree: {set(conda.items()) ^ set(pip.items())}"


def test_every_requirement_is_pinned():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and line != "-e .":
            assert "==" in line, f"requirements.txt: {line!r} is not pinned with =="


def test_pins_match_installed_versions():
    from importlib.metadata import version
    for name, pinned in pip_pins().items():
        assert version(name).split("+")[0] == pinned, f"{name}: installed {version(name)}, pinned {pinned}"


ENGINE_MODULES = ["ops", "rope", "attention", "kv_cache", "ffn", "config", "model", "sampling", "session",
                  "safetensors", "weights", "tokenizer", "llama2c", "promote", "__main__"]


def blas_report(first_import):
    """(heavy modules loaded, {BLAS library: threads}) after `first_import` in a fresh process."""
    code = (f"{first_import}\nimport sys, tinyllm_lab\n"
            + "".join(f"import tinyllm_lab.{m}\n" for m in ENGINE_MODULES)
            + "heavy = [m for m in ('torch', 'matplotlib') if m in sys.modules]\n"
              "from threadpoolctl import threadpool_info\n"
              "threads = {i['internal_api']: i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'}\n"
              "print(repr((heavy, threads)))")
    env = {k: v for k, v in __import__("os").environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    return eval(out)


@pytest.mark.parametrize("first_import", ["", "import numpy"])
def test_import_is_numpy_only_and_single_threaded(first_import):
    heavy, threads = blas_report(first_import)
    assert heavy == [], f"importing the engine pulled in {heavy}"
    assert threads and set(threads.values()) == {1}, f"BLAS threads after import: {threads}"


def test_promoted_modules_match_their_notebooks():
    from tinyllm_lab import promote
    assert promote.check() == []


def test_promotion_check_catches_a_change(tmp_path, monkeypatch):
    from tinyllm_lab import promote
    nb_dir, pkg_dir = tmp_path / "notebooks", tmp_path / "pkg"
    nb_dir.mkdir(), pkg_dir.mkdir()
    cell = lambda src: {"cell_type": "code", "source": src, "metadata": {}, "outputs": []}
    nb = {"cells": [cell("#| promote: demo\nimport numpy as np"), cell("x = 1"),
                    cell("#| promote: demo\ndef f(x):\n    return x + 1")]}
    (nb_dir / "day0.ipynb").write_text(__import__("json").dumps(nb))
    monkeypatch.setattr(promote, "NOTEBOOK_DIR", nb_dir)
    monkeypatch.setattr(promote, "PACKAGE_DIR", pkg_dir)
    promote.write()
    assert promote.check() == []
    text = (pkg_dir / "demo.py").read_text()
    assert "x = 1" not in text and "def f(x)" in text
    (pkg_dir / "demo.py").write_text(text.replace("return x + 1", "return (x + 1)  # reformatted"))
    assert promote.check() == [], "formatting and comments must not count"
    (pkg_dir / "demo.py").write_text(text.replace("x + 1", "x + 2"))
    assert promote.check() == ["tinyllm_lab/demo.py differs from its cells in day0.ipynb"]


def test_license_is_gpl3():
    assert "GNU GENERAL PUBLIC LICENSE" in (ROOT / "LICENSE").read_text()
    assert "Version 3" in (ROOT / "LICENSE").read_text()
