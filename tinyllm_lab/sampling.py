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


def _most_probable(probs, n):  # [V] -> [n'] ids, n <= n' <= V
    """The first n' >= n ids of `np.argsort(-probs, kind="stable")` (most probable first, ties in id order),
    without sorting all V: `np.partition` finds the n-th largest value, and only the ids at or above it
    (its ties included, so the order is exactly the full sort's) are sorted. `[.1, .4, .2, .3]`, n=2 -> `[1, 3]`.
    """
    if n >= probs.size:
        return np.argsort(-probs, kind="stable")
    nth_largest = np.partition(probs, probs.size - n)[probs.size - n]
    candidates = np.flatnonzero(probs >= nth_largest)  # in id order: a stable sort keeps ties that way
    return candidates[np.argsort(-probs[candidates], kind="stable")]


def _first_reaching(values, target, side="left", block=512):  # [n], float -> int in 0..n
    """`np.searchsorted(np.cumsum(values), target, side)`: the first i whose running sum `values[:i + 1].sum()`
    reaches target (side "left": >= target, "right": > target), n if none. `[.5, .25, .125, .125]`, 0.7 -> 1.

    np.cumsum is a sequential loop (about 3 ns a value, as long as sorting them), so it runs over the first
    `block` values only, where most searches end (a nucleus is usually short). Beyond them, the sums of whole
    blocks (vectorised) find the block where the running sum reaches target, and only that block is added up
    one value at a time. Same running sums up to rounding (~1e-16 of the total).
    """
    running = values[:block].cumsum()
    i = int(running.searchsorted(target, side))
    if i < running.size or values.size <= block:  # reached in the first block, or there is no other
        return i
    starts = np.arange(block, values.size, block)
    ends = np.add.reduceat(values, starts).cumsum() + running[-1]  # the running sum at the end of each block
    j = int(ends.searchsorted(target, side))                        # the block where it reaches target
    if j == ends.size:
        return values.size
    running = values[starts[j]:starts[j] + block].cumsum() + (ends[j - 1] if j > 0 else running[-1])
    return int(starts[j] + running.searchsorted(target, side))


def _nucleus(probs, p, total, largest):  # [V], p, probs.sum(), probs.max() -> ids [n] in id order, their probs [n]
    """The ids top-p keeps: the most probable first until their mass reaches p of the total (on a tie at the
    cut, the lower ids first), exactly the head of `np.argsort(-probs, kind="stable")` that a full sort keeps.

    When the most probable token alone reaches p of the total (a confident model), it is the nucleus: no search.
    Otherwise it sorts only the values that can be in it: the tokens under (1 - p) / V of the total hold less
    than 1 - p of the mass together, so the nucleus lies among the others. And it sorts values (`a.sort()`), not
    ids: the cumulative mass of the sorted values is the same whatever order ties take, and the cut is a value.
    """
    p, total = float(p), float(total)  # Python floats: a numpy scalar costs more per operation
    if largest >= p * total:           # the first n whose mass reaches p is 1
        i = int(probs.argmax())        # the first of the largest: the lowest id on ties
        return np.array([i]), probs[i:i + 1]
    ids = (probs >= (1 - p) * total / probs.size).nonzero()[0]  # the candidates, in id order
    values = probs[ids]
    head = values.copy()
    head.sort()
    head = head[::-1]                                          # their probabilities, largest first
    n_keep = _first_reaching(head, p * total) + 1              # the first n whose mass reaches p
    if n_keep > head.size:  # possible only by rounding: every id is a candidate
        ids, values = np.arange(probs.size), probs
        head = np.sort(probs)[::-1]
        n_keep = min(_first_reaching(head, p * total) + 1, head.size)
    keep = (values >= head[n_keep - 1]).nonzero()[0]           # down to the cut, its ties included
    if keep.size > n_keep:  # too many ties at the cut: drop the higher ids
        at_cut = np.flatnonzero(values[keep] == head[n_keep - 1])
        keep = np.delete(keep, at_cut[at_cut.size - (keep.size - n_keep):])
    return ids[keep], values[keep]


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
    keep = _most_probable(probs, k)[:k]  # a partition, not a sort of all V
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
    keep, kept = _nucleus(probs, p, probs.sum(), probs.max())
    out = np.zeros_like(probs)
    out[keep] = kept
    return out


def _checked_logits(logits):  # [V] -> [V] float32, its largest value (a Python float); raise unless a token is possible
    logits = as_float32(logits, "logits")
    if logits.ndim != 1 or logits.size == 0:
        raise ValueError(f"logits must be a non-empty [V] vector, got shape {logits.shape}")
    largest = float(logits.max())  # one pass: nan if any is nan, +inf if any is +inf, -inf if all are -inf
    if not largest < np.inf:  # nan or +inf; -inf is allowed (probability 0)
        bad = np.flatnonzero(~(logits < np.inf))
        raise ValueError(f"logits contain nan or +inf at ids {bad[:10].tolist()}: they define no distribution")
    if largest == -np.inf:  # greedy would silently answer 0
        raise ValueError("logits are all -inf: every token has probability 0, so there is no next token")
    return logits, largest


def _kept(logits, largest, temperature, top_k, top_p):  # [V] float32, its max, settings (temperature > 0)
    """-> ids [n], weights [n]: the ids sampling may draw (in id order) and their softmax numerators
    exp((logit - largest) / temperature), in float64. Not divided by the softmax's sum: top-k and top-p measure
    mass relative to the total, and the caller renormalises what is kept. Only the work the settings ask for
    (no top-k: no partition; no top-p: no sort). It runs once per generated token, so its scalars are Python
    floats, and `np.errstate` (slow to enter) guards only the temperatures for which an overflow is possible."""
    inverse = 1.0 / float(temperature)  # 1 / 5e-324 is inf, not an error
    if not (inverse < np.inf and largest * inverse < np.inf):  # no softmax of logits / temperature in float64
        raise ValueError(f"temperature {temperature} is too small for these logits: logits / temperature "
                         f"overflows float64 (largest |logit| {np.abs(logits[logits > -np.inf]).max():.3g}); "
                         f"use temperature=0 for greedy decoding")
    scaled = logits.astype(np.float64)  # softmax in float64 (day 1's softmax computes in float32)
    scaled -= largest                   # max first: every weight is at most 1, the largest exp(0) = 1
    if inverse < 1e250:                 # |logit - largest| <= 6.8e38 in float32: the product stays finite
        scaled *= inverse               # (logits - largest) / temperature
    else:                               # a tiny temperature: far-below logits overflow to -inf, weight 0
        with np.errstate(over="ignore"):
            scaled *= inverse
    weights = np.exp(scaled, out=scaled)
    if 0 < top_k < weights.size:
        ids = _most_probable(weights, top_k)[:top_k]           # most probable first: weight 1 among them
        if top_p < 1:                                          # top-p measured on what top-k kept
            ids = ids[_nucleus(weights[ids], top_p, weights[ids].sum(), 1.0)[0]]
        ids = np.sort(ids)
    elif top_p < 1:                                            # in id order; all above (1 - p) / V of the total: none is 0
        return _nucleus(weights, top_p, weights.sum(), 1.0)
    else:
        ids = np.arange(weights.size)
    kept = weights[ids]
    nonzero = kept > 0  # an exp may underflow to 0: never drawn
    return (ids, kept) if nonzero.all() else (ids[nonzero], kept[nonzero])


def next_token_probs(logits, temperature=1.0, top_k=0, top_p=1.0):  # [V] -> [V] float64
    """The distribution `sample` draws from: softmax(logits / temperature), then top-k, then top-p, renormalised.

    In float64, so that tiny probabilities keep their digits and the cumulative sum reaches 1.
    temperature 0 is the limit: probability 1 on the argmax (the lowest id on ties). Logits are read
    as float32 (`as_float32`: any real dtype); nan or +inf logits, or all -inf (no token possible,
    even greedy), raise ValueError.
    """
    check_sampling(temperature, top_k, top_p)
    logits, largest = _checked_logits(logits)
    probs = np.zeros(logits.size)
    if temperature == 0:
        probs[logits.argmax()] = 1.0  # argmax returns the first maximum
        return probs
    ids, kept = _kept(logits, largest, temperature, top_k, top_p)
    probs[ids] = kept / kept.sum()  # renormalised, in float64
    return probs


def sample(logits, rng, temperature=1.0, top_k=0, top_p=1.0):  # [V] -> int
    """Draw the next token id from `logits` with the seeded generator `rng` (unused, may be None, when greedy).

    Inverse CDF: the first kept token whose cumulative probability (summed in id order) exceeds
    u ~ U[0, 1). Greedy is the argmax of the logits themselves (no softmax). Errors: see `check_sampling`, `check_rng` and `next_token_probs`.
    """
    check_sampling(temperature, top_k, top_p)
    check_rng(rng, temperature)
    logits, largest = _checked_logits(logits)
    if temperature == 0:
        return int(logits.argmax())  # greedy: no softmax, no draw; the lowest id on ties
    kept_ids, kept = _kept(logits, largest, temperature, top_k, top_p)  # what top-k / top-p left (and did not underflow)
    u = rng.random()
    if not 0 <= u < 1:  # also false for nan: a broken generator would always give the last kept token
        raise ValueError(f"rng.random() returned {u!r}, expected a number in [0, 1): use np.random.default_rng(seed)")
    if kept.size == 1:  # a confident model: no running sum to search (u was drawn all the same)
        return int(kept_ids[0])
    i = _first_reaching(kept, u * float(kept.sum()), side="right")  # renormalised: u of the kept mass, in float64
    return int(kept_ids[min(i, kept_ids.size - 1)])
