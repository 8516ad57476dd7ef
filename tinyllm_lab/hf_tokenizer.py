# Promoted from notebooks/day8_real_models.ipynb by `python -m tinyllm_lab.promote`.
# Do not edit here: edit the notebook's `#| promote: hf_tokenizer` cells and promote again.

"""Day 8 (optional): reading the tokenizer.json files that real Llama-family models ship.

Two kinds, both BPE, read and run by hand (no `tokenizers` library at run time):
- byte-level BPE (GPT-2, SmolLM2, Llama 3, the course's own file): text -> UTF-8 bytes -> GPT-2's
  byte alphabet, split by the file's regular expression, merges ranked;
- SentencePiece-style BPE (Llama 2, TinyLlama, Mistral): spaces become `▁` (U+2581), a `▁` is put
  in front, characters outside the vocabulary fall back to byte tokens `<0xNN>`, merges ranked.
`load_tokenizer(path)` reads a model folder (or one tokenizer.json) and refuses, naming the JSON
field, every piece it does not implement. Follows Hugging Face `tokenizers` (its BPE model,
normalizers, pre-tokenizers and decoders), checked id for id against it in tests/test_hf_tokenizer.py.
Standard library only.
"""

import codecs
import heapq
import re
import unicodedata
from functools import lru_cache
from pathlib import Path

from tinyllm_lab.tokenizer import (  # day 7's byte alphabet, its checks of ids, JSON files and fields, its cache bounds
    BYTE_TO_CHAR, CACHE_MAX_ENTRIES, CACHE_MAX_PIECE_CHARS, CHAR_TO_BYTE, SURROGATE_RE, check_id, check_ids, need,
    read_json, token_string,
)


def char_class(predicate):  # (str -> bool) -> str, the body of a regex character class
    """Every code point for which `predicate` holds, as ranges: `lambda c: c in "abcx"` -> `\\U00000061-\\U00000063\\U00000078`.

    Surrogates (U+D800..U+DFFF) are left out: encode replaces them before any pattern runs.
    """
    ranges, start = [], None
    for cp in range(0x110000 + 1):
        inside = cp < 0x110000 and not 0xD800 <= cp <= 0xDFFF and predicate(chr(cp))
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            ranges.append(f"\\U{start:08x}" if start == cp - 1 else f"\\U{start:08x}-\\U{cp - 1:08x}")
            start = None
    return "".join(ranges)


@lru_cache(maxsize=None)
def unicode_classes():  # -> {Oniguruma name: class body for Python's re}
    """The three Unicode classes real pre-tokenizer patterns use, spelled out for Python's `re`.

    Oniguruma (the regex engine inside `tokenizers`) reads `\\p{L}` as the letters (categories
    L*), `\\p{N}` as the numbers (N*), `\\s` as Unicode White_Space. Python's `re` has no `\\p{..}`,
    and its `\\s` also matches U+001C..U+001F, so we list the code points ourselves from
    `unicodedata` (Unicode 14.0 on Python 3.11: a character assigned later counts as neither).
    Built once, on first use (about a second).
    """
    def space(c):
        return c in "\t\n\x0b\x0c\r\x85" or unicodedata.category(c) in ("Zs", "Zl", "Zp")
    return {"L": char_class(lambda c: unicodedata.category(c)[0] == "L"),
            "N": char_class(lambda c: unicodedata.category(c)[0] == "N"),
            "s": char_class(space)}


# GPT-2's pattern: the ByteLevel pre-tokenizer uses it when its `use_regex` is true (the file does not spell it).
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


ESCAPE_RE = re.compile(r"\\(p\{(\w+)\}|.)|(\[\^?)|(\])", re.DOTALL)
PLAIN_ESCAPES = set("tnrfv0\\.^$|?*+()[]{}'\"/- #&~!,:;<=>@`%")


def translate_pattern(pattern, field):  # Oniguruma pattern -> compiled Python re
    """Rewrite a pre-tokenizer pattern for Python's `re`: `\\p{L}`, `\\p{N}`, `\\s`, `\\S` become explicit
    classes (`" ?\\p{L}+"` -> `" ?[A-Za-z...]+"`); the rest of the real patterns (`?:`, `(?i:...)`, `(?!...)`,
    `{1,3}`) means the same in both engines. Any other escape (`\\w`, `\\d`, `\\p{Lu}`...), or a pattern
    `re` cannot compile: ValueError naming `field`."""
    classes = unicode_classes()
    out, pos, depth = [], 0, 0  # depth: 1 inside [...]
    for m in ESCAPE_RE.finditer(pattern):
        out.append(pattern[pos:m.start()])
        pos = m.end()
        escape, prop, open_, close = m.groups()
        if open_:
            depth += 1
            out.append(open_)
            if pattern[pos:pos + 1] == "]":  # a literal ] first in a class
                out.append("\\]")
                pos += 1
        elif close:
            depth = max(depth - 1, 0)
            out.append("]")
        elif prop in classes and prop != "s" or escape == "s":
            body = classes[prop or "s"]
            out.append(body if depth else f"[{body}]")
        elif escape == "S" and not depth:
            out.append(f"[^{classes['s']}]")
        elif escape in PLAIN_ESCAPES or escape == "x":
            out.append("\\" + escape)
        else:
            raise ValueError(f"tokenizer.json: {field} uses \\{escape}, which this reader does not translate "
                             f"(it knows \\p{{L}}, \\p{{N}}, \\s, \\S and plain escapes): {pattern!r}")
    out.append(pattern[pos:])
    try:
        return re.compile("".join(out))
    except re.error as e:
        raise ValueError(f"tokenizer.json: {field} is not a pattern Python's re can run ({e}): {pattern!r}") from None


def load_normalizer(spec, where="normalizer"):  # JSON -> list of (str -> str)
    """The normalizer as a list of steps applied in order. Known: Sequence, Prepend, Replace (a
    plain String pattern), NFC, NFD, NFKC, NFKD. Anything else is refused naming `where`.type."""
    if spec is None:
        return []
    kind = need(spec, "type", (str,), where)
    if kind == "Sequence":
        items = need(spec, "normalizers", (list,), where)
        return [step for i, s in enumerate(items) for step in load_normalizer(s, f"{where}.normalizers[{i}]")]
    if kind == "Prepend":
        prefix = need(spec, "prepend", (str,), where)
        return [lambda text: prefix + text if text else text]  # as tokenizers: nothing is added to ""
    if kind == "Replace":
        pattern = need(spec, "pattern", (dict,), where)
        if "String" not in pattern:
            raise ValueError(f"tokenizer.json: {where}.pattern must be a String pattern; this reader "
                             f"does not run Regex replacements: {pattern!r:.80}")
        old = need(pattern, "String", (str,), f"{where}.pattern")
        new = need(spec, "content", (str,), where)
        if not old:
            raise ValueError(f"tokenizer.json: {where}.pattern.String is empty")
        return [lambda text: text.replace(old, new)]
    if kind in ("NFC", "NFD", "NFKC", "NFKD"):
        return [lambda text: unicodedata.normalize(kind, text)]
    raise ValueError(f"tokenizer.json: {where}.type {kind!r} is not supported "
                     "(known: Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD)")


def split_pieces(text, regex, behavior):  # str -> list of str
    """Split `text` at the matches of `regex`, as tokenizers' Split does with `behavior`.

    `Isolated`: matches and the text between them are pieces; `Removed`: only the text between;
    `MergedWithPrevious` / `MergedWithNext`: each match joins the piece before / after it.
    """
    pieces, pos, glue = [], 0, ""
    for m in regex.finditer(text):
        if m.start() == m.end():
            continue
        gap, match = text[pos:m.start()], m.group()
        pos = m.end()
        if behavior == "Isolated":
            pieces += [gap, match]
        elif behavior == "Removed":
            pieces.append(gap)
        elif behavior == "MergedWithPrevious":
            pieces.append(gap + match)
        else:  # MergedWithNext
            pieces.append(glue + gap)
            glue = match
    pieces.append(glue + text[pos:])
    return [p for p in pieces if p]


SPLIT_BEHAVIORS = ("Isolated", "Removed", "MergedWithPrevious", "MergedWithNext")


def load_pre_tokenizer(spec, where="pre_tokenizer"):  # JSON -> (steps, byte_level)
    """The pre-tokenizer as steps `(pieces, first) -> pieces`, and whether it maps bytes (ByteLevel).

    Known: Sequence, Split (Regex or String pattern, invert false), ByteLevel (GPT-2's pattern
    when `use_regex`), Digits, Metaspace. `first` says the text is the start of the input (for
    Metaspace's `prepend_scheme: "first"`). Anything else is refused naming the field.
    """
    if spec is None:
        return [], False
    kind = need(spec, "type", (str,), where)
    if kind == "Sequence":
        steps, byte_level = [], False
        for i, s in enumerate(need(spec, "pretokenizers", (list,), where)):
            more, bl = load_pre_tokenizer(s, f"{where}.pretokenizers[{i}]")
            steps, byte_level = steps + more, byte_level or bl
        return steps, byte_level
    if kind == "Split":
        pattern = need(spec, "pattern", (dict,), where)
        if "Regex" in pattern:
            regex = translate_pattern(need(pattern, "Regex", (str,), f"{where}.pattern"), f"{where}.pattern.Regex")
        else:
            regex = re.compile(re.escape(need(pattern, "String", (str,), f"{where}.pattern")))
        behavior = need(spec, "behavior", (str,), where)
        if behavior not in SPLIT_BEHAVIORS:
            raise ValueError(f"tokenizer.json: {where}.behavior {behavior!r} is not supported (known: {', '.join(SPLIT_BEHAVIORS)})")
        if need(spec, "invert", (bool,), where, False):
            raise ValueError(f"tokenizer.json: {where}.invert true is not supported")
        return [lambda pieces, first: [q for p in pieces for q in split_pieces(p, regex, behavior)]], False
    if kind == "ByteLevel":
        return [byte_level_step(spec, where)], True
    if kind == "Digits":
        digit = f"[{unicode_classes()['N']}]" + ("" if need(spec, "individual_digits", (bool,), where, False) else "+")
        regex = re.compile(digit)
        return [lambda pieces, first: [q for p in pieces for q in split_pieces(p, regex, "Isolated")]], False
    if kind == "Metaspace":
        return [metaspace_step(spec, where)], False
    raise ValueError(f"tokenizer.json: {where}.type {kind!r} is not supported "
                     "(known: Sequence, Split, ByteLevel, Digits, Metaspace)")


def byte_level_step(spec, where):  # JSON -> step
    """ByteLevel: a space in front of each piece if `add_prefix_space`, then GPT-2's pattern if
    `use_regex` (both default to true). The byte alphabet itself is applied by `BPEModel`."""
    prefix = need(spec, "add_prefix_space", (bool,), where, True)
    use_regex = need(spec, "use_regex", (bool,), where, True)
    regex = translate_pattern(GPT2_PATTERN, f"{where} (GPT-2's pattern)") if use_regex else None

    def byte_level(pieces, first):
        if prefix:
            pieces = [p if p.startswith(" ") else " " + p for p in pieces]
        return [q for p in pieces for q in regex.findall(p)] if regex else pieces
    return byte_level


def metaspace_step(spec, where):  # JSON -> step
    """Metaspace: spaces become the replacement (`▁`), one is put in front (`prepend_scheme`:
    always / first / never; older files say `add_prefix_space`), and with `split` each `▁` starts a piece."""
    mark = need(spec, "replacement", (str,), where)
    if len(mark) != 1:
        raise ValueError(f"tokenizer.json: {where}.replacement must be one character, got {mark!r}")
    if "prepend_scheme" in spec:
        scheme = need(spec, "prepend_scheme", (str,), where)
        if scheme not in ("always", "first", "never"):
            raise ValueError(f"tokenizer.json: {where}.prepend_scheme {scheme!r} is not one of always, first, never")
    else:
        scheme = "always" if need(spec, "add_prefix_space", (bool,), where, True) else "never"
    split = need(spec, "split", (bool,), where, True)
    regex = re.compile(re.escape(mark))

    def metaspace(pieces, first):
        out = []
        for k, p in enumerate(pieces):
            p = p.replace(" ", mark)
            if not p.startswith(mark) and (scheme == "always" or scheme == "first" and first and k == 0):
                p = mark + p
            out += split_pieces(p, regex, "MergedWithNext") if split else [p]
        return out
    return metaspace


def pre_tokenize(text, normalizer, pre_tokenizer, first):  # str -> list of str
    """The pieces BPE runs on: `text` normalized, then split by each pre-tokenizer step in turn."""
    for step in normalizer:
        text = step(text)
    pieces = [text] if text else []
    for step in pre_tokenizer:
        pieces = step(pieces, first)
    return pieces


def bpe(ids, merges):  # list of ids, {(a, b): (rank, new id)} -> list of ids
    """Merge the adjacent pair of lowest rank into its token until no pair has a merge.

    Day 7's `apply_merges_fast` with one change: a merge's result is the id the file gives it
    (`vocab["a" + "b"]`), not 256 + rank. Equal ranks go left to right, as in tokenizers.
    """
    ids = list(ids)
    n = len(ids)
    nxt, prv = list(range(1, n + 1)), list(range(-1, n - 1))
    heap = [(merges[p][0], i) for i, p in enumerate(zip(ids, ids[1:])) if p in merges]
    heapq.heapify(heap)
    while heap:
        rank, i = heapq.heappop(heap)
        j = nxt[i]
        if ids[i] is None or j == n or merges.get((ids[i], ids[j]), (None,))[0] != rank:
            continue  # stale
        ids[i], ids[j] = merges[ids[i], ids[j]][1], None
        nxt[i] = nxt[j]
        if nxt[i] < n:
            prv[nxt[i]] = i
        for left in (prv[i], i):
            if left >= 0 and nxt[left] < n and (ids[left], ids[nxt[left]]) in merges:
                heapq.heappush(heap, (merges[ids[left], ids[nxt[left]]][0], left))
    return [t for t in ids if t is not None]


def read_merges(model, vocab, where="model"):  # -> {(a, b): (rank, new id)}
    """`model.merges` as `"a b"` strings or `["a", "b"]` pairs; each part and their join must be in the vocab."""
    merges = {}
    for r, m in enumerate(need(model, "merges", (list,), where)):
        if isinstance(m, str) and m.count(" ") == 1:
            left, right = m.split(" ")
        elif isinstance(m, list) and len(m) == 2 and all(isinstance(s, str) for s in m):
            left, right = m
        else:
            raise ValueError(f"tokenizer.json: {where}.merges[{r}] must be \"a b\" or [\"a\", \"b\"], got {m!r:.60}")
        for name in (left, right, left + right):
            if name not in vocab:
                raise ValueError(f"tokenizer.json: {where}.merges[{r}] ({left!r} + {right!r}) needs the token "
                                 f"{name!r}, which is not in {where}.vocab")
        pair = (vocab[left], vocab[right])
        if pair in merges:  # which rank would win is a library detail: refuse instead
            raise ValueError(f"tokenizer.json: {where}.merges[{r}] ({left!r} + {right!r}) repeats "
                             f"{where}.merges[{merges[pair][0]}]")
        merges[pair] = (r, vocab[left + right])
    return merges


def read_vocab(model, where="model"):  # -> {token string: id}
    """`model.vocab`: token string -> id; ids are non-negative integers, each used once."""
    vocab = need(model, "vocab", (dict,), where)
    seen = {}
    for name, i in vocab.items():
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise ValueError(f"tokenizer.json: {where}.vocab[{name!r}] must be a non-negative integer id, got {i!r:.40}")
        if i in seen:
            raise ValueError(f"tokenizer.json: {where}.vocab gives id {i} to both {seen[i]!r} and {name!r}")
        seen[i] = name
    return vocab


BYTE_TOKEN_RE = re.compile(r"<0x([0-9A-F]{2})>")


class TokenDecoder:
    """What each token id decodes to, as bytes, so that streaming never splits a character.

    `token_bytes[i]` is the bytes of id i (None: no such id), `first_bytes[i]` its bytes when it
    is the first token (None: the same), `strip = (character, n)`: up to n of that character are
    removed from the start of the text (tokenizers' Strip decoder).
    """

    def __init__(self, token_bytes, first_bytes=None, strip=("", 0)):
        self.bytes, self.first_bytes, self.strip = token_bytes, first_bytes, strip
        self.vocab_size = len(token_bytes)

    def token_bytes(self, token_id, first=False):  # id -> bytes
        """The bytes of one id; ValueError for a non-integer or unknown id."""
        i = check_id(token_id, self.vocab_size)
        if self.bytes[i] is None:
            raise ValueError(f"unknown token id {i}: this tokenizer has ids 0..{self.vocab_size - 1}, but none numbered {i}")
        return self.first_bytes[i] if first and self.first_bytes else self.bytes[i]

    def stream_decoder(self):  # -> HFStreamDecoder
        return HFStreamDecoder(self)

    def decode(self, ids):  # list of ids -> str
        """The text of the ids. Bytes that are not valid UTF-8 become U+FFFD (where tokenizers'
        ByteFallback writes one U+FFFD per byte token, this may write fewer)."""
        ids = check_ids(ids)
        stream = self.stream_decoder()
        return "".join([stream.push(i) for i in ids]) + stream.flush()


class HFStreamDecoder:
    """Text for ids that arrive one at a time; never splits a character.

    `push(id) -> str` returns the text completed so far ("" while a character is unfinished),
    `flush() -> str` what is left (U+FFFD if the ids stopped inside a character). Joined, the
    pieces equal `decode(all ids)`. An unknown id raises ValueError before any state changes.
    """

    def __init__(self, decoder):
        self.decoder = decoder
        self._first = True
        self._strip_char, self._strip_left = decoder.strip[0].encode("utf-8"), decoder.strip[1]
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id):  # id -> str
        b = self.decoder.token_bytes(token_id, self._first)
        self._first = False
        while self._strip_left and b.startswith(self._strip_char):
            b, self._strip_left = b[len(self._strip_char):], self._strip_left - 1
        if b:
            self._strip_left = 0  # only leading characters are stripped
        return self._utf8.decode(b)

    def flush(self):  # -> str
        return self._utf8.decode(b"", final=True)


def load_decoder(spec, tokens, where="decoder"):  # JSON, [token text per id] -> TokenDecoder
    """The file's decoder. Known: ByteLevel (each character back to its byte), Metaspace (`▁` ->
    space, none at all in the first token, as tokenizers does), and a Sequence (see `decoder_sequence`)."""
    if spec is None:
        raise ValueError(f"tokenizer.json: {where} is null; this reader needs a ByteLevel, Metaspace or Sequence decoder")
    kind = need(spec, "type", (str,), where)
    if kind == "ByteLevel":
        def to_bytes(t):  # a character outside the byte alphabet: the token's own UTF-8, as tokenizers does
            return bytes(CHAR_TO_BYTE[c] for c in t) if all(c in CHAR_TO_BYTE for c in t) else t.encode("utf-8")
        return TokenDecoder([None if t is None else to_bytes(t) for t in tokens])
    if kind == "Metaspace":
        mark = need(spec, "replacement", (str,), where)
        old_default = "always" if need(spec, "add_prefix_space", (bool,), where, True) else "never"
        rest = [None if t is None else t.replace(mark, " ").encode("utf-8") for t in tokens]
        if need(spec, "prepend_scheme", (str,), where, old_default) == "never":
            return TokenDecoder(rest)
        return TokenDecoder(rest, [None if t is None else t.replace(mark, "").encode("utf-8") for t in tokens])
    if kind == "Sequence":
        return decoder_sequence(need(spec, "decoders", (list,), where), tokens, where)
    raise ValueError(f"tokenizer.json: {where}.type {kind!r} is not supported (known: ByteLevel, Metaspace, Sequence)")


def decoder_sequence(steps, tokens, where):  # JSON list, [token text per id] -> TokenDecoder
    """Llama 2's decoder: Replace (`▁` -> space), ByteFallback (`<0xNN>` -> that byte), Fuse (join:
    bytes join anyway), then Strip (one leading space of the whole text). Replace and ByteFallback
    act on each token, so they must come before Fuse; Strip after it. Other steps are refused."""
    per_token, fused, strip = [], False, ("", 0)
    for i, s in enumerate(steps):
        w = f"{where}.decoders[{i}]"
        step = need(s, "type", (str,), w)
        if step == "Fuse":
            fused = True
        elif step == "Strip" and fused:
            content, start = need(s, "content", (str,), w), need(s, "start", (int,), w)
            if need(s, "stop", (int,), w) != 0 or len(content) != 1 or start < 0 or strip[1]:
                raise ValueError(f"tokenizer.json: {w} must strip one character from the start only (stop 0), got {s!r:.80}")
            strip = (content, start)
        elif step == "Replace" and not fused:
            pattern = need(s, "pattern", (dict,), w)
            if "String" not in pattern:
                raise ValueError(f"tokenizer.json: {w}.pattern must be a String pattern, got {pattern!r:.80}")
            per_token.append((need(pattern, "String", (str,), f"{w}.pattern"), need(s, "content", (str,), w)))
        elif step == "ByteFallback" and not fused:
            per_token.append(None)
        else:
            raise ValueError(f"tokenizer.json: {w}.type {step!r} is not supported here "
                             "(known: Replace, ByteFallback, Fuse, then Strip)")

    def to_bytes(t):
        for step in per_token:
            if step is not None:
                t = t.replace(*step)
            elif BYTE_TOKEN_RE.fullmatch(t):
                return bytes([int(t[3:5], 16)])
        return t.encode("utf-8")
    return TokenDecoder([None if t is None else to_bytes(t) for t in tokens], strip=strip)


class BPEModel:
    """The file's `model`: one pre-tokenized piece -> ids. `ids` maps token text to id; `merges`
    is `read_merges`'s table. Byte-level: a piece starts as its UTF-8 bytes (GPT-2's alphabet);
    otherwise as its characters, each missing one as `<0xNN>` byte tokens (`byte_fallback`) or the
    unknown token (`unk_id`; `fuse_unk` makes a run of them one). `ignore_merges`: a piece that is
    itself in the vocabulary is taken whole (Llama 3)."""

    def __init__(self, ids, merges, byte_level, unk_id=None, fuse_unk=False, byte_fallback=False, ignore_merges=False):
        self.ids, self.merges, self.byte_level = ids, merges, byte_level
        self.unk_id, self.fuse_unk, self.byte_fallback, self.ignore_merges = unk_id, fuse_unk, byte_fallback, ignore_merges
        self.byte_ids = [ids.get(BYTE_TO_CHAR[b]) for b in range(256)]  # None: the vocabulary lacks that byte
        self._cache = {}  # piece -> ids

    def symbols(self, piece):  # str -> list of ids, before any merge
        if self.byte_level:
            ids = [self.byte_ids[b] for b in piece.encode("utf-8")]
            if None in ids:  # SmolLM2 has no token for bytes 0x04, 0x06, 0x13, ...: tokenizers drops them silently
                c = next(c for c in piece if None in [self.byte_ids[b] for b in c.encode("utf-8")])
                raise ValueError(f"character {c!r} (UTF-8 {c.encode('utf-8').hex(' ')}) has no token in this "
                                 "vocabulary: one of its bytes is missing from model.vocab and there is no unk_token")
            return ids
        out = []
        for c in piece:
            if c in self.ids:
                out.append(self.ids[c])
            elif self.byte_fallback and all(f"<0x{b:02X}>" in self.ids for b in c.encode("utf-8")):
                out += [self.ids[f"<0x{b:02X}>"] for b in c.encode("utf-8")]
            elif self.unk_id is None:
                raise ValueError(f"character {c!r} has no token, no byte fallback and the file names no unk_token")
            elif not (self.fuse_unk and out and out[-1] == self.unk_id):
                out.append(self.unk_id)
        return out

    def tokenize(self, piece):  # str -> list of ids
        ids = self._cache.get(piece)
        if ids is None:
            name = token_string(piece.encode("utf-8")) if self.byte_level else piece
            ids = [self.ids[name]] if self.ignore_merges and name in self.ids else bpe(self.symbols(piece), self.merges)
            if len(piece) <= CACHE_MAX_PIECE_CHARS and len(self._cache) < CACHE_MAX_ENTRIES:
                self._cache[piece] = ids
        return ids


def split_on_added(text, added, regex):  # str, {text: id}, their alternation -> [(str, first) or (id, None)]
    """`text` cut around the non-special added tokens in it, longest match first, left to right:
    `"a<x>b"` with `{"<x>": 7}` -> `[("a", True), (7, None), ("b", False)]`; `first`: the part starts the text."""
    parts, pos = [], 0
    for m in regex.finditer(text) if regex else []:
        if m.start() > pos:
            parts.append((text[pos:m.start()], pos == 0))
        parts.append((added[m.group()], None))
        pos = m.end()
    if pos < len(text):
        parts.append((text[pos:], pos == 0))
    return parts


def _check_encode_args(text, bos, bos_id):  # HFTokenizer.encode's arguments; raises, returns nothing
    """TypeError unless `text` is a str and `bos` a bool; ValueError for bos=True without a BOS id."""
    if not isinstance(text, str):
        raise TypeError(f"encode takes a str, got {type(text).__name__}")
    if not isinstance(bos, bool):
        raise TypeError(f"bos must be True or False, got {bos!r:.40}")
    if bos and bos_id is None:
        raise ValueError("bos=True, but this tokenizer has no BOS token (none in config.json, "
                         "generation_config.json or tokenizer_config.json)")


class HFTokenizer:
    """A Hugging Face tokenizer.json, read by `load_tokenizer`: `encode(text, bos=False) -> ids`, `decode(ids) -> text`.

    `kind`: "byte-level BPE" or "SentencePiece-style BPE"; `tokens[i]`: how the file spells id i
    (None: no such id); `special`: the control tokens' ids, which text never encodes to."""

    def __init__(self, tokens, model, normalizer, pre_tokenizer, decoder, added=(), special=(), bos_id=None, eos_ids=()):
        self.tokens, self.model = tokens, model
        self.normalizer, self.pre_tokenizer = normalizer, pre_tokenizer
        self.added = dict(added)  # text -> id of the non-special added tokens, matched in the text as they are
        self._added_re = re.compile("|".join(map(re.escape, sorted(self.added, key=len, reverse=True)))) if self.added else None
        self.special, self.decoder = set(special), decoder  # decoder: a TokenDecoder
        self.bos_id, self.eos_ids = bos_id, tuple(eos_ids)  # eos_ids: every id that ends a generation
        self.eos_id = self.eos_ids[0] if self.eos_ids else None
        self.vocab_size = len(tokens)  # ids 0..vocab_size - 1
        self.kind = "byte-level BPE" if model.byte_level else "SentencePiece-style BPE"

    def __repr__(self):
        return (f"HFTokenizer({self.kind}, vocab_size={self.vocab_size}, merges={len(self.model.merges)}, "
                f"bos_id={self.bos_id}, eos_id={self.eos_id})")

    def encode(self, text, bos=False):  # str -> list of ids
        """Token ids of `text`. Text that spells a special token (`<s>`, `<|endoftext|>`) is encoded
        as plain text, never as that token. A lone surrogate becomes U+FFFD first, as in day 7.
        `bos=True` puts `bos_id` first (ValueError if the model has none)."""
        _check_encode_args(text, bos, self.bos_id)
        ids = [self.bos_id] if bos else []
        for part, first in split_on_added(SURROGATE_RE.sub("\ufffd", text), self.added, self._added_re):
            if first is None:  # an added token's id
                ids.append(part)
                continue
            for piece in pre_tokenize(part, self.normalizer, self.pre_tokenizer, first):
                ids += self.model.tokenize(piece)
        return ids

    def decode(self, ids):  # list of ids -> str
        """The text of the ids (special tokens as their text); see `TokenDecoder.decode`."""
        return self.decoder.decode(ids)

    def stream_decoder(self):  # -> HFStreamDecoder: push(id) -> str, flush() -> str
        return self.decoder.stream_decoder()


def read_added_tokens(data, tokens):  # -> (non-special {text: id}, special ids); fills `tokens`
    """`added_tokens`: each `{"id", "content", "special", ...}` names id `id`. Special ones are only
    ever produced by `bos=True` or a model; non-special ones are matched in the text as they are."""
    added, special, contents = {}, set(), {}
    for k, t in enumerate(need(data, "added_tokens", (list,), "tokenizer.json", [])):
        w = f"added_tokens[{k}]"
        i, content = need(t, "id", (int,), w), need(t, "content", (str,), w)
        if i < 0 or not content:
            raise ValueError(f"tokenizer.json: {w} needs a non-negative id and non-empty content, got {i}, {content!r}")
        if i >= len(tokens) + len(data["added_tokens"]):  # ids are dense: checked before anything is allocated
            raise ValueError(f"tokenizer.json: {w}.id {i} leaves a gap: the file has only "
                             f"{len(tokens) + len(data['added_tokens'])} tokens in all")
        if i < len(tokens) and tokens[i] not in (None, content) or content in contents:
            raise ValueError(f"tokenizer.json: {w} ({i}, {content!r}) clashes with another token "
                             f"({tokens[i] if i < len(tokens) else contents[content]!r})")
        contents[content] = i
        if i >= len(tokens):
            tokens += [None] * (i + 1 - len(tokens))
        tokens[i] = content
        if need(t, "special", (bool,), w, False):
            special.add(i)
            continue
        for flag in ("lstrip", "rstrip", "single_word"):
            if need(t, flag, (bool,), w, False):
                raise ValueError(f"tokenizer.json: {w}.{flag} true is not supported for a non-special added token")
        if need(t, "normalized", (bool,), w, False) and data.get("normalizer") is not None:
            raise ValueError(f"tokenizer.json: {w}.normalized true is not supported with a normalizer")
        added[content] = i
    return added, special


def read_model(data):  # -> (vocab, tokens by id, merges, the model's options)
    model = need(data, "model", (dict,), "tokenizer.json")
    kind = need(model, "type", (str,), "model", "BPE" if "merges" in model else None)
    if kind != "BPE":
        raise ValueError(f"tokenizer.json: model.type {kind!r} is not supported: this reader runs BPE only "
                         "(WordPiece, WordLevel and Unigram models are different algorithms)")
    if need(model, "dropout", (int, float, type(None)), "model", None):
        raise ValueError("tokenizer.json: model.dropout must be null or 0 (dropout makes encoding random)")
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if need(model, key, (str, type(None)), "model", None):
            raise ValueError(f"tokenizer.json: model.{key} {model[key]!r} is not supported")
    vocab = read_vocab(model)
    n_added = len(data.get("added_tokens") or [])
    if max(vocab.values(), default=-1) >= len(vocab) + n_added:  # checked before a list of that size is made
        raise ValueError(f"tokenizer.json: model.vocab has an id of {max(vocab.values())}, but only {len(vocab)} "
                         f"tokens (+ {n_added} added): ids must be dense")
    tokens = [None] * (max(vocab.values(), default=-1) + 1)
    for name, i in vocab.items():
        tokens[i] = name
    unk = need(model, "unk_token", (str, type(None)), "model", None)
    if unk is not None and unk not in vocab:
        raise ValueError(f"tokenizer.json: model.unk_token {unk!r} is not in model.vocab")
    options = dict(unk_id=vocab.get(unk), fuse_unk=need(model, "fuse_unk", (bool,), "model", False),
                   byte_fallback=need(model, "byte_fallback", (bool,), "model", False),
                   ignore_merges=need(model, "ignore_merges", (bool,), "model", False))
    return vocab, tokens, read_merges(model, vocab), options


SPECIAL_FILES = (("generation_config.json", "{}_token_id"), ("config.json", "{}_token_id"),
                 ("tokenizer_config.json", "{}_token"))


def special_ids(folder, tokenizer_ids, vocab_size):  # -> (bos id or None, tuple of eos ids)
    """BOS and EOS from the model folder: generation_config.json, else config.json (`bos_token_id`,
    `eos_token_id`: an id, or a list of ids for EOS), else tokenizer_config.json (`bos_token`,
    `eos_token`: the token's text, or `{"content": text}`). Ids are checked against the vocabulary."""
    found = {}
    for name, key in SPECIAL_FILES:
        path = folder / name
        if not path.exists():
            continue
        conf = read_json(path, "BOS/EOS")
        if not isinstance(conf, dict):
            raise ValueError(f"{path} must hold a JSON object")
        for role in ("bos", "eos"):
            k = key.format(role)
            if role in found or conf.get(k) is None:
                continue
            value = conf[k]
            if name == "tokenizer_config.json":
                text = value.get("content") if isinstance(value, dict) else value
                if not isinstance(text, str) or text not in tokenizer_ids:
                    raise ValueError(f"{path}: {k} must name a token of tokenizer.json, got {value!r:.60}")
                ids = [tokenizer_ids[text]]
            else:
                ids = value if isinstance(value, list) and value else [value]
                if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < vocab_size for i in ids):
                    raise ValueError(f"{path}: {k} must be a token id in 0..{vocab_size - 1}"
                                     f"{' or a list of them' if role == 'eos' else ''}, got {value!r:.60}")
                if role == "bos" and len(ids) != 1:
                    raise ValueError(f"{path}: {k} must be one token id, got {value!r:.60}")
            found[role] = ids
    return found.get("bos", [None])[0], tuple(found.get("eos", ()))


def load_tokenizer(path):  # folder or tokenizer.json -> HFTokenizer
    """Read a Hugging Face tokenizer: a model folder, or its tokenizer.json (BOS/EOS from the files beside it).

    Runs the file's normalizer, pre-tokenizer, BPE model and decoder exactly (tests: llama.cpp's
    vectors, parity with `tokenizers`). Not run: `post_processor` (its template only adds special
    tokens; here `encode(text, bos=True)` does that), `truncation` and `padding` (batch options).
    Raises TypeError for a path that is not a str or Path, FileNotFoundError when there is no
    tokenizer.json, ValueError naming the file and JSON field for anything malformed or not
    implemented here (other model types, normalizers, pre-tokenizers, decoders, regex escapes)."""
    if not isinstance(path, (str, Path)):
        raise TypeError(f"load_tokenizer takes the path of a model folder or tokenizer.json, got {type(path).__name__}")
    path = Path(path)
    folder, file = (path, path / "tokenizer.json") if path.is_dir() else (path.parent, path)
    data = read_json(file, "tokenizer.json")
    if not isinstance(data, dict):
        raise ValueError(f"tokenizer.json: the file must hold a JSON object, got {type(data).__name__}")
    vocab, tokens, merges, options = read_model(data)
    added, special = read_added_tokens(data, tokens)
    try:  # Sequence inside Sequence is read recursively; a file could nest them thousands deep
        normalizer = load_normalizer(need(data, "normalizer", (dict, type(None)), "tokenizer.json", None))
        pre_tokenizer, byte_level = load_pre_tokenizer(need(data, "pre_tokenizer", (dict, type(None)), "tokenizer.json", None))
    except RecursionError:
        raise ValueError("tokenizer.json: the normalizer or pre_tokenizer nests Sequences too deeply") from None
    decoder = load_decoder(need(data, "decoder", (dict, type(None)), "tokenizer.json", None), tokens)
    ids = {t: i for i, t in enumerate(tokens) if t is not None}
    bos_id, eos_ids = special_ids(folder, ids, len(tokens))
    model = BPEModel(vocab, merges, byte_level, **options)  # the model's own vocabulary: no added tokens
    return HFTokenizer(tokens, model, normalizer, pre_tokenizer, decoder, added, special, bos_id, eos_ids)
