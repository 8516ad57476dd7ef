# Promoted from notebooks/day5_model_session.ipynb by `python -m tinyllm_lab.promote`.
# Do not edit here: edit the notebook's `#| promote: session` cells and promote again.

"""Day 5 the generation session: prefill the prompt, then decode one token at a time.

Defaults to greedy decoding (temperature 0, no top-k, no top-p): the same ids every time. The
command line (`python -m tinyllm_lab`) samples instead, with temperature 0.8 and top-p 0.95.
"""

import numpy as np

from tinyllm_lab.sampling import check_rng, check_sampling, sample


def _check_model_and_eos(model, eos_id):  # raise unless `model` is a Model and eos_id an id in its vocabulary or None
    if not all(hasattr(model, name) for name in ("config", "forward", "new_cache")):
        raise TypeError(f"model must be a Model (with config, forward, new_cache), got {type(model).__name__}")
    if eos_id is not None and (isinstance(eos_id, bool) or not isinstance(eos_id, (int, np.integer))):
        raise TypeError(f"eos_id must be an integer token id or None, got {eos_id!r}")
    if eos_id is not None and not 0 <= eos_id < model.config.vocab_size:
        raise ValueError(f"eos_id {eos_id} is outside the vocabulary 0..{model.config.vocab_size - 1}")


def _checked_stream_args(config, prompt_ids, max_new_tokens, rng, temperature, top_k, top_p):  # -> prompt [T] ints
    if isinstance(prompt_ids, (str, bytes)):
        raise TypeError(f"prompt_ids must be token ids, got the text {prompt_ids[:40]!r}: encode it first, "
                        f"e.g. prompt_ids = tokenizer.encode(text)")
    prompt = np.asarray(prompt_ids)
    vocab, limit = config.vocab_size, config.max_seq_len
    if prompt.dtype == object and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt.flat):
        raise ValueError(f"prompt token ids must be in 0..{vocab - 1}, got {min(prompt.flat)}..{max(prompt.flat)}")
    if prompt.size and not np.issubdtype(prompt.dtype, np.integer):  # floats, bools, objects: not ids
        raise TypeError(f"the prompt must be a list of integer token ids, got {prompt.dtype} {prompt.shape}")
    if prompt.ndim != 1 or prompt.size == 0:
        raise ValueError(f"the prompt must be a non-empty list of token ids, got {prompt.dtype} {prompt.shape}")
    if prompt.min() < 0 or prompt.max() >= vocab:
        raise ValueError(f"prompt token ids must be in 0..{vocab - 1}, got {prompt.min()}..{prompt.max()}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)):
        raise TypeError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if prompt.size + max_new_tokens > limit:
        raise ValueError(f"prompt of {prompt.size} tokens + max_new_tokens {max_new_tokens} = "
                         f"{prompt.size + max_new_tokens} exceeds max_seq_len = {limit}")
    check_sampling(temperature, top_k, top_p)
    check_rng(rng, temperature)
    return prompt


def _check_current(generation, latest):  # RuntimeError unless a stream of `generation` may still use the cache
    if generation != latest:
        raise RuntimeError(f"this stream is stale: it is generation {generation} of its Session, but generation "
                           f"{latest} has started since and owns the KV cache now (resuming would run "
                           f"on the other text's keys and values); a Session runs one generation at a time: "
                           f"use one Session per stream to interleave them")


class Session:
    """Generates from a `Model`, with one KV cache that every generation starts by clearing.

    One generation at a time: starting a new one makes an unfinished `stream` stale (it raises if resumed).
    Greedy by default: `stream`/`generate` use temperature=0.0, top_k=0, top_p=1.0 unless told otherwise
    (the command line's defaults are temperature 0.8, top-p 0.95). `eos_id`: an integer id in the
    vocabulary, or None (never stop early); TypeError / ValueError otherwise.
    """

    def __init__(self, model, eos_id=None):
        _check_model_and_eos(model, eos_id)  # TypeError / ValueError
        self.model, self.eos_id, self.cache = model, eos_id, model.new_cache()
        self.generation = 0  # number of the latest `stream`: only that one may use the cache

    def stream(self, prompt_ids, max_new_tokens, rng=None, temperature=0.0, top_k=0, top_p=1.0):
        """Yield up to `max_new_tokens` new token ids, one at a time; stops after EOS (which it yields).

        Every argument is checked here, before any forward pass: `len(prompt_ids) + max_new_tokens`
        greater than `max_seq_len` is refused. `rng` is a seeded `np.random.Generator` (needed
        unless temperature is 0, greedy); see `sample` for temperature, top_k, top_p. The defaults
        are greedy. TypeError for arguments of the wrong type (text instead of ids: encode it first),
        ValueError for values out of range.
        """
        prompt = _checked_stream_args(self.model.config, prompt_ids, max_new_tokens, rng, temperature, top_k, top_p)
        self.generation += 1  # from now on, older streams are stale
        return self._decode(self.generation, prompt, max_new_tokens, rng, temperature, top_k, top_p)

    def _decode(self, generation, prompt, max_new_tokens, rng, temperature, top_k, top_p):  # the generator behind `stream`
        _check_current(generation, self.generation)          # before touching the cache (a stream may start late)
        self.cache.reset()                                   # a new generation never sees an old one
        if max_new_tokens == 0:
            return
        logits = self.model.forward(prompt, self.cache)[-1]  # prefill: the whole prompt at once, [V]
        for n in range(max_new_tokens):
            token = sample(logits, rng, temperature, top_k, top_p)
            yield token
            if token == self.eos_id or n == max_new_tokens - 1:
                return                                       # the last token is never fed back
            _check_current(generation, self.generation)      # resumed: is the cache still ours?
            logits = self.model.forward([token], self.cache)[-1]  # decode: one token, [V]

    def generate(self, prompt_ids, max_new_tokens, rng=None, temperature=0.0, top_k=0, top_p=1.0):
        """The list of new token ids (see `stream`)."""
        return list(self.stream(prompt_ids, max_new_tokens, rng, temperature, top_k, top_p))
