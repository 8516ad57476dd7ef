# Promoted from notebooks/day7_tokenizer_demo.ipynb by `python -m tinyllm_lab.promote`.
# Do not edit here: edit the notebook's `#| promote: tokenizer` cells and promote again.

"""Day 7 byte-level BPE tokenizer: text <-> token ids, trained from scratch, saved as tokenizer.json.

Ids 0..255 are the 256 bytes (id = byte value). Merge r (r = 0, 1, ... in the order training
found them) joins two earlier ids into id 256 + r. The last two ids are BOS and EOS. Text is
first split into pre-tokens by one regular expression (`PATTERN`, GPT-2's split with explicit
ASCII classes) and merges never cross a pre-token boundary. The tokenizer saves as a Hugging Face
`tokenizer.json`. Loaded from that file, the `tokenizers` library gives exactly our ids for every
text that does not spell a special token (`<|bos|>`, `<|eos|>`); under its default settings it turns
that text into the BOS/EOS id, which ours never does, and with `encode_special_tokens = True` it
gives our ids for all text (tests/test_tokenizer.py checks both; a lone surrogate, which we replace
by U+FFFD, the library refuses). Standard library only.
"""

import codecs
import heapq
import json
import operator
import re
from collections import Counter, defaultdict
from pathlib import Path


def pair_counts(words):  # {word (tuple of ids): frequency} -> Counter {(a, b): count}
    """How often each adjacent pair occurs, each word weighted by its frequency.

    `{(1, 2, 3, 1, 2): 1} -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}`
    """
    counts = Counter()
    for word, freq in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] += freq
    return counts


def merge(word, pair, new_id):  # tuple of ids -> tuple of ids
    """Replace each occurrence of `pair` in `word` by `new_id`, left to right.

    `((1, 2, 3, 1, 2), (1, 2), 9) -> (9, 3, 9)`; overlaps go to the left: `((1, 1, 1), (1, 1), 9) -> (9, 1)`
    """
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == pair[0] and word[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def best_pair(counts):  # Counter {(a, b): count} -> (a, b)
    """The most frequent pair; ties go to the smallest pair of ids: `{(5, 1): 2, (3, 4): 2} -> (3, 4)`."""
    return min(counts, key=lambda pair: (-counts[pair], pair))


# GPT-2's split, each class spelled as an explicit set of code points so that Python's `re` and
# Oniguruma (inside Hugging Face `tokenizers`) read it identically: \p{L} -> LETTER, \p{N} -> DIGIT,
# \s -> SPACE. Every character is in exactly one of LETTER, DIGIT, SPACE, OTHER.
LETTER = r"[^\x00-\x40\x5b-\x60\x7b-\x7f]"  # A-Z, a-z and every non-ASCII character
DIGIT = r"[0-9]"
SPACE = r"[\t\n\x0b\x0c\r ]"  # the six ASCII whitespace characters
NOT_SPACE = r"[^\t\n\x0b\x0c\r ]"
OTHER = r"[\x00-\x08\x0e-\x1f\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]"  # ASCII punctuation, symbols, controls
PATTERN = "|".join([
    r"'(?:s|t|re|ve|m|ll|d)",    # English contractions: 's, 't, 're, 've, 'm, 'll, 'd
    f" ?{LETTER}+",              # a word, with the space before it
    f" ?{DIGIT}+",               # a number
    f" ?{OTHER}+",               # a run of punctuation
    f"{SPACE}+(?!{NOT_SPACE})",  # whitespace, leaving the last space to the word after it ...
    f"{SPACE}+",                 # ... or all of it at the end of the text
])
SPLIT_RE = re.compile(PATTERN)
SURROGATE_RE = re.compile("[\ud800-\udfff]")


def pretokenize(text):  # str -> list of str
    """The pieces that merges stay within: `"Hello, world!" -> ["Hello", ",", " world", "!"]`.

    A lone surrogate (U+D800..U+DFFF, a Python string can hold one, UTF-8 cannot encode it) is
    replaced by U+FFFD first; after that `"".join(pretokenize(text)) == text`.
    """
    return SPLIT_RE.findall(SURROGATE_RE.sub("\ufffd", text))


BOS_TOKEN = "<|bos|>"  # beginning of sequence: id vocab_size - 2
EOS_TOKEN = "<|eos|>"  # end of sequence: id vocab_size - 1


def n_merges(vocab_size):  # -> number of merges that give this vocabulary size
    """256 byte tokens + the merges + BOS + EOS = vocab_size."""
    if vocab_size < 258:
        raise ValueError(f"vocab_size must be at least 258 (256 bytes + BOS + EOS), got {vocab_size}")
    return vocab_size - 258


def word_counts(text):  # str -> {word (tuple of byte ids): frequency}
    """Each distinct pre-token as the tuple of its UTF-8 bytes, with how often it occurs.

    `"to be or not to be" -> {(116, 111): 1, (32, 98, 101): 2, (32, 111, 114): 1, (32, 110, 111, 116): 1, (32, 116, 111): 1}`
    """
    return {tuple(piece.encode("utf-8")): n for piece, n in Counter(pretokenize(text)).items()}


def train_bpe(text, vocab_size):  # -> Tokenizer
    """BPE training, the plain way: count all pairs, merge the most frequent (ties: smallest pair), repeat.

    Every merge recounts the pairs of every distinct word: fine for a page, hours for 16k merges
    on a corpus; `train_bpe_fast` finds the same merges incrementally. Stops early (smaller
    vocabulary) if every word has become a single token.
    """
    words = word_counts(text)
    merges = []
    for _ in range(n_merges(vocab_size)):
        counts = pair_counts(words)
        if not counts:
            break
        pair = best_pair(counts)
        new_id = 256 + len(merges)
        words = {merge(word, pair, new_id): freq for word, freq in words.items()}
        merges.append(pair)
    return Tokenizer(merges)


def apply_merges(ids, ranks):  # list of ids, {(a, b): rank} -> list of ids
    """Encode one pre-token: merge the adjacent pair of lowest rank r into 256 + r, until none is left.

    With ranks `{(97, 97): 0, (256, 98): 1}`: `[97, 97, 98, 97] -> [256, 98, 97] -> [257, 97]`.
    Each round rescans the word: O(n^2) for a word of n bytes (see `apply_merges_fast`).
    """
    ids = tuple(ids)
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, float("inf")))
        if pair not in ranks:
            break
        ids = merge(ids, pair, 256 + ranks[pair])
    return list(ids)


def apply_merges_fast(ids, ranks):  # list of ids, {(a, b): rank} -> list of ids
    """`apply_merges` in O(n log n): the same result, for words of any length.

    A heap holds (rank, position) for every adjacent pair that has a merge; a linked list over
    positions lets a merge join two neighbours without moving the rest. Popping the smallest
    (rank, position) merges each rank's pairs left to right, as `merge` does. An entry is stale,
    and skipped, when its left token was absorbed or its pair has changed since it was pushed.
    """
    ids = list(ids)
    n = len(ids)
    nxt = list(range(1, n + 1))   # the next live position (n: none)
    prv = list(range(-1, n - 1))  # the previous live position (-1: none)
    heap = [(ranks[pair], i) for i, pair in enumerate(zip(ids, ids[1:])) if pair in ranks]
    heapq.heapify(heap)
    while heap:
        rank, i = heapq.heappop(heap)
        j = nxt[i]
        if ids[i] is None or j == n or ranks.get((ids[i], ids[j])) != rank:
            continue  # stale
        ids[i], ids[j] = 256 + rank, None  # j is absorbed into i
        nxt[i] = nxt[j]
        if nxt[i] < n:
            prv[nxt[i]] = i
        for left in (prv[i], i):  # the two pairs the new token is part of
            if left >= 0 and nxt[left] < n and (ids[left], ids[nxt[left]]) in ranks:
                heapq.heappush(heap, (ranks[ids[left], ids[nxt[left]]], left))
    return [t for t in ids if t is not None]


# Bounds of the pre-token cache of `Tokenizer.encode`, which only saves time (measured on the
# course corpus: 1.7 s instead of 15 s to encode its 5 MB). Words are short (the corpus's longest
# pre-token has 63 characters) and few (36,314 distinct), so these limits never bind there; they
# keep one huge or endless input from filling memory: a long run without split points is not
# kept, and after CACHE_MAX_ENTRIES distinct pre-tokens new ones are merged but not remembered.
CACHE_MAX_PIECE_CHARS = 64
CACHE_MAX_ENTRIES = 100_000


def encode_text(text, ranks, cache):  # str, {(a, b): rank}, {piece: ids} -> list of ids
    """Pre-tokenize `text`, then merge each piece; `cache` remembers the ids of short pieces."""
    ids = []
    for piece in pretokenize(text):
        piece_ids = cache.get(piece)
        if piece_ids is None:
            piece_ids = apply_merges_fast(piece.encode("utf-8"), ranks)
            if len(piece) <= CACHE_MAX_PIECE_CHARS and len(cache) < CACHE_MAX_ENTRIES:
                cache[piece] = piece_ids
        ids.extend(piece_ids)
    return ids


def merge_tables(merges):  # list of (a, b) -> (ranks {(a, b): r}, vocab [bytes of each id])
    """What a list of merges implies: `ranks[(a, b)] = r`, and `vocab[256 + r] = vocab[a] + vocab[b]`.

    `[(104, 105)] -> ({(104, 105): 0}, [b"\\x00", ..., b"\\xff", b"hi"])`. ValueError for a merge that is
    repeated or uses an id not made yet, and for two merges that make the same bytes.
    """
    ranks, vocab = {}, [bytes([b]) for b in range(256)]
    for r, (a, b) in enumerate(merges):
        if not (0 <= a < 256 + r and 0 <= b < 256 + r) or (a, b) in ranks:
            raise ValueError(f"merge {r} {(a, b)} is repeated or uses an id that does not exist yet "
                             f"(ids 0..{256 + r - 1})")
        ranks[(a, b)] = r
        vocab.append(vocab[a] + vocab[b])
    if len(set(vocab)) != len(vocab):  # training never does this; a hand-made list could
        raise ValueError("two merges make the same bytes; a tokenizer.json vocabulary needs distinct tokens")
    return ranks, vocab


def check_id(token_id, vocab_size):  # -> int
    """`token_id` as an int (a numpy integer is fine); ValueError unless it is an integer in 0..vocab_size - 1."""
    try:
        i = operator.index(token_id) if not isinstance(token_id, bool) else None  # True is not token 1
    except TypeError:
        i = None
    if i is None:
        raise ValueError(f"token id {token_id!r:.40} is not an integer")
    if not 0 <= i < vocab_size:
        raise ValueError(f"unknown token id {i}: this tokenizer has ids 0..{vocab_size - 1}")
    return i


def check_ids(ids):  # -> list
    """`ids` as a list; TypeError unless it is a sequence of token ids (list, tuple, range, 1-D array), not text."""
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
        raise TypeError(f"decode takes a sequence of token ids, got {type(ids).__name__}"
                        + (" (encode turns text into ids)" if isinstance(ids, (str, bytes)) else ""))
    return list(ids)


class Tokenizer:
    """Byte-level BPE: `encode(text) -> ids`, `decode(ids) -> text`. `merges[r] = (a, b)` joins ids a and b
    into id 256 + r; `vocab[i]` is the bytes of id i (the special tokens' text for BOS and EOS)."""

    def __init__(self, merges):
        self.merges = [tuple(pair) for pair in merges]
        self.ranks, self.vocab = merge_tables(self.merges)  # (a, b) -> r; id -> bytes
        self.bos_id, self.eos_id = len(self.vocab), len(self.vocab) + 1
        self.vocab += [BOS_TOKEN.encode("utf-8"), EOS_TOKEN.encode("utf-8")]
        self.vocab_size = len(self.vocab)
        self._cache = {}  # pre-token -> ids

    def __repr__(self):
        return f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, bos_id={self.bos_id}, eos_id={self.eos_id})"

    def encode(self, text, bos=False, eos=False):  # str -> list of ids
        """Token ids of `text`; special-token text in it is encoded as plain text, never as BOS/EOS."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}")
        if not isinstance(bos, bool) or not isinstance(eos, bool):
            raise TypeError(f"bos and eos must be True or False, got bos={bos!r:.30}, eos={eos!r:.30}")
        ids = encode_text(text, self.ranks, self._cache)
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode_bytes(self, ids):  # list of ids -> bytes
        """The bytes the ids stand for (BOS and EOS as their text); an unknown id raises ValueError."""
        return b"".join(self.vocab[check_id(i, self.vocab_size)] for i in check_ids(ids))

    def decode(self, ids):  # list of ids -> str
        """The text of the ids; bytes that are not valid UTF-8 (ids that cut a character) become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def stream_decoder(self):  # -> StreamDecoder: push(id) -> str, flush() -> str
        return StreamDecoder(self)

    def save(self, path):
        """Write a Hugging Face tokenizer.json (see `tokenizer_json`)."""
        Path(path).write_text(json.dumps(tokenizer_json(self), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path):
        """Read a tokenizer.json written by `save` (see `tokenizer_from_json`); ValueError naming what is wrong."""
        return tokenizer_from_json(read_json(path))


class StreamDecoder:
    """Text for ids that arrive one at a time, holding back the bytes of an unfinished character.

    `push(id)` returns the text that is complete so far ("" while a character is unfinished);
    `flush()` returns what is left at the end (U+FFFD if the stream stopped inside a character).
    Joined, the pieces equal `tokenizer.decode(all ids)`.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id):  # id -> str
        return self._utf8.decode(self.tokenizer.decode_bytes([token_id]))

    def flush(self):  # -> str
        return self._utf8.decode(b"", final=True)


def bytes_to_unicode():  # -> {byte: printable character}
    """GPT-2's byte -> character map used by byte-level tokenizer.json files: `32 -> 'Ġ'`, `97 -> 'a'`."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + k) for k, b in enumerate(shifted)}}


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}
PRE_TOKENIZER_JSON = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": PATTERN}, "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}


def token_string(token_bytes):  # bytes -> str
    """How tokenizer.json spells a token: `b" the" -> "Ġthe"`."""
    return "".join(BYTE_TO_CHAR[b] for b in token_bytes)


def tokenizer_json(tokenizer):  # Tokenizer -> dict, the contents of tokenizer.json
    """A Hugging Face tokenizer.json: Split(PATTERN) + ByteLevel pre-tokenizer, BPE model, BOS/EOS special."""
    names = [token_string(b) for b in tokenizer.vocab[:tokenizer.bos_id]]
    special = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": False, "special": True}
               for i, t in [(tokenizer.bos_id, BOS_TOKEN), (tokenizer.eos_id, EOS_TOKEN)]]
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": special,
            "normalizer": None, "pre_tokenizer": PRE_TOKENIZER_JSON, "post_processor": None,
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": False, "vocab": {name: i for i, name in enumerate(names)},
                      "merges": [f"{names[a]} {names[b]}" for a, b in tokenizer.merges]}}


def read_json(path, what="tokenizer.json"):  # -> the parsed JSON of a file
    """The JSON in `path`: FileNotFoundError if there is none; ValueError, naming the file, if it is not
    a regular file (a folder, /dev/zero) or not UTF-8 JSON (or is nested too deeply to parse)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist ({what})")
    if not path.is_file():
        raise ValueError(f"{path} is not a regular file ({what})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError; nesting too deep
        raise ValueError(f"{path} is not valid UTF-8 JSON ({what}): {str(e) or type(e).__name__}") from None


JSON_NAMES = {str: "string", int: "integer", bool: "boolean", list: "array", dict: "object", float: "number",
              type(None): "null"}


def need(obj, key, kinds, where, default=...):  # -> obj[key], checked
    """`obj[key]` if it has one of the JSON types `kinds` (Python types; bool never counts as int).

    A missing key gives `default` if one is given; otherwise, and for a value of another type, a
    ValueError naming the field: `need({"vocab": []}, "vocab", (dict,), "model")` ->
    `tokenizer.json: model.vocab must be object, got list []`.
    """
    if not isinstance(obj, dict):
        raise ValueError(f"tokenizer.json: {where} must be a JSON object, got {type(obj).__name__}")
    if key not in obj:
        if default is ...:
            raise ValueError(f"tokenizer.json: {where} has no {key!r} field")
        return default
    value = obj[key]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(JSON_NAMES[k] for k in kinds)
        raise ValueError(f"tokenizer.json: {where}.{key} must be {names}, got {type(value).__name__} {value!r:.60}")
    return value


def merge_names(model):  # the BPE model of tokenizer.json -> [(left, right) token strings], checked
    """`model.merges` as pairs: each a `"a b"` string or an `["a", "b"]` pair; ValueError naming the index."""
    pairs = []
    for r, m in enumerate(need(model, "merges", (list,), "model")):
        if isinstance(m, str) and m.count(" ") == 1:
            pairs.append(tuple(m.split(" ")))
        elif isinstance(m, list) and len(m) == 2 and all(isinstance(s, str) for s in m):
            pairs.append(tuple(m))
        else:
            raise ValueError(f"tokenizer.json: model.merges[{r}] must be \"a b\" or [\"a\", \"b\"], got {m!r:.60}")
    return pairs


def tokenizer_from_json(data):  # dict -> Tokenizer
    """Read back what `tokenizer_json` wrote; ValueError, naming the field, if the file is built differently.

    It checks the JSON types, the pre-tokenizer, the ids (byte b has id b, merge r makes id 256 + r)
    and the special tokens, so a file that would encode differently from this module is refused.
    """
    if not isinstance(data, dict):
        raise ValueError(f"tokenizer.json: the file must hold a JSON object, got {type(data).__name__}")
    model = need(data, "model", (dict,), "tokenizer.json")
    kind, pre = need(model, "type", (str, type(None)), "model", None), data.get("pre_tokenizer")
    if kind != "BPE" or pre != PRE_TOKENIZER_JSON or need(data, "normalizer", (dict, type(None)), "tokenizer.json", None):
        raise ValueError("tokenizer.json: expected a BPE model with the pre-tokenizer of tinyllm_lab.tokenizer "
                         f"(Split on PATTERN, then ByteLevel) and no normalizer; got model type {kind!r}, "
                         f"pre_tokenizer {pre!r:.200} (tinyllm_lab.hf_tokenizer reads other kinds)")
    vocab = need(model, "vocab", (dict,), "model")
    for name, i in vocab.items():
        if not isinstance(i, int) or isinstance(i, bool):
            raise ValueError(f"tokenizer.json: model.vocab[{name!r}] must be an integer id, got {i!r:.40}")
    pairs = merge_names(model)  # [(left, right) token names], checked once
    for r, (left, right) in enumerate(pairs):
        for name in (left, right):
            if name not in vocab:
                raise ValueError(f"tokenizer.json: merge {r} ({left!r} + {right!r}) uses the token {name!r}, "
                                 "which is not in the vocab")
    tokenizer = Tokenizer([(vocab[left], vocab[right]) for left, right in pairs])
    for name, i in vocab.items():
        if not 0 <= i < tokenizer.bos_id or token_string(tokenizer.vocab[i]) != name:
            raise ValueError(f"tokenizer.json: token {name!r} has id {i}; this layout needs byte b at id b "
                             "and merge r at id 256 + r")
    special = [(need(t, "id", (int,), f"added_tokens[{k}]"), need(t, "content", (str,), f"added_tokens[{k}]"))
               for k, t in enumerate(need(data, "added_tokens", (list,), "tokenizer.json", []))]
    if Counter(special) != Counter([(tokenizer.bos_id, BOS_TOKEN), (tokenizer.eos_id, EOS_TOKEN)]):  # any order
        raise ValueError(f"tokenizer.json: expected added tokens {BOS_TOKEN} = {tokenizer.bos_id} and "
                         f"{EOS_TOKEN} = {tokenizer.eos_id}, got {special}")
    return tokenizer


def train_bpe_fast(text, vocab_size):  # -> Tokenizer, the same merges as train_bpe
    """`train_bpe`, incrementally: a merge updates only the words that contain its pair."""
    counted = word_counts(text)
    words, freqs = list(counted), list(counted.values())  # word w occurs freqs[w] times
    counts, where = Counter(), defaultdict(set)  # pair -> count; pair -> indices of words that may contain it
    for w, word in enumerate(words):
        for pair in zip(word, word[1:]):
            counts[pair] += freqs[w]
            where[pair].add(w)
    heap = [(-count, pair) for pair, count in counts.items()]  # smallest = most frequent, then smallest pair
    heapq.heapify(heap)
    merges = []
    while heap and len(merges) < n_merges(vocab_size):
        neg_count, pair = heapq.heappop(heap)
        if counts[pair] != -neg_count:  # stale: the count changed after this entry was pushed
            if 0 < counts[pair] < -neg_count:
                heapq.heappush(heap, (-counts[pair], pair))
            continue
        new_id = 256 + len(merges)
        merges.append(pair)
        new_pairs = set()
        for w in where.pop(pair):
            old = words[w]
            words[w] = new = merge(old, pair, new_id)
            for p in zip(old, old[1:]):
                counts[p] -= freqs[w]
            for p in zip(new, new[1:]):
                counts[p] += freqs[w]
                where[p].add(w)
                if new_id in p:  # only pairs with the new token gain count
                    new_pairs.add(p)
        for p in new_pairs:
            heapq.heappush(heap, (-counts[p], p))
    return Tokenizer(merges)
