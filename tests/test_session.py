"""The generation session: arguments checked up front, clean restarts, EOS, max_new_tokens, cached = uncached.

A small random GQA model with weights of std 0.2 (std 0.02 makes greedy decoding repeat one
token at once, which would make the cached-vs-uncached comparison weak).
"""

import numpy as np
import pytest

from tinyllm_lab.config import ModelConfig
from tinyllm_lab.model import Model, random_weights
from tinyllm_lab.sampling import sample
from tinyllm_lab.session import Session

CONFIG = ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, hidden_dim=64, vocab_size=97,
                     max_seq_len=80)
PROMPT = [5, 17, 42, 3, 88, 1, 60, 23]


class CountingModel(Model):
    """The model, counting its forward passes (and the tokens fed) so a test can tell what ran."""

    def __init__(self, config, weights):
        super().__init__(config, weights)
        self.calls = []

    def forward(self, tokens, cache, maps=None):
        self.calls.append(len(tokens))
        return super().forward(tokens, cache, maps)


@pytest.fixture(scope="module")
def weights():
    return random_weights(CONFIG, np.random.default_rng(0), std=0.2)


@pytest.fixture
def model(weights):
    return CountingModel(CONFIG, weights)


SAMPLED = dict(temperature=1.0, top_k=20, top_p=0.95)


# ---------------------------------------------------------------------------------------------
# up-front checks

def test_overflow_is_refused_up_front(model):
    session = Session(model)
    session.generate(PROMPT, 5)
    pos, n_calls = session.cache.pos, len(model.calls)
    with pytest.raises(ValueError, match=r"prompt of 70 tokens \+ max_new_tokens 11 = 81 exceeds max_seq_len = 80"):
        session.stream([1] * 70, 11)  # raises on the call itself, before anything is iterated
    assert len(model.calls) == n_calls and session.cache.pos == pos  # no forward ran, the cache is as it was
    assert len(session.generate([1] * 70, 10)) == 10  # exactly full is fine


@pytest.mark.parametrize("prompt, max_new_tokens, settings, message", [
    ([], 5, {}, r"the prompt must be a non-empty list of token ids"),
    ([[1, 2]], 5, {}, r"the prompt must be a non-empty list of token ids"),
    ([1, 97], 5, {}, r"prompt token ids must be in 0\.\.96, got 1\.\.97"),
    ([-1, 3], 5, {}, r"prompt token ids must be in 0\.\.96, got -1\.\.3"),
    (PROMPT, -1, {}, r"max_new_tokens must be an integer >= 0, got -1"),
    (PROMPT, 5, dict(temperature=0.7), r"sampling with temperature > 0 needs rng="),
    (PROMPT, 5, dict(temperature=-1.0), r"temperature must be finite and >= 0"),
    (PROMPT, 5, dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
    (PROMPT, 5, dict(top_k=-2), r"top_k must be an integer >= 0"),
])
def test_bad_arguments_raise_before_any_forward(model, prompt, max_new_tokens, settings, message):
    with pytest.raises(ValueError, match=message):
        Session(model).stream(prompt, max_new_tokens, **settings)
    assert model.calls == []


@pytest.mark.parametrize("prompt, max_new_tokens, settings, message", [
    ([1.0, 2.0], 5, {}, r"the prompt must be a list of integer token ids, got float64"),
    (np.array([True, False]), 5, {}, r"the prompt must be a list of integer token ids, got bool"),
    ([1, None], 5, {}, r"the prompt must be a list of integer token ids, got object"),
    ("To be", 20, {}, r"prompt_ids must be token ids, got the text 'To be': encode it first, "
                      r"e\.g\. prompt_ids = tokenizer\.encode\(text\)"),
    (b"To be", 20, {}, r"prompt_ids must be token ids, got the text b'To be'"),
    (PROMPT, 2.5, {}, r"max_new_tokens must be an integer >= 0, got 2.5"),
    (PROMPT, True, {}, r"max_new_tokens must be an integer >= 0, got True"),
    (PROMPT, "20", {}, r"max_new_tokens must be an integer >= 0, got '20'"),
    (PROMPT, None, {}, r"max_new_tokens must be an integer >= 0, got None"),
    (PROMPT, 5, dict(temperature="0.7"), r"temperature must be a number \(0 means greedy\), got '0.7'"),
    (PROMPT, 5, dict(temperature=True), r"temperature must be a number"),
    (PROMPT, 5, dict(top_p=True), r"top_p must be a number in \(0, 1\]"),
    (PROMPT, 5, dict(top_k=5.0), r"top_k must be an integer >= 0.*got 5.0"),
    (PROMPT, 5, dict(rng=42, temperature=0.8), r"rng must be a np.random.Generator, e.g. np.random.default_rng\(42\)"),
    (PROMPT, 5, dict(rng=42), r"rng must be a np.random.Generator"),  # greedy too: 42 is a mistake either way
])
def test_arguments_of_the_wrong_type_raise_a_type_error_before_any_forward(model, prompt, max_new_tokens, settings,
                                                                            message):
    session = Session(model)
    session.generate(PROMPT, 3)
    pos, generation, n_calls = session.cache.pos, session.generation, len(model.calls)
    with pytest.raises(TypeError, match=message):
        session.stream(prompt, max_new_tokens, **settings)  # on the call itself, not on the first next()
    with pytest.raises(TypeError, match=message):
        session.generate(prompt, max_new_tokens, **settings)
    # nothing ran and nothing changed: the cache and the generation count are as they were
    assert len(model.calls) == n_calls and session.cache.pos == pos and session.generation == generation


@pytest.mark.parametrize("eos_id", [5.5, 5.0, True, "2", [2]])
def test_eos_id_must_be_an_integer(model, eos_id):
    # eos_id=5.5 used to be accepted, and the session then never stopped
    with pytest.raises(TypeError, match=r"eos_id must be an integer token id or None, got "):
        Session(model, eos_id=eos_id)


def test_eos_id_may_be_a_numpy_integer(model):
    first = Session(model).generate(PROMPT, 3)
    assert Session(model, eos_id=np.int64(first[0])).generate(PROMPT, 3) == first[:1]


@pytest.mark.parametrize("not_a_model", [None, "model", CONFIG])
def test_session_refuses_something_that_is_not_a_model(not_a_model):
    with pytest.raises(TypeError, match="model must be a Model .*got "):
        Session(not_a_model)


def test_session_defaults_to_greedy(model):
    # no rng, no settings: temperature 0, the argmax at every step, the same ids every time
    ids = Session(model).generate(PROMPT, 6)
    assert ids == Session(model).generate(PROMPT, 6, rng=None, temperature=0.0, top_k=0, top_p=1.0)
    logits = model.forward(PROMPT, model.new_cache())[-1]
    assert ids[0] == int(np.argmax(logits))


@pytest.mark.parametrize("eos_id", [-1, 97])
def test_eos_id_must_be_in_the_vocabulary(model, eos_id):
    with pytest.raises(ValueError, match=rf"eos_id {eos_id} is outside the vocabulary 0\.\.96"):
        Session(model, eos_id=eos_id)


# ---------------------------------------------------------------------------------------------
# the loop

@pytest.mark.parametrize("n", [0, 1, 2, 7])
def test_max_new_tokens_and_the_forward_passes(model, n):
    ids = Session(model).generate(PROMPT, n)
    assert len(ids) == n and all(isinstance(t, int) and 0 <= t < CONFIG.vocab_size for t in ids)
    # one prefill of the whole prompt, then one token per step; the last token is never fed back
    assert model.calls == ([] if n == 0 else [len(PROMPT)] + [1] * (n - 1))


def test_stream_yields_as_it_goes(model):
    stream = Session(model).stream(PROMPT, 10)
    assert model.calls == []  # nothing runs until the first token is asked for
    first = next(stream)
    assert model.calls == [len(PROMPT)]
    assert [first] + list(stream) == Session(model).generate(PROMPT, 10)


@pytest.mark.parametrize("k", [0, 3, 9])
def test_eos_stops_and_is_yielded(model, k):
    free = Session(model).generate(PROMPT, 12)  # no EOS
    eos = free[k]
    expected = free[:free.index(eos) + 1]  # up to its first appearance
    ids = Session(model, eos_id=eos).generate(PROMPT, 12)
    assert ids == expected and ids[-1] == eos and len(ids) <= k + 1


def test_eos_stops_a_sampled_stream(model):
    free = Session(model).generate(PROMPT, 30, np.random.default_rng(5), **SAMPLED)
    eos = free[20]
    ids = Session(model, eos_id=eos).generate(PROMPT, 30, np.random.default_rng(5), **SAMPLED)
    assert ids == free[:free.index(eos) + 1]


@pytest.mark.parametrize("settings", [{}, SAMPLED], ids=["greedy", "sampled"])
def test_second_call_equals_a_fresh_session(model, settings):
    session = Session(model)
    first = session.generate(PROMPT, 20, np.random.default_rng(1), **settings)
    session.generate([9, 9, 9], 15, np.random.default_rng(2), **settings)  # something else in between
    abandoned = session.stream(PROMPT[:3], 20, np.random.default_rng(3), **settings)
    next(abandoned), next(abandoned)  # a stream left half-way
    second = session.generate(PROMPT, 20, np.random.default_rng(1), **settings)
    fresh = Session(model).generate(PROMPT, 20, np.random.default_rng(1), **settings)
    assert first == second == fresh


def test_a_stale_stream_raises_instead_of_resuming(model):
    session = Session(model)
    old = session.stream(PROMPT, 10)
    next(old), next(old)
    session.generate([9, 9, 9], 5)  # a newer generation resets and refills the cache the old stream used
    calls = len(model.calls)
    with pytest.raises(RuntimeError, match=r"this stream is stale: it is generation 1 of its Session, "
                                           r"but generation 2 has started since"):
        next(old)
    assert len(model.calls) == calls  # it ran nothing


def test_a_stale_unstarted_stream_cannot_reset_the_current_one(model):
    session = Session(model)
    unstarted = session.stream(PROMPT, 10)  # nothing has run yet
    current = session.stream(PROMPT[:4], 10)
    first = next(current)
    with pytest.raises(RuntimeError, match=r"generation 1 .* generation 2 has started since"):
        next(unstarted)  # would reset the cache under `current`
    assert [first] + list(current) == Session(model).generate(PROMPT[:4], 10)  # the current one is unaffected


def test_seeded_sampling_is_reproducible(model):
    run = lambda seed: Session(model).generate(PROMPT, 25, np.random.default_rng(seed), **SAMPLED)
    assert run(0) == run(0)
    assert run(0) != run(1)


# ---------------------------------------------------------------------------------------------
# cached vs uncached

def generate_uncached(model, prompt, n, rng=None, temperature=0.0, top_k=0, top_p=1.0):
    """The reference loop without a cache: every step re-runs forward on the whole sequence, with a new cache."""
    ids = list(prompt)
    for _ in range(n):
        ids.append(sample(model.forward(ids, model.new_cache())[-1], rng, temperature, top_k, top_p))
    return ids[len(prompt):]


@pytest.mark.parametrize("settings", [{}, SAMPLED], ids=["greedy", "sampled"])
def test_cached_and_uncached_generation_give_identical_ids(model, settings):
    cached = Session(model).generate(PROMPT, 32, np.random.default_rng(0), **settings)
    uncached = generate_uncached(model, PROMPT, 32, np.random.default_rng(0), **settings)
    assert len(cached) == 32 and cached == uncached
    assert len(set(cached)) >= 4  # the sequence is not one token repeated: the comparison means something


def test_a_huge_token_id_is_out_of_the_vocabulary_not_a_type_error(model):
    # [2**70] becomes an object array: it used to be reported as "not integer token ids"
    with pytest.raises(ValueError, match=r"prompt token ids must be in 0\.\.96, got 1180591620717411303424"):
        Session(model).stream([2**70], 3)
    assert model.calls == []
