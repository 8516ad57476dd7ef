# Promoted from notebooks/day5_model_session.ipynb by `python -m tinyllm_lab.promote`.
# Do not edit here: edit the notebook's `#| promote: sampling` cells and promote again.

"""Day 5 sampling: turning the next-token logits into one token id.

Greedy (temperature 0), temperature, top-k and top-p (nucleus), in float64, drawn with a
`numpy.random.Generator` that the caller seeds, so that runs are reproducible.
"""

import numpy as np

from tinyllm_lab.ops import softmax


def check_sampling(temperature, top_k, top_p):
    """Raise ValueError unless the settings define a distribution: 0 <= temperature < inf, integer top_k >= 0, 0 < top_p <= 1."""
    if not 0 <= temperature < np.inf:  # also false for nan
        raise ValueError(f"temperature must be finite and >= 0 (0 means greedy), got {temperature}")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 means no limit), got {top_k!r}")
    if not 0 < top_p <= 1:  # also false for nan
        raise ValueError(f"top_p must be in (0, 1] (1 means no limit), got {top_p}")


def top_k_filter(probs, k):  # [V] -> [V]
    """Zero all but the k most probable tokens (ties: the lower id first). k = 0 keeps all.

    `[.1, .4, .2, .3]`, k=2 -> `[0, .4, 0, .3]`.
    """
    if k == 0 or k >= probs.size:
        return probs
    keep = np.argsort(-probs, kind="stable")[:k]  # stable: equal probabilities stay in id order
    out = np.zeros_like(probs)
    out[keep] = probs[keep]
    return out


def top_p_filter(probs, p):  # [V] -> [V]
    """Keep the smallest set of most probable tokens whose mass reaches p of the total (at least one token).

    `[.125, .5, .25, .125]`, p=0.6 -> `[0, .5, .25, 0]`: .5 alone falls short, .5 + .25 reaches 0.6.
    """
    if p >= 1.0:
        return probs
    order = np.argsort(-probs, kind="stable")
    mass = np.cumsum(probs[order])                      # mass of the n most probable, n = 1..V
    n_keep = min(int(np.searchsorted(mass, p * mass[-1])) + 1, probs.size)  # first n with mass >= p
    out = np.zeros_like(probs)
    out[order[:n_keep]] = probs[order[:n_keep]]
    return out


def next_token_probs(logits, temperature=1.0, top_k=0, top_p=1.0):  # [V] -> [V] float64
    """The distribution `sample` draws from: softmax(logits / temperature), then top-k, then top-p, renormalised.

    In float64, so that tiny probabilities keep their digits and the cumulative sum reaches 1.
    temperature 0 is the limit: probability 1 on the argmax (the lowest id on ties).
    """
    check_sampling(temperature, top_k, top_p)
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 1 or logits.size == 0:
        raise ValueError(f"logits must be a non-empty [V] vector, got shape {logits.shape}")
    bad = np.flatnonzero(~(logits < np.inf))  # nan or +inf; -inf is allowed (probability 0)
    if bad.size:
        raise ValueError(f"logits contain nan or +inf at ids {bad[:10].tolist()}: they define no distribution")
    if temperature == 0:
        probs = np.zeros_like(logits)
        probs[np.argmax(logits)] = 1.0  # np.argmax returns the first maximum
        return probs
    with np.errstate(over="ignore"):  # an overflow is reported just below, in words
        scaled = logits / temperature
    if not (scaled < np.inf).all():  # softmax would turn the inf into nan and the draw into a wrong token
        raise ValueError(f"temperature {temperature} is too small for these logits: logits / temperature overflows "
                         f"float64 (largest |logit| {np.abs(logits[logits > -np.inf]).max():.3g}); "
                         f"use temperature=0 for greedy decoding")
    probs = top_p_filter(top_k_filter(softmax(scaled), top_k), top_p)
    return probs / probs.sum()


def sample(logits, rng, temperature=1.0, top_k=0, top_p=1.0):  # [V] -> int
    """Draw the next token id from `logits` with the seeded generator `rng` (unused, may be None, when greedy).

    Inverse CDF: the first kept token whose cumulative probability exceeds u ~ U[0, 1).
    """
    if temperature > 0 and rng is None:
        raise ValueError("sampling with temperature > 0 needs rng=np.random.default_rng(seed)")
    probs = next_token_probs(logits, temperature, top_k, top_p)
    if temperature == 0:
        return int(np.argmax(probs))  # greedy: no draw
    kept = np.flatnonzero(probs)      # the ids top-k / top-p left (and that did not underflow)
    cdf = np.cumsum(probs[kept])      # ends at 1 up to rounding
    i = np.searchsorted(cdf, rng.random() * cdf[-1], side="right")
    return int(kept[min(i, kept.size - 1)])
