# Promoted from notebooks/day5_model_session.ipynb by `python -m tinyllm_lab.promote`.
# Do not edit here: edit the notebook's `#| promote: sampling` cells and promote again.

"""Day 5 sampling: turning the next-token logits into one token id.

Greedy (temperature 0), temperature, top-k and top-p (nucleus), drawn with a
`numpy.random.Generator` that the caller seeds, so that runs are reproducible.

dtypes: logits of any real dtype are read as float32 (day 1's `as_float32`, like every
primitive), and the probabilities are then worked out in float64 on purpose, so that tiny ones
keep their digits and the cumulative sum reaches 1: `next_token_probs` returns float64.
Settings of the wrong type (a string temperature, a bool top_k, an rng that is not a Generator)
raise TypeError naming the argument; values that define no distribution raise ValueError.
"""

import numpy as np

from tinyllm_lab.ops import as_float32


def _is_number(value):  # a real number: Python or numpy int or float, not a bool
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))


def check_sampling(temperature, top_k, top_p):
    """Raise unless the settings define a distribution: 0 <= temperature < inf, integer top_k >= 0, 0 < top_p <= 1.

    TypeError when one is not a number (top_k: not an integer; bool is neither), ValueError when out of range.
    """
    if not _is_number(temperature):
        raise TypeError(f"temperature must be a number (0 means greedy), got {temperature!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
        raise TypeError(f"top_k must be an integer >= 0 (0 means no limit), got {top_k!r}")
    if not _is_number(top_p):
        raise TypeError(f"top_p must be a number in (0, 1] (1 means no limit), got {top_p!r}")
    if not 0 <= temperature < np.inf:  # also false for nan
        raise ValueError(f"temperature must be finite and >= 0 (0 means greedy), got {temperature}")
    if top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 means no limit), got {top_k!r}")
    if not 0 < top_p <= 1:  # also false for nan
        raise ValueError(f"top_p must be in (0, 1] (1 means no limit), got {top_p}")


def check_rng(rng, temperature):
    """Raise unless `rng` can serve these settings: a `np.random.Generator`, or None when greedy (temperature 0).

    Anything with a `random()` method that returns u ~ U[0, 1) is taken as a generator. TypeError for
    anything else (a seed such as 42: pass np.random.default_rng(42)); ValueError for None with temperature > 0.
    """
    if rng is None:
        if temperature > 0:
            raise ValueError("sampling with temperature > 0 needs rng=np.random.default_rng(seed)")
    elif not callable(getattr(rng, "random", None)):
        raise TypeError(f"rng must be a np.random.Generator, e.g. np.random.default_rng({rng!r}) for a seed, "
                        f"or None when greedy; got {type(rng).__name__} {rng!r}")


def _check_probs(probs, func):  # [V] -> [V] array, same dtype; raise unless a distribution up to scale
    probs = np.asarray(probs)
    if probs.dtype.kind not in "fiu":
        raise TypeError(f"{func}: probs must hold real numbers, got dtype {probs.dtype}")
    if probs.ndim != 1 or probs.size == 0:
        raise ValueError(f"{func}: probs must be a non-empty [V] vector, got shape {probs.shape}")
    if not (np.isfinite(probs).all() and (probs >= 0).all() and probs.sum() > 0):
        raise ValueError(f"{func}: probs must be finite and >= 0 with a positive sum (a distribution up to scale)")
    return probs


def top_k_filter(probs, k):  # [V] -> [V]
    """Zero all but the k most probable tokens (ties: the lower id first). k = 0 keeps all.

    `[.1, .4, .2, .3]`, k=2 -> `[0, .4, 0, .3]`. TypeError / ValueError for probs that are not a
    distribution (up to scale) or k that is not an integer >= 0.
    """
    probs = _check_probs(probs, "top_k_filter")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"top_k_filter: k must be an integer >= 0 (0 keeps all), got {k!r}")
    if k < 0:  # probs[argsort][:-1] would silently drop the least probable token instead
        raise ValueError(f"top_k_filter: k must be an integer >= 0 (0 keeps all), got {k}")
    if k == 0 or k >= probs.size:
        return probs
    keep = np.argsort(-probs, kind="stable")[:k]  # stable: equal probabilities stay in id order
    out = np.zeros_like(probs)
    out[keep] = probs[keep]
    return out


def top_p_filter(probs, p):  # [V] -> [V]
    """Keep the smallest set of most probable tokens whose mass reaches p of the total (at least one token).

    `[.125, .5, .25, .125]`, p=0.6 -> `[0, .5, .25, 0]`: .5 alone falls short, .5 + .25 reaches 0.6.
    TypeError / ValueError for probs that are not a distribution (up to scale) or p outside (0, 1].
    """
    probs = _check_probs(probs, "top_p_filter")
    if not _is_number(p):
        raise TypeError(f"top_p_filter: p must be a number in (0, 1], got {p!r}")
    if not 0 < p <= 1:  # also false for nan
        raise ValueError(f"top_p_filter: p must be in (0, 1] (1 keeps all), got {p}")
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
    temperature 0 is the limit: probability 1 on the argmax (the lowest id on ties). Logits are read
    as float32 (`as_float32`: any real dtype); nan or +inf logits, or all -inf (no token possible,
    even greedy), raise ValueError.
    """
    check_sampling(temperature, top_k, top_p)
    logits = as_float32(logits, "logits").astype(np.float64)
    if logits.ndim != 1 or logits.size == 0:
        raise ValueError(f"logits must be a non-empty [V] vector, got shape {logits.shape}")
    bad = np.flatnonzero(~(logits < np.inf))  # nan or +inf; -inf is allowed (probability 0)
    if bad.size:
        raise ValueError(f"logits contain nan or +inf at ids {bad[:10].tolist()}: they define no distribution")
    if not (logits > -np.inf).any():  # greedy would silently answer 0
        raise ValueError("logits are all -inf: every token has probability 0, so there is no next token")
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
    e = np.exp(scaled - scaled.max())  # softmax in float64 (day 1's softmax computes in float32): max first, no overflow
    probs = top_p_filter(top_k_filter(e / e.sum(), top_k), top_p)
    return probs / probs.sum()


def sample(logits, rng, temperature=1.0, top_k=0, top_p=1.0):  # [V] -> int
    """Draw the next token id from `logits` with the seeded generator `rng` (unused, may be None, when greedy).

    Inverse CDF: the first kept token whose cumulative probability exceeds u ~ U[0, 1).
    Errors: see `check_sampling`, `check_rng` and `next_token_probs`.
    """
    check_sampling(temperature, top_k, top_p)
    check_rng(rng, temperature)
    probs = next_token_probs(logits, temperature, top_k, top_p)
    if temperature == 0:
        return int(np.argmax(probs))  # greedy: no draw
    kept = np.flatnonzero(probs)      # the ids top-k / top-p left (and that did not underflow)
    cdf = np.cumsum(probs[kept])      # ends at 1 up to rounding
    u = rng.random()
    if not 0 <= u < 1:  # also false for nan: a broken generator would always give the last kept token
        raise ValueError(f"rng.random() returned {u!r}, expected a number in [0, 1): use np.random.default_rng(seed)")
    i = np.searchsorted(cdf, u * cdf[-1], side="right")
    return int(kept[min(i, kept.size - 1)])
