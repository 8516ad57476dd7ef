"""A real third-party model: karpathy's stories260K (llama2.c legacy .bin) and its tok512.bin tokenizer.

The checkpoint lives outside the repository, in ../shared/models/stories260K/ (see its README):
a fresh clone does not have it, so the tests that read it skip when it is absent. The hostile
files and the vocabulary without byte fallback are built here, from nothing, and always run.

Known answers come from that README (architecture, sha256, llama2.c's greedy output). The
PyTorch parity test reads the file with its own few lines, so a wrong cut of the file by the
loader shows up there too; the encoder is checked against a brute-force transcription of
llama2.c's merge rule, and against the ids the model itself generates.
"""

import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import pytest

MODEL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "stories260K"
MODEL_BIN, TOKENIZER_BIN = MODEL_DIR / "stories260K.bin", MODEL_DIR / "tok512.bin"

HAVE_STORIES = MODEL_BIN.is_file() and TOKENIZER_BIN.is_file()
needs_stories = pytest.mark.skipif(
    not HAVE_STORIES, reason=f"the stories260K checkpoint is not here ({MODEL_DIR.name}/ with stories260K.bin and "
                             "tok512.bin must sit in ../shared/models/ next to the repository): nothing to test against")

import torch  # noqa: E402

from tinyllm_lab import reference  # noqa: E402
from tinyllm_lab.config import ModelConfig  # noqa: E402
from tinyllm_lab.llama2c import BOS_ID, EOS_ID, UNK_ID, Llama2cTokenizer, load_llama2c  # noqa: E402
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
    if not HAVE_STORIES:
        pytest.skip(needs_stories.kwargs["reason"])
    return load_llama2c(MODEL_BIN)


@pytest.fixture(scope="module")
def tok():
    if not HAVE_STORIES:
        pytest.skip(needs_stories.kwargs["reason"])
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

@needs_stories
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
    prompt = tok.encode("Once upon a time, there was", bos=True)
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

@needs_stories
def test_truncated_file_is_refused(tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(MODEL_BIN.read_bytes()[:-100])
    with pytest.raises(ValueError, match=f"needs a file of {MODEL_BYTES} bytes, found {MODEL_BYTES - 100}"):
        load_llama2c(path)


@needs_stories
def test_one_extra_byte_is_refused(tmp_path):
    path = tmp_path / "long.bin"
    path.write_bytes(MODEL_BIN.read_bytes() + b"\0")
    with pytest.raises(ValueError, match=f"needs a file of {MODEL_BYTES} bytes, found {MODEL_BYTES + 1}.*left over"):
        load_llama2c(path)


@needs_stories
@pytest.mark.parametrize("n_bytes", [0, 27])
def test_truncated_header_is_refused(tmp_path, n_bytes):
    path = tmp_path / "header.bin"
    path.write_bytes(MODEL_BIN.read_bytes()[:n_bytes])
    with pytest.raises(ValueError, match=f"{n_bytes} bytes, too short for the 28-byte header"):
        load_llama2c(path)


@needs_stories
@pytest.mark.parametrize("header, match", [
    ((64, 172, 5, 7, 7, 512, 512), "dim = 64, which n_heads = 7 does not divide"),
    ((64, 172, 5, 8, 3, 512, 512), "not divisible by n_kv_heads = 3"),
    ((64, 172, 0, 8, 4, 512, 512), r"header field n_layers = 0 must be > 0"),
    ((24, 172, 5, 8, 4, 512, 512), "head_dim = dim / n_heads = 3, which must be even"),
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
    ids = tok.encode("Once upon a time", bos=True)
    assert ids == brute_force_encode("Once upon a time", *read_pieces(TOKENIZER_BIN))
    assert [tok.pieces[i] for i in ids] == [b"\n<s>\n", b" Once", b" upon", b" a", b" time"]


@pytest.mark.parametrize("text", SENTENCES)
def test_encode_follows_the_merge_rule(tok, text):
    assert tok.encode(text, bos=True) == brute_force_encode(text, *read_pieces(TOKENIZER_BIN))


@pytest.mark.parametrize("text", SENTENCES)
def test_round_trip(tok, text):
    ids = tok.encode(text, bos=True, eos=True)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert tok.decode(ids) == text


def test_byte_fallback_and_bos_space(tok):
    ids = tok.encode("日", bos=False)
    assert ids[0] == tok.ids[b" "] and ids[1:] == [3 + b for b in "日".encode()]  # no token for it: its 3 bytes
    a = tok.ids[b" a"]
    assert tok.decode([BOS_ID, a]) == tok.decode([a]) == "a"        # the text starts after BOS, said or not
    assert tok.decode([a, a]) == tok.decode([BOS_ID, a, a]) == "a a"  # only that first space goes
    assert tok.decode(tok.encode("  two")) == "  two"


@needs_stories
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


# ---------------------------------------------------------------------------------------------
# Hostile model files, built here (issue 10, kinds 1-2): every header number checked by name, the
# size it implies computed exactly and compared with the file before anything is read.

FIELDS = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "max_seq_len")
TINY = (8, 16, 1, 2, 1, 4, 3)  # dim 8, hidden 16, 1 layer, 2 heads of 4, 1 kv head, vocab 4, context 3


def n_floats(header):  # the test's own count of the floats a legacy file holds
    dim, hidden, layers, heads, kv_heads, vocab, seq = header
    head_dim = dim // heads
    kv = kv_heads * head_dim
    count = (abs(vocab) * dim + layers * (2 * dim + dim * dim + 2 * kv * dim + dim * dim + 3 * hidden * dim)
             + dim + 2 * seq * (head_dim // 2))
    return count + (abs(vocab) * dim if vocab < 0 else 0)


def write_model(path, header, floats=None, rng=None):  # -> path of a legacy .bin with this header
    n = n_floats(header)
    if floats is None:
        floats = (rng or np.random.default_rng(0)).standard_normal(n).astype("<f4") * np.float32(0.3)
    path.write_bytes(struct.pack("<7i", *header) + np.asarray(floats, "<f4").tobytes())
    return path


@pytest.mark.parametrize("field, value", [(field, value) for field in FIELDS for value in (0, -3)
                                          if (field, value) != ("vocab_size", -3)])  # < 0 there: an untied head
def test_every_header_size_must_be_positive_and_is_named(tmp_path, field, value):
    header = list(TINY)
    header[FIELDS.index(field)] = value
    path = tmp_path / "bad.bin"
    path.write_bytes(struct.pack("<7i", *header) + bytes(4 * n_floats(TINY)))
    with pytest.raises(ValueError, match=rf"bad.bin: header field {field} = {value} must be > 0"):
        load_llama2c(path)


def test_all_bad_header_fields_are_listed_in_one_error(tmp_path):
    path = tmp_path / "zeros.bin"
    path.write_bytes(bytes(28))
    with pytest.raises(ValueError, match="header fields dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, "
                                         "n_kv_heads = 0, vocab_size = 0, max_seq_len = 0 must be > 0"):
        load_llama2c(path)


def test_huge_dims_report_the_exact_byte_count_and_read_nothing(tmp_path):
    """int32 maxima everywhere: the needed size is ~1e38 bytes, far past int64; it must be exact."""
    big = 2**31 - 1
    header = (2**30, big, big, 2**29, 2**29, -big, big)  # head_dim 2, kv heads = heads: a valid architecture
    expected = 28 + 4 * n_floats(header)
    assert expected > 2**64  # the number an int64 computation would get wrong
    path = tmp_path / "huge.bin"
    path.write_bytes(struct.pack("<7i", *header) + bytes(100))
    with pytest.raises(ValueError, match=f"needs a file of {expected} bytes, found 128 "):
        load_llama2c(path)


def test_a_sparse_file_of_the_right_size_is_not_read_when_the_header_is_wrong(tmp_path):
    """A 64 GiB sparse file (no disk used) with a header that claims less: refused from its size alone."""
    path = tmp_path / "sparse.bin"
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", *TINY))
        f.truncate(64 << 30)
    with pytest.raises(ValueError, match=f"needs a file of {28 + 4 * n_floats(TINY)} bytes, found {64 << 30}"):
        load_llama2c(path)


def test_not_a_regular_file_is_refused_before_reading(tmp_path):
    with pytest.raises(ValueError, match="/dev/zero is a device, pipe or socket, not a regular file"):
        load_llama2c("/dev/zero")
    with pytest.raises(ValueError, match="is a folder, not a regular file"):
        load_llama2c(tmp_path)
    fifo = tmp_path / "pipe.bin"
    os.mkfifo(fifo)  # opening it would block forever: it must be refused from os.stat alone
    with pytest.raises(ValueError, match="pipe.bin is a device, pipe or socket"):
        load_llama2c(fifo)
    with pytest.raises(FileNotFoundError, match="absent.bin does not exist"):
        load_llama2c(tmp_path / "absent.bin")
    with pytest.raises(TypeError, match="expected a path"):
        load_llama2c(42)
    with pytest.raises(ValueError, match="/dev/zero is a device"):
        Llama2cTokenizer.load("/dev/zero")


def test_a_nan_weight_is_refused_naming_the_array(tmp_path):
    floats = np.full(n_floats(TINY), 0.1, dtype="<f4")
    floats[4 * 8 + 8 + 5] = np.nan  # token_embedding [4, 8], rms_att [1, 8], then wq: its 6th value
    floats[-1] = np.inf             # the last legacy RoPE value: skipped, never used
    with pytest.raises(ValueError, match=r"non-finite weights \(nan or inf\) in wq \(1 values\)$"):
        load_llama2c(write_model(tmp_path / "nan.bin", TINY, floats))


def test_a_tiny_model_loads_and_its_context_is_chosen(tmp_path):
    path = write_model(tmp_path / "tiny.bin", TINY)
    model = load_llama2c(path)
    assert model.config.max_seq_len == 3 and model.new_cache().keys.shape == (1, 3, 1, 4)
    assert load_llama2c(path, max_seq_len=2).new_cache().keys.shape == (1, 2, 1, 4)
    with pytest.raises(ValueError, match="max_seq_len = 4 is outside 1..3, the context .*tiny.bin was trained for"):
        load_llama2c(path, max_seq_len=4)
    with pytest.raises(ValueError, match="max_seq_len = 0 is outside"):
        load_llama2c(path, max_seq_len=0)
    for bad in ("2", 2.0, True):
        with pytest.raises(TypeError, match="max_seq_len must be an integer or None"):
            load_llama2c(path, max_seq_len=bad)


def test_a_long_trained_context_is_capped_at_4096_positions(tmp_path):
    """Like the HF loader: a header max_seq_len of 100000 must not size a 100000-position KV cache."""
    model = load_llama2c(write_model(tmp_path / "long.bin", (8, 16, 1, 2, 1, 4, 100_000)))
    assert model.config.max_seq_len == 4096 and model.new_cache().keys.shape[1] == 4096


@needs_stories
def test_the_context_sizes_the_cache_and_the_story_is_unchanged(tok):
    model = load_llama2c(MODEL_BIN, max_seq_len=64)
    assert model.config.max_seq_len == 64 and model.new_cache().keys.shape == (5, 64, 4, 8)
    out = Session(model).generate([BOS_ID], 63)
    assert tok.decode([BOS_ID] + out).startswith(KNOWN_TEXT[:100])


# ---------------------------------------------------------------------------------------------
# Hostile tokenizer files, and the common tokenizer API.

def write_tokenizer(path, pieces, scores, max_len=None):  # as llama2.c's tokenizer.py `export` writes it
    records = [struct.pack("<fI", s, len(p)) + p for p, s in zip(pieces, scores)]
    path.write_bytes(struct.pack("<I", max(map(len, pieces)) if max_len is None else max_len) + b"".join(records))
    return path


SPECIALS = [b"<unk>", b"\n<s>\n", b"\n</s>\n"]


@pytest.mark.parametrize("pieces, scores, max_len, match", [
    (SPECIALS + [b"a"], [0.0] * 4, 0, "max_token_length is 0"),
    (SPECIALS + [b"a"], [0.0, 0.0, 0.0, float("nan")], None, "token 3 has score nan, expected a finite number"),
    (SPECIALS + [b"a"], [0.0, 0.0, 0.0, float("inf")], None, "token 3 has score inf"),
    (SPECIALS + [b"abcdefg"], [0.0] * 4, 6, r"token 3 has length 7, expected 1..6 \(max_token_length\)"),
    (SPECIALS[:2], [0.0] * 2, None, r"2 tokens, expected at least 3 \(<unk>, <s>, </s>\)"),
])
def test_bad_tokenizer_numbers_are_refused(tmp_path, pieces, scores, max_len, match):
    with pytest.raises(ValueError, match=match):
        Llama2cTokenizer.load(write_tokenizer(tmp_path / "tok.bin", pieces, scores, max_len))


def test_a_zero_length_token_and_a_huge_tokenizer_file_are_refused(tmp_path):
    path = tmp_path / "zero.bin"
    path.write_bytes(struct.pack("<I", 4) + b"".join(struct.pack("<fI", 0.0, 1) + b"x" for _ in range(3))
                     + struct.pack("<fI", 0.0, 0))
    with pytest.raises(ValueError, match="token 3 has length 0, expected 1..4"):
        Llama2cTokenizer.load(path)
    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as f:
        f.truncate((1 << 30) + 1)  # sparse: no disk used; refused from its size, never read
    with pytest.raises(ValueError, match=f"huge.bin: {(1 << 30) + 1} bytes, more than any tokenizer file"):
        Llama2cTokenizer.load(huge)


def no_fallback_vocabulary(pieces, scores):  # tok512.bin without its 256 byte tokens: ids 3..255 = old 259..511
    keep = [0, 1, 2] + list(range(259, len(pieces)))
    return keep, [pieces[i] for i in keep], [scores[i] for i in keep]


@needs_stories
def test_a_vocabulary_without_byte_fallback_loads_and_works(tmp_path, tok):
    """As llama2.c's tokenizer.py exports a SentencePiece model trained without byte_fallback: no <0xNN> tokens.

    Text whose characters all have tokens encodes to the same pieces as with tok512; a character
    without a token is <unk> (SentencePiece's rule), decoded as " ⁇ "."""
    keep, pieces, scores = no_fallback_vocabulary(*read_pieces(TOKENIZER_BIN))
    small = Llama2cTokenizer.load(write_tokenizer(tmp_path / "tok256.bin", pieces, scores), vocab_size=256)
    assert small.vocab_size == 256 and not small.byte_fallback and tok.byte_fallback
    for text in ["Once upon a time, there was a little girl named Lily.", "a", "", "  spaces   inside"]:
        ids = small.encode(text, bos=True)
        assert [small.pieces[i] for i in ids] == [tok.pieces[i] for i in tok.encode(text, bos=True)]
        assert small.decode(ids) == text
    ids = small.encode("Lily 日!", bos=False)
    assert ids.count(UNK_ID) == 1 and small.decode(ids) == "Lily  \u2047 !"
    assert small.encode("<unk>") != [UNK_ID] and UNK_ID not in small.encode("<unk>")  # typed text is never <unk>


@needs_stories
def test_a_model_with_a_vocabulary_without_byte_fallback_writes_the_story(tmp_path):
    """stories260K cut down to the 256 tokens that are not byte tokens (its embedding rows re-indexed):
    greedy decoding never picked a byte token, so the story is the same, through the same encoder."""
    raw = MODEL_BIN.read_bytes()
    header = list(struct.unpack("<7i", raw[:28]))
    floats = np.frombuffer(raw, "<f4", offset=28)
    keep, pieces, scores = no_fallback_vocabulary(*read_pieces(TOKENIZER_BIN))
    embedding = floats[:512 * 64].reshape(512, 64)[keep]
    header[5] = len(keep)
    model_path = tmp_path / "stories256.bin"
    model_path.write_bytes(struct.pack("<7i", *header) + embedding.tobytes() + floats[512 * 64:].tobytes())
    small = Llama2cTokenizer.load(write_tokenizer(tmp_path / "tok256.bin", pieces, scores))
    model = load_llama2c(model_path)
    out = Session(model, eos_id=small.eos_id).generate(small.encode("", bos=True), 60)
    assert small.decode([BOS_ID] + out).startswith(KNOWN_TEXT[:100])


@needs_stories
def test_the_common_tokenizer_api(tok):
    assert (tok.bos_id, tok.eos_id, tok.vocab_size) == (1, 2, 512)
    assert tok.encode("a") == [tok.ids[b" a"]]                          # bos defaults to False, as every tokenizer's
    assert tok.encode("a", bos=True, eos=True) == [1, tok.ids[b" a"], 2]
    assert tok.encode("<s></s>", bos=False).count(BOS_ID) == 0             # typed control text stays text
    with pytest.raises(TypeError, match="encode takes a str, got bytes"):
        tok.encode(b"a")
    with pytest.raises(TypeError, match="token id 'a' is not an integer"):
        tok.decode(["a"])
    for bad in ("abc", None, 5):
        with pytest.raises(TypeError, match="decode takes a list of token ids, got"):
            tok.decode(bad)
    with pytest.raises(TypeError, match="bos must be True or False, got 'no'"):
        tok.encode("a", bos="no")
    with pytest.raises(TypeError, match="eos must be True or False, got 1"):
        tok.encode("a", eos=1)
    assert tok.decode(i for i in tok.encode("a b")) == "a b"  # any iterable of ids
    with pytest.raises(ValueError, match="outside the vocabulary 0..511"):
        tok.decode([-1])


@needs_stories
@pytest.mark.parametrize("text", SENTENCES)
def test_the_stream_decoder_never_splits_a_character(tok, text):
    ids = tok.encode(text, bos=True)
    stream = tok.stream_decoder()
    pieces = [stream.push(i) for i in ids] + [stream.flush()]
    assert "".join(pieces) == tok.decode(ids) == text
    assert "\ufffd" not in "".join(pieces)
    if "日" in text:  # its three byte tokens: nothing until the third
        at = ids.index(3 + "日".encode()[0])
        assert pieces[at] == pieces[at + 1] == "" and pieces[at + 2].startswith("日")


@pytest.mark.parametrize("version", [1, 2])
def test_a_versioned_export_is_refused_by_name(tmp_path, version):
    """llama2.c's `export.py --version 1` (float32) / `--version 2` (int8) files: magic, version, then a 256-byte header."""
    path = tmp_path / "v.bin"
    path.write_bytes(struct.pack("<Ii7iB", 0x616B3432, version, 8, 16, 1, 2, 1, 4, 3, 1).ljust(256, b"\0") + bytes(64))
    with pytest.raises(ValueError, match=f"a llama2.c version {version} export .*export.py --version 0"):
        load_llama2c(path)


@needs_stories
def test_a_long_mixed_text_follows_the_merge_rule(tok):
    """The heap-based merge against the test's plain rescan, on 1500 characters of varied text."""
    rng = np.random.default_rng(0)
    words = ["Once", " upon", " a", " time", ",", " Lily", " 日本", " 🙂", "\n", "  ", "ball", "<0x41>", "é", "!"]
    text = "".join(rng.choice(words, 300))[:1500]
    assert tok.encode(text, bos=True) == brute_force_encode(text, *read_pieces(TOKENIZER_BIN))


@needs_stories
def test_a_lone_surrogate_is_encoded_as_the_replacement_character(tok):
    """What Python makes of bytes that are not UTF-8 (a command-line argument, say): U+FFFD's bytes, no crash."""
    assert tok.encode("a\udcffb") == tok.encode("a\ufffdb")
    assert tok.decode(tok.encode("a\udcffb", bos=True)) == "a\ufffdb"
