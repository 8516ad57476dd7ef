"""The benchmark's plumbing, without timing anything: its two engines do the same work, and its
bookkeeping (best time per part, alternating order, targets) is right. The figures themselves are
for `python -m tinyllm_lab.bench`, never for a unit test.
"""

from pathlib import Path

import numpy as np
import pytest

from tinyllm_lab import bench

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


@pytest.fixture(scope="module")
def engines():
    return [bench.ENGINES[name](WEIGHTS) for name in bench.ENGINES]


def test_both_engines_pick_the_same_greedy_tokens(engines):
    prompt = np.random.default_rng(bench.SEED).integers(0, 16384, bench.PROMPT_LENGTH)
    runs = {}
    for engine in engines:
        tokens = [engine.prefill(prompt)]
        for _ in range(6):
            tokens.append(engine.step(tokens[-1]))
        runs[engine.name] = tokens
    assert runs["numpy"] == runs["torch"]
    # the uncached step over the whole context gives the token the cached steps gave
    context = np.concatenate([prompt, runs["numpy"][:-1]])
    assert [engine.recompute(context) for engine in engines] == [runs["numpy"][-1]] * 2


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


def rows(decode_256, decode_1024, torch_decode, cached_1024, no_cache_1024):
    return {"decode to 256": {"numpy": decode_256, "torch": torch_decode},
            "decode to 1024": {"numpy": decode_1024, "torch": torch_decode},
            "cached step at 1024": {"numpy": cached_1024, "torch": 1.0},
            "no cache at 1024": {"numpy": no_cache_1024, "torch": 1.0}}


@pytest.mark.parametrize("figures, cold_start, failed", [
    (rows(130, 130, 100, 250, 10), 0.49, []),                         # every target just met
    (rows(129, 130, 100, 250, 10), 0.49, ["decode to 256"]),
    (rows(200, 169, 100, 250, 10), 0.49, ["numpy decode to 1024 / decode to 256"]),
    (rows(130, 130, 100, 249, 10), 0.49, ["cached step / no cache"]),
    (rows(130, 130, 100, 250, 10), 0.50, ["cold start"]),
])
def test_targets_pass_at_the_threshold_and_fail_below(figures, cold_start, failed):
    results = bench.targets(figures, cold_start)
    assert len(results) == 5
    missed = [text for text, _, passed in results if not passed]
    assert len(missed) == len(failed) and all(f in m for f, m in zip(failed, missed))
