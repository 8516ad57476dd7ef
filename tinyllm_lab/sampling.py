# Promoted from notebooks/day5_model_session.ipynb by `python -m tinyllm_lab.promote`.
# Do not edit here: edit the notebook's `#| promote: sampling` cells and promote again.

"""Day 5 sampling: turning the next-token logits into one token id.

Greedy (temperature 0), temperature, top-k and top-p (nucleus), in float64, drawn with a
`numpy.random.Generator` that the caller seeds, so that runs are reproducible.
"""

import numpy as np

from tinyllm_lab.ops import softmax


def check_sampling(temperature, top_k, top_p):
    """Raise ValueError for settings that define no distribution."""
    if not temperature >= 0:  # also catches nan
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if isinstance(top_k, bool) or int(top_k) != top_k or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 means no limit), got {top_k}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (1 means no limit), got {top_p}")


def top_k_filter(probs, k):  # [V] -> [V]
    """Zero all but the k most probable tokens (ties: the lower id first). k = 0 keeps all."""
    if k == 0 or k >= probs.size:
        return probs
    keep = np.argsort(-probs, kind="stable")[:k]
    out = np.zeros_like(probs)
    out[keep] = probs[keep]
    return out


def top_p_filter(probs, p):  # [V] -> [V]
    """Keep the smallest set of most probable tokens whose total probability reaches p (at least one)."""
    if p >= 1.0:
        return probs
    order = np.argsort(-probs, kind="stable")
    total = np.cumsum(probs[order])
    n_keep = min(int(np.searchsorted(total, p * total[-1])) + 1, probs.size)  # first prefix with sum >= p
    out = np.zeros_like(probs)
    out[order[:n_keep]] = probs[order[:n_keep]]
    return out


def sample(logits, rng, temperature=1.0, top_k=0, top_p=1.0):  # [V] -> int
    """Draw the next token id from `logits`.

    temperature 0 is greedy: the argmax, and on ties the lowest id. Otherwise
    softmax(logits / temperature) in float64, then top-k, then top-p, renormalised, and one
    draw by inverse CDF with `rng.random()`.
    """
    check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return int(np.argmax(logits))  # np.argmax returns the first maximum
    probs = softmax(logits.astype(np.float64) / temperature)
    probs = top_p_filter(top_k_filter(probs, int(top_k)), top_p)
    cdf = np.cumsum(probs / probs.sum())
    return int(min(np.searchsorted(cdf, rng.random(), side="right"), probs.size - 1))
