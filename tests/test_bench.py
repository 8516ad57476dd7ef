"""The benchmark's plumbing, without timing anything: its engines do the same work, and its
bookkeeping (best time per part, alternating order, targets) is right. The figures themselves are
for `python -m tinyllm_lab.bench`, never for a unit test.
"""

from pathlib import Path

import numpy as np
import pytest

from tinyllm_lab import bench
from tinyllm_lab.session import Session

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


@pytest.fixture(scope="module")
def engines():
    return [bench.ENGINES[name](WEIGHTS) for name in bench.ENGINES]


def test_all_engines_pick_the_same_greedy_tokens(engines):
    prompt = np.random.default_rng(bench.SEED).integers(0, 16384, bench.PROMPT_LENGTH)
    runs = {}
    for engine in engines:
        tokens = [engine.prefill(prompt)]
        for _ in range(6):
            tokens.append(engine.step(tokens[-1]))
        runs[engine.name] = tokens
    assert runs["numpy"] == runs["torch"] == runs["transformers"]
    # the uncached step over the whole context gives the token the cached steps gave
    context = np.concatenate([prompt, runs["numpy"][:-1]])
    assert [engine.recompute(context) for engine in engines] == [runs["numpy"][-1]] * 3


def test_session_runs_decode_what_session_generates_and_time_every_step_but_the_first(engines):
    model = engines[0].model
    prompt = np.random.default_rng(bench.SEED).integers(0, 16384, bench.PROMPT_LENGTH)
    greedy, seconds = bench.SessionRun("greedy", model, {}).generate(prompt, 10)
    assert len(greedy) == 10 and len(seconds) == 9  # the first token (prefill + first draw) is not timed
    engine = engines[0]
    assert greedy == [engine.prefill(prompt)] + bench.decode(prompt, len(prompt) + 9)(engine)[0]
    sampled, _ = bench.SessionRun("sampled", model, bench.SAMPLED).generate(prompt, 10)
    assert sampled == Session(model).generate(prompt, 10, np.random.default_rng(bench.SEED), **bench.SAMPLED)
    assert sampled != greedy  # the settings reached the sampler


def test_step_bytes_are_every_weight_once_plus_four_kib_per_cached_position(engines):
    model = engines[0].model  # the course model: D 256, F 1024, 2 layers, 4 heads of 64, V 16384, tied
    floats_per_layer = 2 * 256 + 4 * 256 * 256 + 3 * 1024 * 256  # two norms, wq wk wv wo, w1 w2 w3
    weights = 4 * (2 * floats_per_layer + 256 + 16384 * 256 + 256)  # layers, final norm, head, one embedding row
    assert bench.step_bytes(model, 0) == weights == 25_171_968  # the 25.2 MB
    assert bench.step_bytes(model, 100) - weights == 100 * 2 * 2 * 4 * 64 * 4  # keys and values, 2 layers, K=4, Dh=64


def test_roofline_limit_is_bandwidth_over_the_bytes_of_those_steps(engines):
    model = engines[0].model
    bandwidth = 10e9
    rows = {f"decode to {N}": {"numpy": 200.0, "torch": 100.0} for N in bench.CONTEXTS}
    shares, limits = bench.roofline(model, rows, bandwidth)
    for N in bench.CONTEXTS:
        contexts = np.arange(bench.PROMPT_LENGTH + 1, N + 1)
        seconds = (25_171_968 + 4096 * contexts).sum() / bandwidth  # the least time those steps can take
        assert limits[f"decode to {N}"] == pytest.approx(len(contexts) / seconds)
        assert shares[f"decode to {N}"]["numpy"] == pytest.approx(200.0 * seconds / len(contexts))
        assert shares[f"decode to {N}"]["torch"] == pytest.approx(shares[f"decode to {N}"]["numpy"] / 2)


def test_decode_job_times_each_step_after_an_untimed_prefill(engines):
    prompt = np.arange(1, 9)
    tokens, seconds = bench.decode(prompt, 12)(engines[0])
    assert len(tokens) == len(seconds) == 12 - 8  # one token and one time per decode step
    assert engines[0].cache.pos == 12  # the context holds 12 tokens: the last step attended to all of them


class FakeEngine:  # stands in for an engine in a job that only records the order of the calls
    def __init__(self, name):
        self.name = name


def test_best_of_keeps_each_parts_shortest_time_and_alternates_the_order():
    times = {"numpy": iter([[3.0, 1.0], [2.0, 5.0], [4.0, 0.5]]), "torch": iter([[1.0, 1.0], [1.0, 1.0], [0.5, 2.0]])}
    order = []

    def job(engine):
        order.append(engine.name)
        return [7], next(times[engine.name])

    results = bench.best_of([FakeEngine("numpy"), FakeEngine("torch")], job, repeats=3)
    assert order == ["numpy", "torch", "torch", "numpy", "numpy", "torch"]
    assert results["numpy"][1].tolist() == [2.0, 0.5] and results["torch"][1].tolist() == [0.5, 1.0]
    assert results["numpy"][0] == [7]


def figures(share=0.70, vs_torch=1.3, vs_hf=1.6, sampled=0.9, prefill=1.0, long_short=0.85, cached=25):
    """Rows and shares that meet every target exactly; each keyword moves one ratio."""
    rows = {f"decode to {N}": {"numpy": 100.0, "torch": 100.0 / vs_torch, "transformers": 100.0 / vs_hf}
            for N in (256, 1024)}
    rows["decode to 1024"] = {name: rate * long_short for name, rate in rows["decode to 1024"].items()}
    rows.update({"cached step at 1024": {"numpy": 10.0 * cached, "torch": 1.0},
                 "no cache at 1024": {"numpy": 10.0, "torch": 1.0},
                 "prefill 512": {"numpy": 1000.0 * prefill, "torch": 1000.0},
                 "Session greedy to 256": {"numpy": 100.0}, "Session sampled to 256": {"numpy": 100.0 * sampled}})
    shares = {f"decode to {N}": {"numpy": share} for N in (256, 1024)}
    return rows, shares


@pytest.mark.parametrize("changed, cold_start, peak, failed", [
    ({}, 0.29, 184, []),                                                   # every target just met
    (dict(share=0.69), 0.29, 184, ["decode to 256: numpy's share", "decode to 1024: numpy's share"]),
    (dict(vs_torch=1.29), 0.29, 184, ["decode to 256: numpy / torch", "decode to 1024: numpy / torch"]),
    (dict(vs_hf=1.59), 0.29, 184, ["decode to 256: numpy / transformers", "decode to 1024: numpy / transformers"]),
    (dict(sampled=0.89), 0.29, 184, ["Session sampled"]),
    (dict(prefill=0.99), 0.29, 184, ["prefill 512"]),
    (dict(long_short=0.84), 0.29, 184, ["decode to 1024 / decode to 256"]),
    (dict(cached=24.9), 0.29, 184, ["cached step / no cache"]),
    ({}, 0.30, 184, ["cold start"]),
    ({}, 0.29, 184.1, ["peak memory"]),
])
def test_targets_pass_at_the_threshold_and_fail_below(changed, cold_start, peak, failed):
    rows, shares = figures(**changed)
    results = bench.targets(rows, shares, cold_start, peak)
    assert len(results) == 12
    missed = [text for text, _, passed in results if not passed]
    assert len(missed) == len(failed) and all(f in m for f, m in zip(failed, missed)), missed
