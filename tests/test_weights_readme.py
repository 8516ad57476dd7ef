"""weights/README.md records the sha256 of each weights file: they must still be the files there."""

import hashlib
import re
from pathlib import Path

import pytest

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
ROWS = re.findall(r"^\| `([\w.]+)` \| ([\d,]+) \| `([0-9a-f]{64})` \|$", (WEIGHTS / "README.md").read_text(), re.M)


def test_readme_lists_every_weights_file():
    listed = {name for name, _, _ in ROWS}
    assert listed == {"config.json", "model.safetensors", "tokenizer.json", "golden.safetensors"}


@pytest.mark.parametrize("name, size, digest", ROWS)
def test_recorded_size_and_sha256(name, size, digest):
    data = (WEIGHTS / name).read_bytes()
    assert len(data) == int(size.replace(",", "")), f"{name}: size differs from weights/README.md"
    assert hashlib.sha256(data).hexdigest() == digest, f"{name}: sha256 differs from weights/README.md"
