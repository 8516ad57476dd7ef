# Promoted from notebooks/day5_model_session.ipynb by `python -m tinyllm_lab.promote`.
# Do not edit here: edit the notebook's `#| promote: session` cells and promote again.

"""Day 5 the generation session: prefill the prompt, then decode one token at a time."""

import numpy as np

from tinyllm_lab.sampling import check_sampling, sample


class Session:
    """Generates text from a `Model`, owning one KV cache that every generation starts by clearing."""

    def __init__(self, model, eos_id=None):
        self.model, self.eos_id = model, eos_id
        self.cache = model.new_cache()

    def stream(self, prompt_ids, max_new_tokens, rng=None, temperature=0.0, top_k=0, top_p=1.0):
        """Yield up to `max_new_tokens` new token ids, one at a time; stops after EOS (which it yields).

        The prompt and every new token must fit in the context: `len(prompt_ids) + max_new_tokens`
        greater than `max_seq_len` is refused before any work is done. `rng` is a seeded
        `np.random.Generator` (needed unless temperature is 0).
        """
        prompt = np.asarray(prompt_ids, dtype=np.int64)
        limit = self.model.config.max_seq_len
        if prompt.ndim != 1 or prompt.size == 0:
            raise ValueError(f"the prompt must be a non-empty list of token ids, got shape {prompt.shape}")
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if prompt.size + max_new_tokens > limit:
            raise ValueError(f"prompt of {prompt.size} tokens + max_new_tokens {max_new_tokens} = "
                             f"{prompt.size + max_new_tokens} exceeds max_seq_len = {limit}")
        check_sampling(temperature, top_k, top_p)
        if temperature > 0 and rng is None:
            raise ValueError("sampling with temperature > 0 needs rng=np.random.default_rng(seed)")
        return self._decode(prompt, max_new_tokens, rng, temperature, top_k, top_p)

    def _decode(self, prompt, max_new_tokens, rng, temperature, top_k, top_p):
        self.cache.reset()                                   # a new generation never sees an old one
        logits = self.model.forward(prompt, self.cache)[-1]  # prefill: the whole prompt at once
        for n in range(max_new_tokens):
            token = sample(logits, rng, temperature, top_k, top_p)
            yield token
            if token == self.eos_id or n == max_new_tokens - 1:
                return
            logits = self.model.forward(np.array([token]), self.cache)[-1]  # decode: one token

    def generate(self, prompt_ids, max_new_tokens, rng=None, temperature=0.0, top_k=0, top_p=1.0):
        """The list of new token ids (see `stream`)."""
        return list(self.stream(prompt_ids, max_new_tokens, rng, temperature, top_k, top_p))
