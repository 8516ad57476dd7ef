"""Day 7's exercises and their catalogue of common mistakes: BPE training and encoding, the tokenizer, streaming.

The tokenizer's cases use a handful of merges written out by hand (ids 256..263: two spaces, "he",
" t", "the", " the", "at", " c", " cat") and no merge for the two bytes of "é", so that a
character is cut across two tokens and decoding token by token would show it.
"""

import codecs

from tinyllm_lab.lab.check import Case, Exercise, Mistake
from tinyllm_lab.lab.exercises_day1 import case_shown, shown
from tinyllm_lab.tokenizer import Tokenizer, apply_merges, merge

# --- pair_counts ------------------------------------------------------------------------------

def _counts(words):
    def run(impl):
        return dict(impl(dict(words)))
    return shown(run, f"words={words}; output: the counts as a dict")


def _pair_counts_unweighted(words):
    counts = {}
    for word in words:
        for pair in zip(word, word[1:]):
            counts[pair] = counts.get(pair, 0) + 1
    return counts


def _pair_counts_once_per_word(words):
    counts = {}
    for word, freq in words.items():
        for pair in set(zip(word, word[1:])):
            counts[pair] = counts.get(pair, 0) + freq
    return counts


def _pair_counts_across_words(words):
    ids = [i for word, freq in words.items() for _ in range(freq) for i in word]
    counts = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


PAIR_COUNTS = Exercise(7, "tokenizer", "pair_counts", cases=[
    case_shown("docstring: one word", _counts({(1, 2, 3, 1, 2): 1})),
    case_shown("words with frequencies", _counts({(1, 2): 3, (2, 1, 2): 2, (7,): 4}),
         note="each word's pairs count as often as the word occurs"),
    case_shown("a pair repeated inside a word", _counts({(5, 5, 5, 5): 1, (5, 6): 2})),
], mistakes=[
    Mistake("pair_counts.ignores_frequency",
            "each word counted once: a word that occurs f times adds f to each of its pairs (training counts each "
            "distinct pre-token once, with its frequency).",
            _pair_counts_unweighted),
    Mistake("pair_counts.once_per_word",
            "a pair that occurs twice in one word was counted once (a set of the word's pairs): count every "
            "adjacent occurrence.",
            _pair_counts_once_per_word),
    Mistake("pair_counts.across_words",
            "pairs were counted across word boundaries (the words joined into one sequence): merges never cross "
            "a pre-token boundary, so count the pairs inside each word.",
            _pair_counts_across_words),
])


# --- merge ------------------------------------------------------------------------------------

def _merge(word, pair, new_id):
    def run(impl):
        return impl(tuple(word), tuple(pair), new_id)
    return shown(run, f"word={word}, pair={pair}, new_id={new_id}")


def _merge_no_skip(word, pair, new_id):
    out = []
    for i in range(len(word)):
        out.append(new_id if i + 1 < len(word) and (word[i], word[i + 1]) == pair else word[i])
    return tuple(out)


def _merge_first_only(word, pair, new_id):
    for i in range(len(word) - 1):
        if (word[i], word[i + 1]) == pair:
            return word[:i] + (new_id,) + word[i + 2:]
    return word


def _merge_loses_last(word, pair, new_id):
    out, i = [], 0
    while i < len(word) - 1:
        if (word[i], word[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def _merge_as_text(word, pair, new_id):
    text = " ".join(map(str, word)).replace(f"{pair[0]} {pair[1]}", str(new_id))
    return tuple(int(t) for t in text.split())


MERGE = Exercise(7, "tokenizer", "merge", cases=[
    case_shown("docstring: two occurrences", _merge((1, 2, 3, 1, 2), (1, 2), 9)),
    case_shown("overlap: (1, 1, 1)", _merge((1, 1, 1), (1, 1), 9), note="overlaps go to the left: (9, 1)"),
    case_shown("overlap: (1, 1, 1, 1)", _merge((1, 1, 1, 1), (1, 1), 9)),
    case_shown("the pair at the end, an id left over", _merge((3, 1, 2, 4), (1, 2), 9)),
    case_shown("ids with more than one digit", _merge((11, 2, 3, 1, 2), (1, 2), 300)),
], mistakes=[
    Mistake("merge.no_skip_after_match",
            "after a merge the scan moved on by one id instead of two, so the pair's second id was kept (or merged "
            "again): skip both ids of a merged pair; overlaps go to the left, (1, 1, 1) with (1, 1) is (9, 1).",
            _merge_no_skip),
    Mistake("merge.first_only",
            "only the first occurrence was replaced: merge every occurrence of the pair, left to right.",
            _merge_first_only),
    Mistake("merge.loses_last_id",
            "the last id was lost: the loop stopped at len(word) - 1 and never appended a final id that is not "
            "part of a pair.",
            _merge_loses_last),
    Mistake("merge.as_text",
            "the pair was replaced in a string of the ids: '11 2' contains '1 2', so digits of other ids were "
            "merged. Compare ids, not text.",
            _merge_as_text),
])


# --- apply_merges -----------------------------------------------------------------------------

def _apply(ids, ranks):
    def run(impl):
        return impl(list(ids), dict(ranks))
    return shown(run, f"ids={ids}, ranks={ranks}")


def _apply_leftmost(ids, ranks):
    ids = tuple(ids)
    while True:
        pair = next((p for p in zip(ids, ids[1:]) if p in ranks), None)
        if pair is None:
            return list(ids)
        ids = merge(ids, pair, 256 + ranks[pair])


def _apply_highest_rank(ids, ranks):
    ids = tuple(ids)
    while True:
        known = [p for p in zip(ids, ids[1:]) if p in ranks]
        if not known:
            return list(ids)
        pair = max(known, key=lambda p: ranks[p])
        ids = merge(ids, pair, 256 + ranks[pair])


def _apply_rank_as_id(ids, ranks):
    ids = tuple(ids)
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, float("inf")))
        if pair not in ranks:
            break
        ids = merge(ids, pair, ranks[pair])
    return list(ids)


APPLY_MERGES = Exercise(7, "tokenizer", "apply_merges", cases=[
    case_shown("docstring", _apply([97, 97, 98, 97], {(97, 97): 0, (256, 98): 1})),
    case_shown("the lower rank first, though it comes later in the word", _apply([1, 2, 3], {(2, 3): 0, (1, 2): 1}),
         note="merges are replayed in the order they were learned, not left to right"),
    case_shown("a chain of merges", _apply([1, 2, 3, 1, 2], {(1, 2): 0, (256, 3): 1, (257, 256): 2})),
    case_shown("the earlier pair has the lower rank", _apply([5, 6, 7], {(5, 6): 0, (6, 7): 1})),
    case_shown("nothing to merge", _apply([4, 5, 4], {(5, 5): 0})),
], mistakes=[
    Mistake("apply_merges.leftmost_pair",
            "the first pair in the word that has a merge was merged, not the pair of lowest rank: apply the merges "
            "in the order they were learned (lowest rank r first), wherever they are in the word.",
            _apply_leftmost),
    Mistake("apply_merges.highest_rank",
            "the pair of highest rank was merged first: the lowest rank is the earliest merge, and it goes first.",
            _apply_highest_rank),
    Mistake("apply_merges.rank_as_id",
            "the merged pair became id r: merge r makes id 256 + r (ids 0..255 are the bytes).",
            _apply_rank_as_id),
])


# --- Tokenizer --------------------------------------------------------------------------------

# Merge r makes id 256 + r: "  ", "he", " t", "the", " the", "at", " c", " cat".
MERGES = [(32, 32), (104, 101), (32, 116), (116, 257), (258, 257), (97, 116), (32, 99), (262, 261)]
TEXT = "the cat  the hat, the"


def _tokenizer_encode(cls):
    tokenizer = cls(MERGES)
    return tokenizer.encode(TEXT), tokenizer.encode("the cat", bos=True, eos=True)


def _tokenizer_ids(cls):
    tokenizer = cls(MERGES)
    vocab = [tokenizer.vocab[i] for i in range(len(tokenizer.vocab))]  # vocab may be a list or a dict {id: bytes}
    return tokenizer.bos_id, tokenizer.eos_id, vocab


def _tokenizer_decode(cls):
    ids = Tokenizer(MERGES).encode("the café at the cat")
    return cls(MERGES).decode(ids)


def _tokenizer_decode_cut(cls):
    tokenizer = cls(MERGES)
    return tokenizer.decode([99, 195]), tokenizer.decode([tokenizer.bos_id, 104, 101, tokenizer.eos_id])


class _TokenizerDecodePerToken(Tokenizer):
    def decode(self, ids):
        return "".join(self.decode_bytes([i]).decode("utf-8", errors="replace") for i in ids)


class _TokenizerNoPretokenize(Tokenizer):
    def encode(self, text, bos=False, eos=False):
        ids = apply_merges(text.encode("utf-8"), self.ranks)
        return [self.bos_id] * bos + ids + [self.eos_id] * eos


class _TokenizerStrictDecode(Tokenizer):
    def decode(self, ids):
        return self.decode_bytes(ids).decode("utf-8")


TOKENIZER = Exercise(7, "tokenizer", "Tokenizer", cases=[
    Case("encode", _tokenizer_encode,
         inputs=f"Tokenizer({MERGES}); encode({TEXT!r}), encode('the cat', bos=True, eos=True)",
         note="pre-tokens first, then the merges inside each one"),
    Case("the vocabulary and the special ids", _tokenizer_ids,
         inputs="the same tokenizer: (bos_id, eos_id, vocab)"),
    Case("decode a character cut across two byte tokens", _tokenizer_decode,
         inputs="decode of the ids of 'the café at the cat' ('é' is two byte tokens, 195 and 169)"),
    Case("decode ids that cut a character, and BOS/EOS", _tokenizer_decode_cut,
         inputs="decode([99, 195]), decode([bos_id, 104, 101, eos_id])",
         note="bytes that are not valid UTF-8 become U+FFFD"),
], mistakes=[
    Mistake("Tokenizer.decode_per_token",
            "each token was decoded to text on its own, which splits a character whose bytes are in two tokens: "
            "concatenate the bytes of all the ids, then decode UTF-8 once.",
            _TokenizerDecodePerToken),
    Mistake("Tokenizer.no_pretokenize",
            "the merges ran over the whole text: cut it into pre-tokens first (`pretokenize`), and merge inside "
            "each one, so that no merge crosses a pre-token boundary.",
            _TokenizerNoPretokenize),
    Mistake("Tokenizer.strict_decode",
            "decode raised on ids that cut a character: bytes that are not valid UTF-8 become U+FFFD "
            "(`.decode('utf-8', errors='replace')`).",
            _TokenizerStrictDecode),
])


# --- StreamDecoder ----------------------------------------------------------------------------

def _stream(ids):
    def run(cls):
        decoder = cls(Tokenizer(MERGES))
        return [decoder.push(i) for i in ids] + [decoder.flush()]
    return run


class _StreamPerToken:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def push(self, token_id):
        return self.tokenizer.decode([token_id])

    def flush(self):
        return ""


class _StreamFlushDrops:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id):
        return self._utf8.decode(self.tokenizer.decode_bytes([token_id]))

    def flush(self):
        return ""


class _StreamHoldsInvalid:
    def __init__(self, tokenizer):
        self.tokenizer, self.held = tokenizer, b""

    def push(self, token_id):
        self.held += self.tokenizer.decode_bytes([token_id])
        try:
            text, self.held = self.held.decode("utf-8"), b""
            return text
        except UnicodeDecodeError:
            return ""

    def flush(self):
        text, self.held = self.held.decode("utf-8", errors="replace"), b""
        return text


STREAM_DECODER = Exercise(7, "tokenizer", "StreamDecoder", cases=[
    Case("ASCII tokens", _stream([259, 263, 256, 104, 261]),
         inputs="StreamDecoder(Tokenizer(MERGES)): push each of [259, 263, 256, 104, 261] ('the cat  hat'), then "
                "flush(); output: every piece"),
    Case("a character cut across two tokens", _stream([99, 97, 102, 195, 169, 33]),
         inputs="push each of the bytes of 'café!' (é = 195, 169), then flush()",
         note="the first byte of 'é' is held back until the second arrives"),
    Case("an emoji across four tokens", _stream([240, 159, 153, 130, 32]),
         inputs="push each of the 4 bytes of U+1F642, then a space, then flush()"),
    Case("the stream stops inside a character", _stream([104, 195]),
         inputs="push 104 ('h'), 195 (the first byte of 'é'), then flush()",
         note="flush returns U+FFFD for the unfinished character"),
    Case("a byte that starts no character", _stream([255, 97]),
         inputs="push 255 (never valid in UTF-8), 97 ('a'), then flush()",
         note="only an unfinished character at the end may wait; an invalid byte is U+FFFD at once"),
], mistakes=[
    Mistake("StreamDecoder.decode_per_token",
            "each token was decoded on its own (`tokenizer.decode([id])`), which splits a character whose bytes "
            "are in two tokens: hold back the bytes of an unfinished character until it is complete.",
            _StreamPerToken),
    Mistake("StreamDecoder.flush_drops_held_bytes",
            "flush dropped the bytes still held back: a stream that stops inside a character ends with U+FFFD "
            "(`decoder.decode(b'', final=True)`).",
            _StreamFlushDrops),
    Mistake("StreamDecoder.holds_invalid_bytes",
            "a byte that can never be valid UTF-8 was held back (until flush): only an unfinished character may "
            "wait; Python's incremental decoder from `codecs` gives U+FFFD for the rest at once.",
            _StreamHoldsInvalid),
])

EXERCISES = [PAIR_COUNTS, MERGE, APPLY_MERGES, TOKENIZER, STREAM_DECODER]
