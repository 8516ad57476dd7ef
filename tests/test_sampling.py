"""Sampling: greedy, temperature, top-k, top-p semantics, float64 renormalisation, seeded draws, bad settings.

Semantics under test (see tinyllm_lab.sampling): temperature 0 is the argmax, the lowest id on
ties; top-k keeps the k most probable (lower id first on ties), 0 keeps all; top-p keeps the
smallest set of most probable tokens whose mass reaches p, at least one, 1 keeps all; the kept
probabilities are renormalised in float64; draws come only from the caller's Generator.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tinyllm_lab.sampling import (_first_reaching, _most_probable, check_rng, check_sampling, next_token_probs, sample, top_k_filter,
                                  top_p_filter)


def random_logits(seed, V=50, scale=2.0):
    return (np.random.default_rng(seed).standard_normal(V) * scale).astype(np.float32)


class FixedU:
    """A stand-in for np.random.Generator whose `random()` always returns u: pins the inverse-CDF draw."""

    def __init__(self, u):
        self.u = u

    def random(self):
        return self.u


# ---------------------------------------------------------------------------------------------
# reproducibility and greedy

def test_same_seed_same_tokens():
    z = random_logits(0)

    def draw(seed):  # 100 tokens from one generator
        rng = np.random.default_rng(seed)
        return [sample(z, rng, 0.8, 10, 0.9) for _ in range(100)]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)
    assert len(set(draw(7))) > 3  # it really samples


@pytest.mark.parametrize("logits, expected", [
    ([1.0, 3.0, 3.0, 2.0], 1),                 # tie between 1 and 2: the first wins
    ([5.0, 5.0, 5.0], 0),
    ([-np.inf, 0.0, 0.0], 1),
    ([0.0, 1e-3, -7.0], 1),
    ([2.0], 0),
])
def test_temperature_zero_is_argmax_first_on_ties(logits, expected):
    logits = np.array(logits, dtype=np.float32)
    assert sample(logits, None, temperature=0) == expected  # greedy needs no rng
    assert sample(logits, np.random.default_rng(0), 0.0, top_k=2, top_p=0.1) == expected  # filters irrelevant
    probs = next_token_probs(logits, 0.0)
    assert probs.dtype == np.float64 and probs[expected] == 1 and probs.sum() == 1


def test_temperature_zero_on_a_big_vocabulary():
    z = random_logits(1, V=16384)
    assert sample(z, None, 0.0) == int(np.argmax(z)) == int(torch.argmax(torch.from_numpy(z)))


@pytest.mark.parametrize("temperature", [0.3, 1.0, 5.0])
def test_top_k_1_and_a_tiny_top_p_give_the_argmax(temperature):
    for seed in range(30):
        z = random_logits(seed)
        rng = np.random.default_rng(seed)
        assert sample(z, rng, temperature, top_k=1) == np.argmax(z)
        assert sample(z, rng, temperature, top_p=1e-9) == np.argmax(z)


# ---------------------------------------------------------------------------------------------
# the filters, known answers

@pytest.mark.parametrize("k, kept", [(1, [1]), (2, [1, 3]), (3, [1, 2, 3]), (4, [0, 1, 2, 3]),
                                     (0, [0, 1, 2, 3]), (10, [0, 1, 2, 3])])
def test_top_k_known_answer(k, kept):
    probs = np.array([0.1, 0.4, 0.2, 0.3])
    out = top_k_filter(probs, k)
    assert np.flatnonzero(out).tolist() == kept and np.array_equal(out[kept], probs[kept])


def test_top_k_ties_keep_the_lower_ids():
    assert np.flatnonzero(top_k_filter(np.full(4, 0.25), 2)).tolist() == [0, 1]


# Dyadic probabilities: every partial sum is exact, so the boundaries are exact too.
# Sorted: 0.5 (id 1), 0.25 (id 2), 0.125 (id 0), 0.125 (id 3); cumulative 0.5, 0.75, 0.875, 1.
@pytest.mark.parametrize("p, kept", [(1e-9, [1]), (0.25, [1]), (0.5, [1]), (0.6, [1, 2]), (0.75, [1, 2]),
                                     (0.8, [0, 1, 2]), (0.875, [0, 1, 2]), (0.9, [0, 1, 2, 3]), (1.0, [0, 1, 2, 3])])
def test_top_p_keeps_the_smallest_set_reaching_p(p, kept):
    probs = np.array([0.125, 0.5, 0.25, 0.125])
    out = top_p_filter(probs, p)
    assert np.flatnonzero(out).tolist() == kept and np.array_equal(out[kept], probs[kept])
    # measured relative to the total: the same set for unnormalised input (what top-k leaves)
    assert np.flatnonzero(top_p_filter(probs * 4, p)).tolist() == kept


def test_top_p_1_leaves_the_distribution_unchanged():
    z = random_logits(3, V=1000)
    probs = next_token_probs(z, 0.7, top_k=0, top_p=1.0)
    expected = torch.softmax(torch.from_numpy(z.astype(np.float64)) / 0.7, dim=-1).numpy()
    assert np.abs(probs - expected).max() < 1e-15 and np.all(probs > 0)
    assert np.array_equal(top_p_filter(probs, 1.0), probs)


def test_top_k_then_top_p_known_answer():
    logits = np.log(np.array([0.05, 0.4, 0.2, 0.3, 0.05]))  # probabilities at temperature 1
    # top-k 3 keeps ids 1, 3, 2 (mass 0.9); top-p 0.7 of that is 0.63: 0.4 + 0.3 = 0.7 reaches it
    probs = next_token_probs(logits, 1.0, top_k=3, top_p=0.7)
    assert np.allclose(probs, [0, 0.4 / 0.7, 0, 0.3 / 0.7, 0], atol=1e-12)


# ---------------------------------------------------------------------------------------------
# the distribution: float64, renormalised, as Hugging Face's warpers

def hf_probs(z, temperature, top_k, top_p):  # [V] -> [V]: transformers' logits warpers, then softmax
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers may warn about optional extras on import
        from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                            TopPLogitsWarper)
    scores = TemperatureLogitsWarper(temperature)(None, torch.from_numpy(z)[None])
    if top_k > 0:
        scores = TopKLogitsWarper(top_k)(None, scores)
    scores = TopPLogitsWarper(top_p)(None, scores)
    return torch.softmax(scores, -1)[0].double().numpy()


@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, 0, 1.0), (0.5, 0, 0.9), (1.7, 20, 1.0),
                                                       (0.8, 40, 0.5), (1.0, 5, 0.95), (2.0, 100, 0.3)])
def test_next_token_probs_match_hugging_face(temperature, top_k, top_p):
    for seed in range(5):
        z = random_logits(seed, V=200)
        ours, theirs = next_token_probs(z, temperature, top_k, top_p), hf_probs(z, temperature, top_k, top_p)
        assert ours.dtype == np.float64
        assert np.array_equal(ours > 0, theirs > 0)
        assert np.abs(ours - theirs).max() < 1e-6


def test_renormalised_in_float64():
    z = random_logits(4, V=16384, scale=3.0)  # float32 logits, the course vocabulary
    for top_k, top_p in [(0, 1.0), (100, 1.0), (0, 0.5), (50, 0.9)]:
        probs = next_token_probs(z, 0.9, top_k, top_p)
        assert probs.dtype == np.float64 and abs(probs.sum() - 1) < 1e-12
        assert (top_k == 0 or np.count_nonzero(probs) <= top_k) and np.count_nonzero(probs) >= 1


# ---------------------------------------------------------------------------------------------
# the draw

SETTINGS = [  # (temperature, top_k, top_p, kept ids) for TOY below
    (1.0, 0, 1.0, [0, 1, 2, 3, 4, 5]),
    (0.7, 3, 1.0, [0, 1, 2]),
    (1.0, 0, 0.8, [0, 1, 2]),  # sorted probabilities 0.538, 0.198, 0.120, ...: 0.736 < 0.8 <= 0.856
    (1.5, 4, 0.9, [0, 1, 2, 3]),
]
TOY = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -0.5], dtype=np.float32)


@pytest.mark.parametrize("temperature, top_k, top_p, kept", SETTINGS)
def test_empirical_frequencies_match_the_probabilities(temperature, top_k, top_p, kept):
    n = 5000
    rng = np.random.default_rng(0)
    counts = np.bincount([sample(TOY, rng, temperature, top_k, top_p) for _ in range(n)], minlength=TOY.size)
    expected = np.zeros(TOY.size)
    expected[kept] = torch.softmax(torch.from_numpy(TOY[kept].astype(np.float64)) / temperature, -1).numpy()
    assert np.flatnonzero(counts).tolist() == kept  # cut tokens never come up
    assert np.abs(counts / n - expected).max() < 0.025  # 3.5 standard deviations (at most 0.0071) at n = 5000


@pytest.mark.parametrize("u, expected", [(0.0, 0), (0.62, 0), (0.63, 1), (0.85, 1), (0.87, 2),
                                         (np.nextafter(1.0, 0.0), 2)])
def test_inverse_cdf_draw_known_answer(u, expected):
    # top-k 3 keeps logits 2, 1, 0.5: probabilities e^2, e^1, e^0.5 / 11.756 = 0.6285, 0.2312, 0.1402,
    # cumulative 0.6285, 0.8598, 1. The draw is the first id whose cumulative probability exceeds u.
    assert np.allclose(np.cumsum(next_token_probs(TOY, 1.0, top_k=3))[:3], [0.6285, 0.8598, 1.0], atol=1e-4)
    assert sample(TOY, FixedU(u), 1.0, top_k=3) == expected


def test_the_largest_u_never_draws_a_cut_token():
    # ids 4 and 5 are cut by top-k; u just below 1 must land on the last kept id, never past it
    z = np.array([0.0, 0.0, 0.0, 0.0, -1.0, -2.0], dtype=np.float32)
    assert sample(z, FixedU(np.nextafter(1.0, 0.0)), 1.0, top_k=4) == 3


# ---------------------------------------------------------------------------------------------
# invalid settings

@pytest.mark.parametrize("settings, message", [
    (dict(temperature=-0.1), r"temperature must be finite and >= 0 \(0 means greedy\), got -0.1"),
    (dict(temperature=float("nan")), r"temperature must be finite and >= 0.*got nan"),
    (dict(temperature=float("inf")), r"temperature must be finite and >= 0.*got inf"),
    (dict(top_k=-1), r"top_k must be an integer >= 0 \(0 means no limit\), got -1"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\] \(1 means no limit\), got 0.0"),
    (dict(top_p=-0.5), r"top_p must be in \(0, 1\].*got -0.5"),
    (dict(top_p=1.01), r"top_p must be in \(0, 1\].*got 1.01"),
    (dict(top_p=float("nan")), r"top_p must be in \(0, 1\].*got nan"),
])
def test_invalid_settings_raise(settings, message):
    full = dict(temperature=1.0, top_k=0, top_p=1.0) | settings
    with pytest.raises(ValueError, match=message):
        check_sampling(**full)
    with pytest.raises(ValueError, match=message):
        sample(TOY, np.random.default_rng(0), **full)
    with pytest.raises(ValueError, match=message):
        next_token_probs(TOY, **full)


@pytest.mark.parametrize("logits", [np.zeros((2, 3), np.float32), np.zeros(0, np.float32)])
def test_logits_must_be_a_nonempty_vector(logits):
    with pytest.raises(ValueError, match=r"logits must be a non-empty \[V\] vector"):
        sample(logits, np.random.default_rng(0))


def test_integer_types_accepted_for_top_k():
    assert sample(TOY, None, 0.0, top_k=np.int64(2)) == 0
    assert sample(TOY, np.random.default_rng(0), 1.0, top_k=np.int32(1)) == 0


# ---------------------------------------------------------------------------------------------
# temperatures too small for float64, and a missing generator

@pytest.mark.parametrize("temperature", [1e-320, 5e-324, 1e-309])
def test_a_temperature_that_overflows_the_logits_raises(temperature):
    # 2.0 / 1e-320 is inf in float64: softmax would give nan and the draw a wrong token
    z = TOY.astype(np.float64)
    with pytest.raises(ValueError, match=rf"temperature {temperature} is too small for these logits: "
                                         r"logits / temperature overflows .* temperature=0 for greedy"):
        next_token_probs(z, temperature)
    with pytest.raises(ValueError, match=rf"temperature {temperature} is too small"):
        sample(z, np.random.default_rng(0), temperature)


def test_a_tiny_temperature_that_does_not_overflow_is_the_argmax():
    z = np.array([0.5, 3.0, -2.0, 2.999], dtype=np.float32)  # largest |logit| 3: 3 / 1e-300 = 3e300 is finite
    probs = next_token_probs(z, 1e-300)
    assert np.array_equal(probs, [0.0, 1.0, 0.0, 0.0])
    assert sample(z, np.random.default_rng(0), 1e-300) == 1


def test_minus_infinity_logits_are_allowed_and_never_drawn():
    z = np.array([-np.inf, 1.0, -np.inf, 0.0])
    probs = next_token_probs(z, 0.5)
    assert probs[0] == probs[2] == 0 and np.isclose(probs.sum(), 1)
    rng = np.random.default_rng(0)
    assert {sample(z, rng, 0.5) for _ in range(200)} == {1, 3}


@pytest.mark.parametrize("bad, shown", [(np.nan, r"\[2\]"), (np.inf, r"\[2\]")])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_nan_or_plus_infinity_logits_raise(bad, shown, temperature):
    z = np.array([0.0, 1.0, bad, 2.0])
    with pytest.raises(ValueError, match=rf"logits contain nan or \+inf at ids {shown}"):
        sample(z, np.random.default_rng(0), temperature)


def test_sampling_without_a_generator_raises_a_value_error():
    with pytest.raises(ValueError, match=r"sampling with temperature > 0 needs rng=np\.random\.default_rng\(seed\)"):
        sample(TOY, None, temperature=0.8)
    assert sample(TOY, None, temperature=0) == 0  # greedy needs none



# ---------------------------------------------------------------------------------------------
# arguments of the wrong type: TypeError naming the argument (issue 10, kind 4)

@pytest.mark.parametrize("settings, message", [
    (dict(temperature="0.7"), r"temperature must be a number \(0 means greedy\), got '0.7'"),
    (dict(temperature=None), r"temperature must be a number.*got None"),
    (dict(temperature=True), r"temperature must be a number.*got True"),   # True would have been temperature 1
    (dict(temperature=[0.7]), r"temperature must be a number.*got \[0.7\]"),
    (dict(top_k=2.5), r"top_k must be an integer >= 0.*got 2.5"),
    (dict(top_k=2.0), r"top_k must be an integer >= 0.*got 2.0"),
    (dict(top_k=True), r"top_k must be an integer >= 0.*got True"),
    (dict(top_k=None), r"top_k must be an integer >= 0.*got None"),
    (dict(top_k="40"), r"top_k must be an integer >= 0.*got '40'"),
    (dict(top_p="0.9"), r"top_p must be a number in \(0, 1\].*got '0.9'"),
    (dict(top_p=True), r"top_p must be a number in \(0, 1\].*got True"),   # True == 1 passed the range check
    (dict(top_p=None), r"top_p must be a number in \(0, 1\].*got None"),
])
def test_settings_of_the_wrong_type_raise_a_type_error_naming_them(settings, message):
    full = dict(temperature=1.0, top_k=0, top_p=1.0) | settings
    for call in (lambda: check_sampling(**full), lambda: sample(TOY, np.random.default_rng(0), **full),
                 lambda: next_token_probs(TOY, **full)):
        with pytest.raises(TypeError, match=message):
            call()


def test_numpy_numbers_are_settings():
    assert sample(TOY, None, np.float64(0.0), np.int64(0), np.float32(1.0)) == 0
    probs = next_token_probs(TOY, np.float32(0.5), np.int32(3), np.float64(0.9))
    np.testing.assert_array_equal(probs, next_token_probs(TOY, float(np.float32(0.5)), 3, 0.9))


@pytest.mark.parametrize("rng", [42, "seed", np.int64(7), [0.5]])
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_an_rng_that_is_not_a_generator_is_refused_even_when_greedy(rng, temperature):
    with pytest.raises(TypeError, match=r"rng must be a np.random.Generator, e.g. np.random.default_rng\("):
        sample(TOY, rng, temperature)
    with pytest.raises(TypeError, match=r"rng must be a np.random.Generator"):
        check_rng(rng, temperature)


def test_check_rng_accepts_a_generator_and_none_only_when_greedy():
    check_rng(np.random.default_rng(0), 0.8)
    check_rng(None, 0.0)
    with pytest.raises(ValueError, match=r"sampling with temperature > 0 needs rng=np\.random\.default_rng\(seed\)"):
        check_rng(None, 0.5)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_all_minus_infinity_logits_raise_instead_of_answering_zero(temperature):
    # greedy used to return token 0, which has probability 0 like every other
    z = np.full(5, -np.inf, dtype=np.float32)
    with pytest.raises(ValueError, match="logits are all -inf: every token has probability 0, so there is no next token"):
        sample(z, np.random.default_rng(0), temperature)
    with pytest.raises(ValueError, match="logits are all -inf"):
        next_token_probs(z, temperature)


@pytest.mark.parametrize("logits, dtype", [(np.array([True, False]), "bool"), (np.array([1 + 1j, 0j]), "complex128"),
                                           (np.array(["2.0", "1.0"]), "<U3"), (np.array([1.0, None]), "object")])
def test_logits_that_are_not_real_numbers_raise_a_type_error(logits, dtype):
    with pytest.raises(TypeError, match=f"logits must hold real numbers .*got dtype {dtype}"):
        sample(logits, None, 0.0)


# ---------------------------------------------------------------------------------------------
# the dtype rule: logits of any real dtype are read as float32, probabilities worked out in float64

@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int64, np.int8])
def test_logits_of_any_real_dtype_are_read_as_float32(dtype):
    z = (3 * np.random.default_rng(8).standard_normal(40)).astype(dtype)
    as32 = z.astype(np.float32)
    for settings in (dict(temperature=0.0), dict(temperature=0.7, top_k=10), dict(temperature=1.3, top_p=0.8)):
        probs = next_token_probs(z, **settings)
        assert probs.dtype == np.float64
        np.testing.assert_array_equal(probs, next_token_probs(as32, **settings))
        assert sample(z, np.random.default_rng(1), **settings) == sample(as32, np.random.default_rng(1), **settings)


def test_float64_logits_beyond_float32_range_are_refused():
    with pytest.raises(ValueError, match="logits holds values beyond float32's range"):
        sample(np.array([1e300, 0.0]), None, 0.0)


# ---------------------------------------------------------------------------------------------
# found by the hostile-input hunt (issue 10): the filters and the draw check what they are given

def test_the_filters_take_a_list():
    np.testing.assert_array_equal(top_k_filter([0.1, 0.4, 0.5], 2), [0.0, 0.4, 0.5])  # was an AttributeError
    np.testing.assert_array_equal(top_p_filter([0.1, 0.4, 0.5], 0.5), [0.0, 0.0, 0.5])


@pytest.mark.parametrize("k, error, message", [(-1, ValueError, "got -1"), (True, TypeError, "got True"),
                                               (2.0, TypeError, "got 2.0")])
def test_top_k_filter_refuses_a_bad_k(k, error, message):
    # k = -1 used to drop the least probable token silently (argsort(...)[:-1])
    with pytest.raises(error, match=f"top_k_filter: k must be an integer >= 0 \\(0 keeps all\\), {message}"):
        top_k_filter(np.array([0.1, 0.4, 0.5]), k)


@pytest.mark.parametrize("p, error", [(0.0, ValueError), (-0.5, ValueError), (1.5, ValueError), (float("nan"), ValueError),
                                      ("0.9", TypeError), (True, TypeError)])
def test_top_p_filter_refuses_a_p_outside_the_unit_interval(p, error):
    # p = 0 used to keep one token silently
    with pytest.raises(error, match="top_p_filter: p must be"):
        top_p_filter(np.array([0.1, 0.4, 0.5]), p)


@pytest.mark.parametrize("probs", [np.zeros(3), np.array([0.5, -0.1, 0.6]), np.array([0.5, np.nan, 0.5]),
                                   np.array([0.5, np.inf, 0.5])])
@pytest.mark.parametrize("keep", [lambda probs: top_k_filter(probs, 2), lambda probs: top_p_filter(probs, 0.5)])
def test_the_filters_refuse_what_is_not_a_distribution(probs, keep):
    # all-zero probabilities used to come back as all zeros, a "distribution" with nothing to draw
    with pytest.raises(ValueError, match="probs must be finite and >= 0 with a positive sum"):
        keep(probs)


@pytest.mark.parametrize("probs, error, match", [(np.ones((2, 2)), ValueError, r"non-empty \[V\] vector"),
                                                 (np.zeros(0), ValueError, r"non-empty \[V\] vector"),
                                                 (np.array([True, False]), TypeError, "real numbers")])
def test_the_filters_refuse_probs_of_the_wrong_shape_or_type(probs, error, match):
    with pytest.raises(error, match=match):
        top_k_filter(probs, 1)


@pytest.mark.parametrize("u", [1.0, 1.5, -0.1, float("nan")])
def test_a_generator_that_returns_u_outside_0_1_is_refused(u):
    # a broken stand-in generator used to give the last kept token every time, silently
    with pytest.raises(ValueError, match=rf"rng.random\(\) returned {u!r}, expected a number in \[0, 1\)"):
        sample(TOY, FixedU(u), 1.0)


# ---------------------------------------------------------------------------------------------
# Doing only the work the settings ask for changed no token: 700 tokens sampled before that rewrite

PINNED = json.loads((Path(__file__).parent / "sampled_tokens.json").read_text())


@pytest.fixture(scope="module")
def course_session():
    from tinyllm_lab.session import Session
    from tinyllm_lab.weights import load_model
    return Session(load_model(Path(__file__).resolve().parents[1] / "weights"))


@pytest.mark.parametrize("run", [r for r in PINNED["runs"] if "logits" not in r], ids=lambda r: str(r["settings"]))
def test_session_samples_the_tokens_pinned_before_the_partial_sort(course_session, run):
    tokens = course_session.generate(PINNED["prompt"], len(run["tokens"]), rng=np.random.default_rng(run["seed"]),
                                     **run["settings"])
    assert tokens == run["tokens"]


def test_sample_on_flat_logits_draws_the_tokens_pinned_before_the_partial_sort():
    # flat distributions: top-p 0.9 keeps thousands of ids, so the nucleus search widens several times
    logits_rng = np.random.default_rng(7)
    for run in [r for r in PINNED["runs"] if "logits" in r]:
        rng = np.random.default_rng(run["seed"])
        tokens = [sample((logits_rng.standard_normal(16384) * 2).astype(np.float32), rng, **run["settings"])
                  for _ in run["tokens"]]
        assert tokens == run["tokens"], run["settings"]


@pytest.mark.parametrize("n", [1, 3, 7, 8, 20])
def test_most_probable_is_the_head_of_the_stable_argsort(n):
    probs = np.random.default_rng(n).integers(0, 4, 20).astype(np.float64)  # many ties
    head = _most_probable(probs, n)
    assert len(head) >= n and head.tolist() == np.argsort(-probs, kind="stable")[:len(head)].tolist()


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.999, 1 - 1e-12])
def test_top_p_filter_equals_the_full_sort_on_a_flat_distribution(p):
    probs = np.random.default_rng(0).random(5000)  # flat: the nucleus holds thousands of ids
    order = np.argsort(-probs, kind="stable")
    mass = np.cumsum(probs[order])
    n_keep = min(int(np.searchsorted(mass, p * mass[-1])) + 1, probs.size)
    expected = np.zeros_like(probs)
    expected[order[:n_keep]] = probs[order[:n_keep]]
    np.testing.assert_array_equal(top_p_filter(probs, p), expected)


@pytest.mark.parametrize("p", [0.3, 0.5, 0.8])
def test_top_p_filter_cuts_through_ties_keeping_the_lower_ids(p):
    probs = np.array([0.1, 0.2, 0.1, 0.2, 0.1, 0.2, 0.1])  # the stable sort: 1, 3, 5, then 0, 2, 4, 6
    order = [1, 3, 5, 0, 2, 4, 6]
    n_keep = int(np.searchsorted(np.cumsum(probs[order]), p * probs.sum())) + 1
    expected = np.zeros_like(probs)
    expected[order[:n_keep]] = probs[order[:n_keep]]
    np.testing.assert_array_equal(top_p_filter(probs, p), expected)


# ---------------------------------------------------------------------------------------------
# the running sum behind the nucleus cut and the draw: whole blocks first, then one block

def test_first_reaching_known_answer():
    values = np.array([0.5, 0.25, 0.125, 0.125])
    assert _first_reaching(values, 0.7) == 1                  # 0.5 < 0.7 <= 0.75
    assert _first_reaching(values, 0.75) == 1                 # "left": the first running sum >= target
    assert _first_reaching(values, 0.75, side="right") == 2   # "right": the first running sum > target
    assert _first_reaching(values, 1.5) == 4                  # never reached: n


@pytest.mark.parametrize("n", [1, 511, 512, 513, 1024, 1500, 5000])
@pytest.mark.parametrize("side", ["left", "right"])
def test_first_reaching_is_searchsorted_of_the_cumsum(n, side):
    values = np.random.default_rng(n).random(n)
    running = np.cumsum(values)
    # targets in every block, on running sums themselves (ties with "left"/"right"), and past the total
    targets = [0.0, *running[::97], *(running[::97] * (1 - 1e-9)), running[-1] * 0.5, running[-1] * 1.01]
    for target in targets:
        expected = int(np.searchsorted(running, target, side))
        assert abs(_first_reaching(values, target, side) - expected) <= 1  # on a running sum: rounding decides
        if not np.isin(target, running):
            assert _first_reaching(values, target, side) == expected


def test_first_reaching_uses_the_first_block_that_reaches_the_target():
    values = np.zeros(2048)
    values[[3, 700, 1500]] = 1.0  # running sum 1 from id 3, 2 from id 700, 3 from id 1500
    assert [_first_reaching(values, t) for t in (0.5, 1.0, 1.5, 2.5, 3.0, 3.5)] == [3, 3, 700, 1500, 1500, 2048]
    assert [_first_reaching(values, t, side="right") for t in (0.0, 1.0, 2.0)] == [3, 700, 1500]


def test_a_subnormal_temperature_with_negative_logits_raises_instead_of_nan():
    # 1 / 1e-309 overflows: (logits - max) * (1 / temperature) would be 0 * inf = nan at the max
    z = np.array([-1.0, -2.0, -3.0], dtype=np.float32)
    with pytest.raises(ValueError, match=r"temperature 1e-309 is too small for these logits"):
        sample(z, np.random.default_rng(0), 1e-309)
    with pytest.raises(ValueError, match=r"temperature 1e-309 is too small for these logits"):
        next_token_probs(z, 1e-309)
