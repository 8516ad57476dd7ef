"""The golden test: the numpy engine on the course model in weights/, loaded by `load_model`, against the
PyTorch reference's logits (stored in weights/golden.safetensors, and from a live run), at every position,
for prefill and for token-by-token decode; and cached against uncached greedy generation.

The golden file is read with the `safetensors` library, not our reader, and the reference loads the
folder its own way: nothing of the numpy path is on the other side of these comparisons.
"""

from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
import torch

from tinyllm_lab import reference as R
from tinyllm_lab.config import COURSE_MODEL
from tinyllm_lab.export import reference_logits
from tinyllm_lab.session import Session
from tinyllm_lab.weights import load_model

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
TOLERANCE = 1e-4  # float32 noise here is ~1e-5, one-line bugs >= 1e-2 (day6_weights.ipynb, optional section B)


@pytest.fixture(scope="module")
def model():
    return load_model(WEIGHTS)


@pytest.fixture(scope="module")
def golden():  # {"tokens": [T] int64, "logits": [T, V] float32, "decode_logits": [T, V] float32}
    return safetensors.numpy.load_file(str(WEIGHTS / "golden.safetensors"))


@pytest.fixture(scope="module")
def live(golden):  # the reference run now on the same folder: (prefill [T, V], decode [T, V]) as numpy
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the export did
    try:
        prefill, decode = reference_logits(R.load_hf_folder(WEIGHTS), torch.from_numpy(golden["tokens"]))
    finally:
        torch.set_num_threads(threads)
    return prefill.numpy(), decode.numpy()


def assert_close_at_every_position(ours, theirs, what):
    assert ours.dtype == np.float32, what
    assert ours.shape == theirs.shape, what
    worst = np.abs(ours.astype(np.float64) - theirs).max(axis=1)  # [T]: the worst logit at each position
    bad = np.flatnonzero(worst >= TOLERANCE)
    assert bad.size == 0, f"{what}: positions {bad.tolist()} differ by up to {worst.max():.2e} (tolerance {TOLERANCE})"


def test_the_golden_file(golden, model):
    tokens = golden["tokens"]
    assert tokens.dtype == np.int64 and tokens.ndim == 1 and len(tokens) >= 8
    assert 0 <= tokens.min() and tokens.max() < COURSE_MODEL.vocab_size
    for name in ("logits", "decode_logits"):
        assert golden[name].dtype == np.float32
        assert golden[name].shape == (len(tokens), COURSE_MODEL.vocab_size)
    assert model.config == COURSE_MODEL


def test_prefill_matches_the_stored_golden_and_a_live_reference(model, golden, live):
    logits = model.forward(golden["tokens"], model.new_cache())  # the whole prompt in one pass
    assert_close_at_every_position(logits, golden["logits"], "prefill vs stored golden")
    assert_close_at_every_position(logits, live[0], "prefill vs live reference")


def test_decode_matches_the_stored_golden_and_a_live_reference(model, golden, live):
    tokens, cache = golden["tokens"], model.new_cache()
    steps = [model.forward(tokens[t:t + 1], cache) for t in range(len(tokens))]  # one token at a time
    assert cache.pos == len(tokens)
    assert all(step.shape == (1, COURSE_MODEL.vocab_size) for step in steps)
    logits = np.concatenate(steps)
    assert_close_at_every_position(logits, golden["decode_logits"], "decode vs stored golden")
    assert_close_at_every_position(logits, live[1], "decode vs live reference")


def test_the_stored_golden_is_what_the_reference_computes_now(golden, live):
    """If this fails, the golden file is stale (weights retrained without rerunning write_golden)."""
    assert_close_at_every_position(golden["logits"], live[0], "stored vs live prefill")
    assert_close_at_every_position(golden["decode_logits"], live[1], "stored vs live decode")


def test_cached_and_uncached_greedy_generation_give_the_same_32_tokens(model, golden):
    prompt = golden["tokens"].tolist()
    cached = Session(model).generate(prompt, 32)  # prefill once, then one token at a time through the cache
    ids = list(prompt)
    for _ in range(32):  # uncached: the whole sequence again, into a fresh cache, at every step
        logits = model.forward(np.array(ids), model.new_cache())
        assert logits.dtype == np.float32
        ids.append(int(np.argmax(logits[-1])))
    uncached = ids[len(prompt):]
    assert len(cached) == 32
    assert cached == uncached
    assert len(set(cached)) > 1  # a real continuation, not one token repeated


# --- the README's library example ------------------------------------------------------------------

README = WEIGHTS.parent / "README.md"


def readme_library_example():  # -> (code, printed): the python block after "As a library" and the text block after it
    text = README.read_text(encoding="utf-8")
    section = text[text.index("As a library"):]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    printed = section.split("```text\n", 1)[1].split("```", 1)[0]
    return code, printed


def test_the_readme_library_example_runs_and_prints_what_the_readme_shows(capsys, monkeypatch):
    code, printed = readme_library_example()
    monkeypatch.chdir(WEIGHTS.parent)  # the example runs from the repository root, as the README says
    exec(compile(code, "README.md (As a library)", "exec"), {"__name__": "readme_example"})
    assert capsys.readouterr().out == printed


def test_the_readme_states_the_session_default_that_the_code_has():
    import inspect
    text = README.read_text(encoding="utf-8")
    for method in (Session.generate, Session.stream):
        defaults = {name: p.default for name, p in inspect.signature(method).parameters.items()
                    if p.default is not inspect.Parameter.empty}
        assert defaults == {"rng": None, "temperature": 0.0, "top_k": 0, "top_p": 1.0}
    assert "default to **greedy** decoding (`temperature=0.0`,\n`top_k=0`, `top_p=1.0`" in text
    from tinyllm_lab import __main__ as cli
    assert (cli.DEFAULT_TEMPERATURE, cli.DEFAULT_TOP_P) == (0.8, 0.95)
    assert "temperature 0.8 and top-p 0.95" in text
