"""Run a real, third-party LLaMA checkpoint: read karpathy/llama2.c's legacy `.bin` model and `tok*.bin` tokenizer.

Hand-written, NOT promoted, and no notebook depends on it: it exists to show that the numpy
engine runs a model somebody else trained (the "tinyllamas", e.g. stories260K), which a
learner's fresh clone does not have. numpy and the standard library only. Source: llama2.c's
`export.py --version 0` (legacy_export), `tokenizer.py` (export) and `run.c` (encode, decode).

The model file (all little-endian) is

    header   7 x int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, max_seq_len
             (vocab_size < 0: the output head is its own matrix, stored last; > 0: tied to the embedding)
    float32, row-major, back to back, W always [out_features, in_features]:
             token_embedding [V, D]      rms_att [L, D]       wq [L, D, D]        wk [L, KD, D]
             wv [L, KD, D]               wo [L, D, D]         rms_ffn [L, D]      w1 [L, F, D]
             w2 [L, D, F]                w3 [L, F, D]         rms_final [D]
             freq_cis_real [S_max, Dh/2] freq_cis_imag [S_max, Dh/2]   (old RoPE tables: skipped)
             wcls [V, D]                 (only when untied)

with L layers, KD = n_kv_heads * dim / n_heads (the key/value width) and Dh = dim / n_heads.
Nothing else is in the file, so its size is fixed by the header: a missing or extra byte is an
error. Every header number is checked, and the size it implies (computed with Python integers,
which do not overflow) is compared with the file's size before anything is read or allocated.
RoPE is on interleaved pairs, as in our engine, so no weight is permuted.

The tokenizer file is `uint32 max_token_length`, then per token `float32 score, uint32 length,
length bytes`. Ids 0, 1, 2 are <unk>, <s> (BOS), </s> (EOS). When ids 3..258 are the byte tokens
<0x00>..<0xFF> the vocabulary has byte fallback (a character without a token becomes its UTF-8
bytes); a vocabulary trained without byte fallback (llama2.c's `tokenizer.py` exports those too)
turns such a character into <unk>, as SentencePiece does. Encoding is llama2.c's `encode`: a
greedy merge by score, not by merge rank.
"""

import codecs
import heapq
import math
import operator
import os
import stat
import struct
from pathlib import Path

import numpy as np

from tinyllm_lab.config import ModelConfig
from tinyllm_lab.model import LayerWeights, Model, ModelWeights
from tinyllm_lab.weights import CONTEXT_CAP

HEADER = struct.Struct("<7i")  # dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, max_seq_len
HEADER_FIELDS = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "max_seq_len")
VERSIONED_MAGIC = 0x616B3432  # "ak42": llama2.c's `export.py --version 1` / `--version 2` files start with it
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
BYTE_OFFSET = 3                # with byte fallback, byte b has the token id 3 + b (its piece is the text "<0xNN>")
UNK_TEXT = " \u2047 "          # what SentencePiece's decode writes for <unk>: " ⁇ "
MAX_TOKENIZER_BYTES = 1 << 30  # a tokenizer file is a few MB; anything over 1 GiB is not one


# ----------------------------------------------------------------------------------------------
# Files: only regular files, their size known before they are read.

def regular_file(path, what):  # path -> (Path, size in bytes)
    """`path` as a Path and its size; FileNotFoundError if absent, ValueError if not a regular file.

    A device (/dev/zero), a pipe or a folder has no size to check against a header, and reading
    one may never end: refuse it by name.
    """
    try:
        path = Path(path)
    except TypeError:
        raise TypeError(f"{what}: expected a path (str or os.PathLike), got {type(path).__name__}") from None
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    except OSError as e:
        raise ValueError(f"{what} {path} cannot be read: {e.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a device, pipe or socket"
        raise ValueError(f"{what} {path} is {kind}, not a regular file")
    return path, info.st_size


# ----------------------------------------------------------------------------------------------
# The model file.

def check_header(header, name):  # 7 ints -> None, or ValueError listing every bad number by name
    """Every header number must be a size > 0 (vocab_size != 0, its sign is the tying flag), and fit together."""
    values = dict(zip(HEADER_FIELDS, header))
    bad = [f"{key} = {value}" for key, value in values.items()
           if (value == 0 if key == "vocab_size" else value <= 0)]
    if bad:
        raise ValueError(f"{name}: header field{'s' * (len(bad) > 1)} {', '.join(bad)} must be > 0 "
                         f"(header {header}; not a llama2.c legacy model file?)")
    dim, n_heads, n_kv_heads = values["dim"], values["n_heads"], values["n_kv_heads"]
    if dim % n_heads != 0:
        raise ValueError(f"{name}: header says dim = {dim}, which n_heads = {n_heads} does not divide")
    if (dim // n_heads) % 2 != 0:
        raise ValueError(f"{name}: header gives head_dim = dim / n_heads = {dim // n_heads}, which must be even for RoPE pairs")
    if n_heads % n_kv_heads != 0:
        raise ValueError(f"{name}: header says n_heads = {n_heads}, which is not divisible by n_kv_heads = {n_kv_heads}")


def file_layout(header):  # 7 header ints -> [(name, shape)] in file order, all Python ints
    """Every float32 array of the file, in order; the layers are stacked on a leading L axis."""
    D, F, L, H, K, V, S = header
    Dh = D // H
    V, kv_dim = abs(V), K * Dh
    layout = [("token_embedding", (V, D)), ("rms_att", (L, D)), ("wq", (L, D, D)), ("wk", (L, kv_dim, D)),
              ("wv", (L, kv_dim, D)), ("wo", (L, D, D)), ("rms_ffn", (L, D)), ("w1", (L, F, D)),
              ("w2", (L, D, F)), ("w3", (L, F, D)), ("rms_final", (D,)),
              ("freq_cis_real", (S, Dh // 2)), ("freq_cis_imag", (S, Dh // 2))]
    if header[5] < 0:
        layout.append(("wcls", (V, D)))
    return layout


def expected_bytes(header):  # -> the exact size of a file with this header (Python int: no overflow)
    return HEADER.size + 4 * sum(math.prod(shape) for _, shape in file_layout(header))


def context_length(max_seq_len, trained, name):  # the caller's max_seq_len, the header's -> int
    """The positions the KV cache and RoPE tables will hold: default min(trained, 4096), never above `trained`."""
    if max_seq_len is None:
        return min(trained, CONTEXT_CAP)  # the same default as a Hugging Face folder's
    if isinstance(max_seq_len, bool) or not isinstance(max_seq_len, (int, np.integer)):
        raise TypeError(f"max_seq_len must be an integer or None, got {max_seq_len!r}")
    if not 0 < max_seq_len <= trained:
        raise ValueError(f"max_seq_len = {max_seq_len} is outside 1..{trained}, the context {name} was trained "
                         "for (its header's max_seq_len)")
    return int(max_seq_len)


def config_from_header(header, context, name="llama2c"):  # 7 checked ints, int -> ModelConfig
    """The architecture from the header; norm_eps 1e-5 and rope_theta 10000 are llama2.c's constants."""
    dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, _ = header
    try:
        return ModelConfig(dim=dim, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads,
                           head_dim=dim // n_heads, hidden_dim=hidden_dim, vocab_size=abs(vocab_size),
                           max_seq_len=context, norm_eps=1e-5, rope_theta=10000.0, tie_embeddings=vocab_size > 0)
    except ValueError as e:
        raise ValueError(f"{name}: header {header} is not a valid model: {e}") from None


def read_arrays(path, header, name="llama2c"):  # -> {name: float32 array}, views into one array read from the file
    """Read the floats after the header in one go (no second copy) and cut them into `file_layout`'s arrays."""
    layout = file_layout(header)
    count = sum(math.prod(shape) for _, shape in layout)
    floats = np.fromfile(path, dtype="<f4", count=count, offset=HEADER.size)  # [count], writable, float32
    if floats.size != count:  # the file changed under us since its size was checked
        raise ValueError(f"{name}: expected {count} floats after the header, read {floats.size}")
    arrays, start = {}, 0
    for key, shape in layout:
        size = math.prod(shape)
        arrays[key] = floats[start:start + size].reshape(shape)
        start += size
    bad = [f"{key} ({np.count_nonzero(~np.isfinite(a))} values)" for key, a in arrays.items()
           if not key.startswith("freq_cis") and not np.isfinite(a).all()]
    if bad:
        shown = ", ".join(bad[:5]) + (f", ... and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(f"{name}: non-finite weights (nan or inf) in {shown}")
    return arrays


def weights_from_arrays(arrays, config):  # {name: array} -> ModelWeights
    """llama2.c names -> ours: rms_att = attention_norm, rms_ffn = ffn_norm, rms_final = norm, wcls = output."""
    def layer(i):
        return LayerWeights(attention_norm=arrays["rms_att"][i], wq=arrays["wq"][i], wk=arrays["wk"][i],
                            wv=arrays["wv"][i], wo=arrays["wo"][i], ffn_norm=arrays["rms_ffn"][i],
                            w1=arrays["w1"][i], w2=arrays["w2"][i], w3=arrays["w3"][i])
    embeddings = arrays["token_embedding"]
    return ModelWeights(tok_embeddings=embeddings, layers=[layer(i) for i in range(config.n_layers)],
                        norm=arrays["rms_final"],
                        output=embeddings if config.tie_embeddings else arrays["wcls"])


def read_header(path, size, name):  # -> 7 ints, checked, and the file's size equal to what they imply
    with open(path, "rb") as f:
        raw = f.read(HEADER.size)
    if size < HEADER.size:
        raise ValueError(f"{name}: the file is {size} bytes, too short for the {HEADER.size}-byte header "
                         f"(7 int32: {', '.join(HEADER_FIELDS)})")
    header = HEADER.unpack(raw)
    if header[0] == VERSIONED_MAGIC:
        raise ValueError(f"{name}: a llama2.c version {header[1]} export (magic \"ak42\"); only the legacy "
                         "format is read here: export it again with llama2.c's `export.py --version 0`")
    check_header(header, name)
    expected = expected_bytes(header)
    if size != expected:
        what = "missing" if size < expected else "left over"
        raise ValueError(f"{name}: the header {header} needs a file of {expected} bytes, "
                         f"found {size} ({abs(size - expected)} bytes {what})")
    return header


def load_llama2c(path, max_seq_len=None):  # -> Model
    """A `Model` from a llama2.c legacy `.bin` (e.g. stories260K.bin).

    `max_seq_len` sizes the KV cache and RoPE tables: default min(the header's max_seq_len, 4096),
    at most the header's. Raises FileNotFoundError if `path` is absent, ValueError (naming the
    file and the header field) if it is not a regular file or does not fit its header, or holds a
    non-finite weight; TypeError / ValueError for a bad `max_seq_len`.
    """
    path, size = regular_file(path, "llama2.c model")
    name = str(path)
    header = read_header(path, size, name)
    config = config_from_header(header, context_length(max_seq_len, header[6], name), name)
    return Model(config, weights_from_arrays(read_arrays(path, header, name), config))


# ----------------------------------------------------------------------------------------------
# The tokenizer file.

def read_tokenizer_file(raw, name="llama2c tokenizer"):  # bytes -> (pieces [bytes], scores [float], max_token_length)
    """Records `float32 score, uint32 length, bytes` until the file ends; a partial record or a bad number is an error."""
    if len(raw) < 4:
        raise ValueError(f"{name}: the file is {len(raw)} bytes, too short for the 4-byte header (uint32 max_token_length)")
    (max_len,), offset = struct.unpack_from("<I", raw, 0), 4
    if max_len == 0:
        raise ValueError(f"{name}: max_token_length is 0; it must be the length of the longest token (> 0)")
    pieces, scores = [], []
    while offset < len(raw):
        token = len(pieces)
        if offset + 8 > len(raw):
            raise ValueError(f"{name}: token {token} at byte {offset} needs 8 bytes (score, length), "
                             f"found {len(raw) - offset}")
        score, length = struct.unpack_from("<fI", raw, offset)
        if not math.isfinite(score):
            raise ValueError(f"{name}: token {token} has score {score}, expected a finite number")
        if not 0 < length <= max_len:
            raise ValueError(f"{name}: token {token} has length {length}, expected 1..{max_len} (max_token_length)")
        if offset + 8 + length > len(raw):
            raise ValueError(f"{name}: token {token} needs {length} bytes at byte {offset + 8}, "
                             f"found {len(raw) - offset - 8}")
        pieces.append(raw[offset + 8:offset + 8 + length])
        scores.append(score)
        offset += 8 + length
    if len(pieces) < BYTE_OFFSET:
        raise ValueError(f"{name}: {len(pieces)} tokens, expected at least {BYTE_OFFSET} (<unk>, <s>, </s>)")
    return pieces, scores, max_len


def has_byte_fallback(pieces):  # list of bytes -> bool
    """True when ids 3..258 are exactly the byte tokens <0x00>..<0xFF>, as SentencePiece's byte_fallback lays them out."""
    return len(pieces) >= BYTE_OFFSET + 256 and all(
        pieces[BYTE_OFFSET + b] == f"<0x{b:02X}>".encode() for b in range(256))


class Llama2cTokenizer:
    """llama2.c's SentencePiece-style tokenizer: pieces with scores, merged greedily by score.

    The common tokenizer API: `encode(text, bos=False)`, `decode(ids)`, `bos_id` (1), `eos_id` (2),
    `vocab_size`, `stream_decoder()`. `byte_fallback` says whether a character without a token
    becomes its byte tokens (True) or <unk> (False; decoded as " ⁇ ", as SentencePiece does).
    """

    bos_id, eos_id, unk_id = BOS_ID, EOS_ID, UNK_ID

    def __init__(self, pieces, scores):
        if len(pieces) != len(scores):
            raise ValueError(f"Llama2cTokenizer: {len(pieces)} pieces but {len(scores)} scores")
        if len(pieces) < BYTE_OFFSET:
            raise ValueError(f"Llama2cTokenizer: {len(pieces)} pieces, expected at least 3 (<unk>, <s>, </s>)")
        self.pieces, self.scores = [bytes(p) for p in pieces], [float(s) for s in scores]
        self.byte_fallback = has_byte_fallback(self.pieces)
        self.ids = {}
        for i, piece in enumerate(self.pieces):
            if i not in (UNK_ID, BOS_ID, EOS_ID):  # control tokens are never made from text
                self.ids.setdefault(piece, i)  # piece bytes -> id (the first one, were a piece listed twice)

    @classmethod
    def load(cls, path, vocab_size=None):  # -> Llama2cTokenizer
        """Read a llama2.c `tok*.bin`; if `vocab_size` is given (the model's), the file must hold exactly that many tokens.

        FileNotFoundError if absent; ValueError (naming the file) if it is not a regular file, is
        over 1 GiB, or is malformed (see `read_tokenizer_file`).
        """
        path, size = regular_file(path, "llama2.c tokenizer")
        name = str(path)
        if size > MAX_TOKENIZER_BYTES:
            raise ValueError(f"{name}: {size} bytes, more than any tokenizer file (limit {MAX_TOKENIZER_BYTES} bytes)")
        pieces, scores, _ = read_tokenizer_file(path.read_bytes(), name)
        if vocab_size is not None and len(pieces) != vocab_size:
            raise ValueError(f"{name}: holds {len(pieces)} tokens, the model's vocab_size is {vocab_size}")
        return cls(pieces, scores)

    def __repr__(self):
        return f"Llama2cTokenizer(vocab_size={self.vocab_size}, byte_fallback={self.byte_fallback})"

    @property
    def vocab_size(self):
        return len(self.pieces)

    def char_ids(self, char):  # one character -> its ids before merging
        if "\ud800" <= char <= "\udfff":  # a lone surrogate (bytes Python could not decode) has no UTF-8
            char = "\ufffd"
        data = char.encode("utf-8")
        if data in self.ids:
            return [self.ids[data]]
        return [BYTE_OFFSET + b for b in data] if self.byte_fallback else [UNK_ID]

    def encode(self, text, bos=False, eos=False):  # str -> list of ids
        """llama2.c's `encode`: " " + text, one token per character (or its byte tokens, or <unk>), then merge the best pair.

        Each round merges the adjacent pair whose concatenated piece is in the vocabulary with the
        highest score (the leftmost of equals), until no pair's concatenation is a piece.
        Like llama2.c, a merge may produce any piece, byte-token text such as "<0x41>" included;
        <unk> is never merged. Text that looks like "<s>" is text, never BOS. A lone surrogate
        (from bytes that were not UTF-8) is encoded as U+FFFD.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}")
        for name, flag in (("bos", bos), ("eos", eos)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        ids = []
        for char in " " + text if text else "":               # " ": SentencePiece's dummy prefix
            ids.extend(self.char_ids(char))
        return [BOS_ID] * bos + self.merge(ids) + [EOS_ID] * eos

    def merge_candidate(self, a, b):  # two ids -> (score, merged id), or None if their pieces make no piece
        if UNK_ID in (a, b):
            return None
        merged = self.ids.get(self.pieces[a] + self.pieces[b])
        return None if merged is None else (self.scores[merged], merged)

    def merge(self, ids):  # list of ids -> list of ids: the best-scoring pair first, until none is left
        """The rule of `encode`, in O(n log n) rather than llama2.c's O(n^2) rescan of every pair each round.

        The symbols form a linked list over their first positions; a heap holds the candidate
        pairs as (-score, position of the left symbol, left id, right id, merged id), so it pops
        the best score and, among equals, the leftmost pair, as the rescan would. A merge adds the
        two pairs it creates; entries whose symbols have changed since are skipped when popped.
        """
        n = len(ids)
        symbol = list(ids)                  # symbol[i]: the id starting at position i, None once merged away
        right = list(range(1, n + 1))       # right[i]: the next live position (n: none)
        left = list(range(-1, n - 1))       # left[i]: the previous live position (-1: none)
        heap = []

        def push(i):                        # the pair starting at live position i, if it merges
            j = right[i]
            found = self.merge_candidate(symbol[i], symbol[j]) if j < n else None
            if found is not None:
                heapq.heappush(heap, (-found[0], i, symbol[i], symbol[j], found[1]))

        for i in range(n - 1):
            push(i)
        while heap:
            _, i, a, b, merged = heapq.heappop(heap)
            j = right[i]
            if symbol[i] != a or j >= n or symbol[j] != b:
                continue                    # stale: one of the two changed since this entry was pushed
            symbol[i], symbol[j] = merged, None
            right[i] = right[j]
            if right[j] < n:
                left[right[j]] = i
            if left[i] >= 0:
                push(left[i])
            push(i)
        return [s for s in symbol if s is not None]

    def token_bytes(self, token_id, previous=None):  # id -> bytes, as llama2.c's `decode` prints it
        """A byte token is its byte; <s>, </s> are no text, <unk> is " ⁇ "; a piece after BOS loses its leading space."""
        try:
            token_id = operator.index(token_id)
        except TypeError:
            raise TypeError(f"token id {token_id!r} is not an integer") from None
        if not 0 <= token_id < len(self.pieces):
            raise ValueError(f"token id {token_id} is outside the vocabulary 0..{len(self.pieces) - 1}")
        if token_id in (BOS_ID, EOS_ID):
            return b""
        if token_id == UNK_ID:
            return UNK_TEXT.encode("utf-8")
        if self.byte_fallback and BYTE_OFFSET <= token_id < BYTE_OFFSET + 256:
            return bytes([token_id - BYTE_OFFSET])
        piece = self.pieces[token_id]
        return piece[1:] if previous == BOS_ID and piece.startswith(b" ") else piece

    def decode(self, ids):  # list of ids -> str
        """The text of `ids`; bytes that are not valid UTF-8 become U+FFFD.

        The text starts after BOS whether or not `ids` begins with it (as SentencePiece decodes, and
        as llama2.c prints a generation, whose first token always follows BOS): so the first
        piece loses its leading space, the dummy prefix `encode` added, and
        `decode(encode(text)) == text`. TypeError for text or None in place of ids.
        """
        if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
            raise TypeError(f"decode takes a list of token ids, got {type(ids).__name__}: "
                            "to get ids from text, use encode")
        stream = self.stream_decoder()
        return "".join(stream.push(i) for i in ids) + stream.flush()

    def stream_decoder(self):  # -> Llama2cStreamDecoder
        return Llama2cStreamDecoder(self)


class Llama2cStreamDecoder:
    """Text for ids that arrive one at a time: `push(id) -> str` holds back an unfinished character, `flush() -> str`.

    Joined, the pieces equal `tokenizer.decode(all ids)`; it remembers the previous id for the
    space-after-BOS rule, and starts as if after BOS (see `Llama2cTokenizer.decode`).
    """

    def __init__(self, tokenizer):
        self.tokenizer, self.previous = tokenizer, BOS_ID
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id):  # id -> str
        data = self.tokenizer.token_bytes(token_id, self.previous)
        self.previous = operator.index(token_id)
        return self._utf8.decode(data)

    def flush(self):  # -> str
        return self._utf8.decode(b"", final=True)
