"""Run a real, third-party LLaMA checkpoint: read karpathy/llama2.c's legacy `.bin` model and `tok*.bin` tokenizer.

Hand-written, NOT promoted, and no notebook depends on it: it exists to show that the numpy
engine runs a model somebody else trained (the "tinyllamas", e.g. stories260K), which a
learner's fresh clone does not have. numpy and the standard library only.

The model file (llama2.c `export.py --version 0`, all little-endian) is

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
error. RoPE is on interleaved pairs, as in our engine, so no weight is permuted.

The tokenizer file is `int32 max_token_length`, then per token `float32 score, int32 length,
length bytes`. Ids 0, 1, 2 are <unk>, <s> (BOS), </s> (EOS); ids 3..258 are the byte tokens
<0x00>..<0xFF>. Encoding is llama2.c's `encode`: a greedy merge by score, not by merge rank.
"""

import struct
from pathlib import Path

import numpy as np

from tinyllm_lab.config import ModelConfig
from tinyllm_lab.model import LayerWeights, Model, ModelWeights

HEADER = struct.Struct("<7i")  # dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, max_seq_len
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
BYTE_OFFSET = 3                # byte b has the token id 3 + b (its piece is the text "<0xNN>")


# ----------------------------------------------------------------------------------------------
# The model file.

def config_from_header(raw, name="llama2c"):  # the file's bytes -> (ModelConfig, header tuple)
    """The architecture from the 7-int32 header; norm_eps 1e-5 and rope_theta 10000 are llama2.c's constants."""
    if len(raw) < HEADER.size:
        raise ValueError(f"{name}: the file is {len(raw)} bytes, too short for the {HEADER.size}-byte header "
                         "(7 int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, max_seq_len)")
    header = HEADER.unpack_from(raw, 0)
    dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, max_seq_len = header
    if min(dim, hidden_dim, n_layers, n_heads, n_kv_heads, max_seq_len) <= 0 or vocab_size == 0:
        raise ValueError(f"{name}: header {header} holds a size <= 0 (not a llama2.c legacy model file?)")
    if dim % n_heads != 0:
        raise ValueError(f"{name}: header says dim = {dim}, which n_heads = {n_heads} does not divide")
    try:
        config = ModelConfig(dim=dim, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads,
                             head_dim=dim // n_heads, hidden_dim=hidden_dim, vocab_size=abs(vocab_size),
                             max_seq_len=max_seq_len, norm_eps=1e-5, rope_theta=10000.0,
                             tie_embeddings=vocab_size > 0)
    except ValueError as e:
        raise ValueError(f"{name}: header {header} is not a valid model: {e}") from None
    return config, header


def file_layout(config):  # -> [(name, shape)] in file order
    """Every float32 array of the file, in order; the layers are stacked on a leading L axis."""
    c = config
    L, D, F, V, kv_dim = c.n_layers, c.dim, c.hidden_dim, c.vocab_size, c.n_kv_heads * c.head_dim
    layout = [("token_embedding", (V, D)), ("rms_att", (L, D)), ("wq", (L, D, D)), ("wk", (L, kv_dim, D)),
              ("wv", (L, kv_dim, D)), ("wo", (L, D, D)), ("rms_ffn", (L, D)), ("w1", (L, F, D)),
              ("w2", (L, D, F)), ("w3", (L, F, D)), ("rms_final", (D,)),
              ("freq_cis_real", (c.max_seq_len, c.head_dim // 2)), ("freq_cis_imag", (c.max_seq_len, c.head_dim // 2))]
    if not c.tie_embeddings:
        layout.append(("wcls", (V, D)))
    return layout


def read_arrays(raw, config, name="llama2c"):  # the file's bytes -> {name: float32 array}
    """Cut the bytes after the header into the arrays of `file_layout`; the sizes must add up to the file exactly."""
    layout = file_layout(config)
    expected = HEADER.size + 4 * sum(int(np.prod(shape)) for _, shape in layout)
    if len(raw) != expected:
        what = "missing" if len(raw) < expected else "left over"
        raise ValueError(f"{name}: the header {HEADER.unpack_from(raw, 0)} needs a file of {expected} bytes, "
                         f"found {len(raw)} ({abs(len(raw) - expected)} bytes {what})")
    floats = np.frombuffer(raw, dtype="<f4", offset=HEADER.size).astype(np.float32)  # one writable copy
    arrays, start = {}, 0
    for key, shape in layout:
        size = int(np.prod(shape))
        arrays[key] = floats[start:start + size].reshape(shape)
        start += size
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


def load_llama2c(path):  # -> Model
    """A `Model` from a llama2.c legacy `.bin` (e.g. stories260K.bin). ValueError if the file does not fit its header."""
    raw = Path(path).read_bytes()
    name = Path(path).name
    config, _ = config_from_header(raw, name)
    return Model(config, weights_from_arrays(read_arrays(raw, config, name), config))


# ----------------------------------------------------------------------------------------------
# The tokenizer file.

def read_tokenizer_file(raw, name="llama2c tokenizer"):  # bytes -> (pieces [bytes], scores [float], max_token_length)
    """Records `float32 score, int32 length, bytes` until the file ends; a partial record is an error."""
    if len(raw) < 4:
        raise ValueError(f"{name}: the file is {len(raw)} bytes, too short for the 4-byte header (int32 max_token_length)")
    (max_len,), offset = struct.unpack_from("<i", raw, 0), 4
    pieces, scores = [], []
    while offset < len(raw):
        token = len(pieces)
        if offset + 8 > len(raw):
            raise ValueError(f"{name}: token {token} at byte {offset} needs 8 bytes (score, length), "
                             f"found {len(raw) - offset}")
        score, length = struct.unpack_from("<fi", raw, offset)
        if not 0 < length <= max_len:
            raise ValueError(f"{name}: token {token} has length {length}, expected 1..{max_len} (max_token_length)")
        if offset + 8 + length > len(raw):
            raise ValueError(f"{name}: token {token} needs {length} bytes at byte {offset + 8}, "
                             f"found {len(raw) - offset - 8}")
        pieces.append(raw[offset + 8:offset + 8 + length])
        scores.append(score)
        offset += 8 + length
    if len(pieces) < BYTE_OFFSET + 256:
        raise ValueError(f"{name}: {len(pieces)} tokens, expected at least {BYTE_OFFSET + 256} "
                         "(<unk>, <s>, </s> and the 256 byte tokens)")
    return pieces, scores, max_len


class Llama2cTokenizer:
    """llama2.c's SentencePiece-style tokenizer: pieces with scores, merged greedily by score, byte fallback."""

    def __init__(self, pieces, scores):
        if len(pieces) != len(scores):
            raise ValueError(f"Llama2cTokenizer: {len(pieces)} pieces but {len(scores)} scores")
        self.pieces, self.scores = list(pieces), list(scores)
        self.ids = {}
        for i, piece in enumerate(self.pieces):
            self.ids.setdefault(piece, i)  # piece bytes -> id (the first one, were a piece listed twice)

    @classmethod
    def load(cls, path, vocab_size=None):  # -> Llama2cTokenizer
        """Read a llama2.c `tok*.bin`; if `vocab_size` is given (the model's), the file must hold exactly that many tokens."""
        name = Path(path).name
        pieces, scores, _ = read_tokenizer_file(Path(path).read_bytes(), name)
        if vocab_size is not None and len(pieces) != vocab_size:
            raise ValueError(f"{name}: holds {len(pieces)} tokens, the model's vocab_size is {vocab_size}")
        return cls(pieces, scores)

    @property
    def vocab_size(self):
        return len(self.pieces)

    def encode(self, text, bos=True, eos=False):  # str -> list of ids
        """llama2.c's `encode`: " " + text, one token per character (or its byte tokens), then merge the best pair.

        Each round merges the adjacent pair whose concatenated piece is in the vocabulary with the
        highest score (the leftmost of equals), until no pair's concatenation is a piece.
        Like llama2.c, a merge may produce any piece, byte-token text such as "<0x41>" included.
        """
        ids = [self.ids[b" "]] if text else []                  # SentencePiece's dummy prefix
        for char in text:
            data = char.encode("utf-8")
            ids.extend([self.ids[data]] if data in self.ids else [BYTE_OFFSET + b for b in data])
        while True:
            best = None                                         # (score, index, merged id)
            for i in range(len(ids) - 1):
                merged = self.ids.get(self.pieces[ids[i]] + self.pieces[ids[i + 1]])
                if merged is not None and (best is None or self.scores[merged] > best[0]):
                    best = (self.scores[merged], i, merged)
            if best is None:
                break
            _, i, merged = best
            ids[i:i + 2] = [merged]
        return [BOS_ID] * bos + ids + [EOS_ID] * eos

    def token_bytes(self, token_id, previous=None):  # id -> bytes, as llama2.c's `decode` prints it
        """A byte token is its byte; <unk>, <s>, </s> are no text; a piece after BOS loses its leading space."""
        if not 0 <= token_id < len(self.pieces):
            raise ValueError(f"token id {token_id} is outside the vocabulary 0..{len(self.pieces) - 1}")
        if token_id in (UNK_ID, BOS_ID, EOS_ID):
            return b""
        if BYTE_OFFSET <= token_id < BYTE_OFFSET + 256:
            return bytes([token_id - BYTE_OFFSET])
        piece = self.pieces[token_id]
        return piece[1:] if previous == BOS_ID and piece.startswith(b" ") else piece

    def decode(self, ids):  # list of ids -> str
        """The text of `ids`; bytes that are not valid UTF-8 become U+FFFD."""
        ids = [int(i) for i in ids]
        data = b"".join(self.token_bytes(t, prev) for prev, t in zip([None] + ids[:-1], ids))
        return data.decode("utf-8", errors="replace")
