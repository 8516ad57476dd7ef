"""A real third-party model: karpathy's stories260K (llama2.c legacy .bin) and its tok512.bin tokenizer.

The checkpoint lives outside the repository, in ../shared/models/stories260K/ (see its README):
a fresh clone does not have it, so this whole module skips when it is absent.

Known answers come from that README (architecture, sha256, llama2.c's greedy output). The
PyTorch parity test reads the file with its own few lines, so a wrong cut of the file by the
loader shows up there too; the encoder is checked against a brute-force transcription of
llama2.c's merge rule, and against the ids the model itself generates.
"""

import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

MODEL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "stories260K"
MODEL_BIN, TOKENIZER_BIN = MODEL_DIR / "stories260K.bin", MODEL_DIR / "tok512.bin"

if not (MODEL_BIN.is_file() and TOKENIZER_BIN.is_file()):
    pytest.skip(f"the stories260K checkpoint is not here ({MODEL_DIR.name}/ with stories260K.bin and tok512.bin "
                "must sit in ../shared/models/ next to the repository): nothing to test against",
                allow_module_level=True)

import torch  # noqa: E402  (after the skip: no checkpoint, no torch import)

from tinyllm_lab import reference  # noqa: E402
from tinyllm_lab.config import ModelConfig  # noqa: E402
from tinyllm_lab.llama2c import BOS_ID, EOS_ID, Llama2cTokenizer, load_llama2c  # noqa: E402
from tinyllm_lab.session import Session  # noqa: E402

# From the README of ../shared/models/stories260K/.
README_CONFIG = ModelConfig(dim=64, n_layers=5, n_heads=8, n_kv_heads=4, head_dim=8, hidden_dim=172,
                            vocab_size=512, max_seq_len=512, norm_eps=1e-5, rope_theta=10000.0, tie_embeddings=True)
SHA256 = {MODEL_BIN: "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696",
          TOKENIZER_BIN: "037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312"}
MODEL_BYTES = 1_056_540
KNOWN_TEXT = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
              "One day, she saw a big, red ball.")

SENTENCES = [
    "Once upon a time",
    "Once upon a time, there was a little girl named Lily.",
    'She said, "I can\'t find it!"\nThe end.',
    "  two leading spaces, and   three inside",
    "a",
    "",
    "café naïve — 日本語 🙂",   # characters with no token: byte fallback
    "<0x41> is not a token",   # byte-token text typed as text: stays text (no "<0" piece here)
]


@pytest.fixture(scope="module")
def model():
    return load_llama2c(MODEL_BIN)


@pytest.fixture(scope="module")
def tok():
    return Llama2cTokenizer.load(TOKENIZER_BIN, vocab_size=README_CONFIG.vocab_size)


# ---------------------------------------------------------------------------------------------
# An independent reading of both files, for the cross-checks.

def torch_state_dict(path):  # -> {Meta name: tensor}, read with the test's own cursor over the file
    raw = path.read_bytes()
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = struct.unpack("<7i", raw[:28])
    floats = np.frombuffer(raw, "<f4", offset=28)
    kv_dim, cursor = n_kv_heads * dim // n_heads, 0

    def take(*shape):
        nonlocal cursor
        n = int(np.prod(shape))
        cursor += n
        return torch.from_numpy(floats[cursor - n:cursor].reshape(shape).astype(np.float32))

    emb = take(abs(vocab), dim)
    stacked = {"attention_norm.weight": take(n_layers, dim), "attention.wq.weight": take(n_layers, dim, dim),
               "attention.wk.weight": take(n_layers, kv_dim, dim), "attention.wv.weight": take(n_layers, kv_dim, dim),
               "attention.wo.weight": take(n_layers, dim, dim), "ffn_norm.weight": take(n_layers, dim),
               "feed_forward.w1.weight": take(n_layers, hidden, dim),
               "feed_forward.w2.weight": take(n_layers, dim, hidden),
               "feed_forward.w3.weight": take(n_layers, hidden, dim)}
    sd = {"tok_embeddings.weight": emb, "norm.weight": take(dim)}
    take(seq_len, dim // n_heads)  # the two legacy RoPE tables [seq_len, head_dim / 2] each
    sd["output.weight"] = emb if vocab > 0 else take(abs(vocab), dim)
    assert cursor == floats.size, "the test's own reading must consume the file"
    for name, t in stacked.items():
        sd.update({f"layers.{i}.{name}": t[i] for i in range(n_layers)})
    return sd


def read_pieces(path):  # -> (pieces [bytes], scores [float]), the test's own reading of tok512.bin
    raw, offset, pieces, scores = path.read_bytes(), 4, [], []
    while offset < len(raw):
        score, n = struct.unpack_from("<fi", raw, offset)
        pieces.append(raw[offset + 8:offset + 8 + n])
        scores.append(score)
        offset += 8 + n
    return pieces, scores


def brute_force_encode(text, pieces, scores):  # llama2.c's rule, written on piece strings
    vocab = {}
    for i, p in enumerate(pieces):
        vocab.setdefault(p, i)
    parts = []
    for ch in " " + text if text else "":
        b = ch.encode("utf-8")
        parts += [b] if b in vocab else [f"<0x{x:02X}>".encode() for x in b]
    while True:
        candidates = [(scores[vocab[a + b]], -i) for i, (a, b) in enumerate(zip(parts, parts[1:])) if a + b in vocab]
        if not candidates:
            return [BOS_ID] + [vocab[p] for p in parts]
        _, minus_i = max(candidates)  # highest score, then the leftmost pair
        i = -minus_i
        parts[i:i + 2] = [parts[i] + parts[i + 1]]


# ---------------------------------------------------------------------------------------------
# The model.

def test_files_are_the_readme_files():
    for path, digest in SHA256.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, path.name


def test_config_from_header_matches_readme(model):
    assert model.config == README_CONFIG
    assert model.weights.output is model.weights.tok_embeddings  # shared head: one array
    assert all(w.dtype == np.float32 for w in (model.weights.tok_embeddings, model.weights.layers[4].w2))


def test_greedy_from_bos_gives_the_known_story(model, tok):
    out = Session(model, eos_id=None).generate([BOS_ID], 200, temperature=0.0)
    text = tok.decode([BOS_ID] + out)
    assert len(out) == 200
    assert text.startswith(KNOWN_TEXT), text[:200]
    # The model was trained on SentencePiece's ids: its first tokens are how "Once upon a time" is encoded.
    once = tok.encode("Once upon a time", bos=False)
    assert out[:len(once)] == once


def test_logits_match_pytorch_prefill_and_decode(model, tok):
    ref = reference.Transformer(README_CONFIG).eval()
    ref.load_state_dict(torch_state_dict(MODEL_BIN), strict=True)
    prompt = tok.encode("Once upon a time, there was")
    cache = model.new_cache()
    ours = [model.forward(prompt, cache)]                                       # prefill, [T, V]
    with torch.inference_mode():
        theirs = [ref(torch.tensor([prompt]), start_pos=0)[0].numpy()]
        for step, token in enumerate([261, 378, 404]):                          # decode, one token at a time
            ours.append(model.forward([token], cache))
            theirs.append(ref(torch.tensor([[token]]), start_pos=len(prompt) + step)[0].numpy())
    for a, b in zip(ours, theirs):
        assert a.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
    assert cache.pos == len(prompt) + 3


# ---------------------------------------------------------------------------------------------
# Malformed model files.

def test_truncated_file_is_refused(tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(MODEL_BIN.read_bytes()[:-100])
    with pytest.raises(ValueError, match=f"needs a file of {MODEL_BYTES} bytes, found {MODEL_BYTES - 100}"):
        load_llama2c(path)


def test_one_extra_byte_is_refused(tmp_path):
    path = tmp_path / "long.bin"
    path.write_bytes(MODEL_BIN.read_bytes() + b"\0")
    with pytest.raises(ValueError, match=f"needs a file of {MODEL_BYTES} bytes, found {MODEL_BYTES + 1}.*left over"):
        load_llama2c(path)


@pytest.mark.parametrize("n_bytes", [0, 27])
def test_truncated_header_is_refused(tmp_path, n_bytes):
    path = tmp_path / "header.bin"
    path.write_bytes(MODEL_BIN.read_bytes()[:n_bytes])
    with pytest.raises(ValueError, match=f"{n_bytes} bytes, too short for the 28-byte header"):
        load_llama2c(path)


@pytest.mark.parametrize("header, match", [
    ((64, 172, 5, 7, 7, 512, 512), "dim = 64, which n_heads = 7 does not divide"),
    ((64, 172, 5, 8, 3, 512, 512), "not divisible by n_kv_heads = 3"),
    ((64, 172, 0, 8, 4, 512, 512), "size <= 0"),
])
def test_bad_header_is_refused(tmp_path, header, match):
    path = tmp_path / "bad.bin"
    path.write_bytes(struct.pack("<7i", *header) + MODEL_BIN.read_bytes()[28:])
    with pytest.raises(ValueError, match=match):
        load_llama2c(path)


def test_negative_vocab_reads_an_untied_head_last(tmp_path, model):
    raw = MODEL_BIN.read_bytes()
    header = list(struct.unpack("<7i", raw[:28]))
    header[5] = -header[5]
    untied = struct.pack("<7i", *header) + raw[28:]
    missing = tmp_path / "missing_wcls.bin"
    missing.write_bytes(untied)
    with pytest.raises(ValueError, match=f"needs a file of {MODEL_BYTES + 512 * 64 * 4} bytes, found {MODEL_BYTES}"):
        load_llama2c(missing)
    head = np.arange(512 * 64, dtype="<f4").reshape(512, 64) / np.float32(512 * 64)
    path = tmp_path / "untied.bin"
    path.write_bytes(untied + head.tobytes())
    loaded = load_llama2c(path)
    assert not loaded.config.tie_embeddings and loaded.config.vocab_size == 512
    np.testing.assert_array_equal(loaded.weights.output, head)
    np.testing.assert_array_equal(loaded.weights.tok_embeddings, model.weights.tok_embeddings)


# ---------------------------------------------------------------------------------------------
# The tokenizer.

def test_tokenizer_layout(tok):
    pieces, _ = read_pieces(TOKENIZER_BIN)
    assert tok.vocab_size == 512 and tok.pieces == pieces
    assert tok.pieces[3] == b"<0x00>" and tok.pieces[3 + 0x41] == b"<0x41>" and tok.pieces[258] == b"<0xFF>"


def test_encode_once_upon_a_time(tok):
    ids = tok.encode("Once upon a time")
    assert ids == brute_force_encode("Once upon a time", *read_pieces(TOKENIZER_BIN))
    assert [tok.pieces[i] for i in ids] == [b"\n<s>\n", b" Once", b" upon", b" a", b" time"]


@pytest.mark.parametrize("text", SENTENCES)
def test_encode_follows_the_merge_rule(tok, text):
    assert tok.encode(text) == brute_force_encode(text, *read_pieces(TOKENIZER_BIN))


@pytest.mark.parametrize("text", SENTENCES)
def test_round_trip(tok, text):
    ids = tok.encode(text, bos=True, eos=True)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert tok.decode(ids) == text


def test_byte_fallback_and_bos_space(tok):
    ids = tok.encode("日", bos=False)
    assert ids[0] == tok.ids[b" "] and ids[1:] == [3 + b for b in "日".encode()]  # no token for it: its 3 bytes
    a = tok.ids[b" a"]
    assert tok.decode([BOS_ID, a]) == "a" and tok.decode([a]) == " a"  # only a space right after BOS goes


def test_bad_tokenizer_files_are_refused(tmp_path):
    raw = TOKENIZER_BIN.read_bytes()
    (tmp_path / "short.bin").write_bytes(raw[:-3])
    with pytest.raises(ValueError, match="token 511 needs .* bytes at byte .*, found"):
        Llama2cTokenizer.load(tmp_path / "short.bin")
    (tmp_path / "empty.bin").write_bytes(raw[:2])
    with pytest.raises(ValueError, match="too short for the 4-byte header"):
        Llama2cTokenizer.load(tmp_path / "empty.bin")
    with pytest.raises(ValueError, match="holds 512 tokens, the model's vocab_size is 32000"):
        Llama2cTokenizer.load(TOKENIZER_BIN, vocab_size=32000)
    with pytest.raises(ValueError, match="outside the vocabulary 0..511"):
        Llama2cTokenizer.load(TOKENIZER_BIN).decode([512])
