"""Tests for tinyllm_lab.hf_tokenizer: real Hugging Face tokenizer.json files read by hand.

Three tiers: llama.cpp's test vectors for GPT-2, SmolLM2 and TinyLlama (= Llama 2) must match
id for id and round-trip; a few hundred varied strings must match the `tokenizers` library (test-only
use) id for id, on the real files and on variants of them (Llama 3's pattern, Metaspace,
ignore_merges); every malformed or unsupported file is refused with a ValueError naming the field.
The real files live in ../shared/tokenizers, which a learner's clone lacks: those tests skip.
"""

import json
import random
import unicodedata
from pathlib import Path

import pytest
from tokenizers import Regex
from tokenizers import Tokenizer as LibTokenizer
from tokenizers import pre_tokenizers

from tinyllm_lab.hf_tokenizer import (
    GPT2_PATTERN, HFTokenizer, bpe, load_tokenizer, translate_pattern, unicode_classes,
)
from tinyllm_lab.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "weights"
SHARED = REPO.parent / "shared" / "tokenizers"
REAL = {"gpt2": "gpt-2", "smollm2-135m": "smollm", "tinyllama-1.1b-chat-v1.0": "llama-spm"}
needs_shared = pytest.mark.skipif(
    not all((SHARED / folder / "tokenizer.json").is_file() for folder in REAL),
    reason="../shared/tokenizers (real tokenizer files and llama.cpp's vectors) is absent: a course clone lacks it")

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")

POOL = ["Hello", " world", "don't", "I'LL", "WE'RE", "'s", "'Ve", "ſ", "K", "12345", "3.14159", "1,000,000", " 42",
        "١٢٣", "½", "Ⅻ", "²", "中文", "日本語のテキスト", "한국어", "привет", "Ελληνικά", "עברית", "مرحبا", "हिन्दी",
        "🙂", "👍🏽", "👨‍👩‍👧", "🇫🇷", "é", "e\u0301", "ﬁ", "\u00a0", "\u3000", "\u2028", "\u0085", "\x1c", "\x1f",
        " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n\n", " \n ", "\t\t", "<s>", "</s>", "<|endoftext|>", "<unk>",
        "<0x41>", "▁", "▁▁x", "def f(x):\n    return x ** 2", "if (a && b) { c++; }", "SELECT * FROM t;",
        "https://example.com/a?b=c", "user@host", "#include <stdio.h>", "$$x^2$$", "...", "!!!", "--", "~",
        "\u200b", "\ufeff", "Ꭰ", "𝔘𝔫𝔦", "𐍈", "x" * 70, "ab" * 40, "<|bos|>", "<|eos|>", "<|im_start|>"]


def varied_strings(n, seed):  # code, emoji, CJK, whitespace runs, numbers, mixed scripts, special-token text
    rng = random.Random(seed)
    return ["".join(rng.choice(POOL) + rng.choice(["", "", " ", "\n"]) for _ in range(rng.randint(1, 8)))
            for _ in range(n)]


STRINGS = varied_strings(300, 0)
_loaded = {}


def real(folder):  # (ours, the library's) for one real folder, loaded once per module
    if folder not in _loaded:
        lib = LibTokenizer.from_file(str(SHARED / folder / "tokenizer.json"))
        lib.encode_special_tokens = True  # special-token text is text, as in ours
        _loaded[folder] = load_tokenizer(SHARED / folder), lib
    return _loaded[folder]


def vectors(name):  # llama.cpp's cases: [(text, expected ids)]
    base = SHARED / "llama.cpp-vocab-tests" / f"ggml-vocab-{name}.gguf"
    texts = Path(f"{base}.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")[:-1]
    lines = Path(f"{base}.out").read_text(encoding="utf-8").split("\n")
    return [(t, [int(i) for i in line.split()]) for t, line in zip(texts, lines)]


# --- llama.cpp's vectors ---------------------------------------------------------------------

@needs_shared
@pytest.mark.parametrize("folder", REAL)
def test_llama_cpp_vectors_exact_and_round_trip(folder):
    tok, _ = real(folder)
    cases = vectors(REAL[folder])
    assert len(cases) == 46
    wrong = [(t, tok.encode(t), ids) for t, ids in cases if tok.encode(t) != ids]
    assert not wrong, wrong[:3]
    assert [t for t, _ in cases if tok.decode(tok.encode(t)) != t] == []


# --- parity with the tokenizers library ------------------------------------------------------

@needs_shared
@pytest.mark.parametrize("folder", REAL)
def test_varied_strings_match_the_library_id_for_id(folder):
    tok, lib = real(folder)
    for s in STRINGS:
        ids = tok.encode(s)
        assert ids == lib.encode(s, add_special_tokens=False).ids, repr(s)
        back = s.replace("\ud800", "\ufffd")
        if tok.kind == "SentencePiece-style BPE":
            back = back.replace("▁", " ")  # a typed ▁ is a space to SentencePiece, and comes back as one
        assert tok.decode(ids) == lib.decode(ids, skip_special_tokens=False) == back, repr(s)


def test_course_file_gives_the_course_tokenizers_ids():
    course = Tokenizer.load(WEIGHTS / "tokenizer.json")
    general = load_tokenizer(WEIGHTS / "tokenizer.json")  # a file: BOS/EOS from weights/config.json beside it
    assert (general.bos_id, general.eos_id, general.vocab_size) == (course.bos_id, course.eos_id, course.vocab_size)
    for s in STRINGS:
        assert general.encode(s, bos=True) == course.encode(s, bos=True), repr(s)
        assert general.decode(course.encode(s)) == course.decode(course.encode(s)) == s
    assert general.decode(range(course.vocab_size)) == course.decode(range(course.vocab_size))


def write_variant(tmp_path, source, change):  # a copy of a real tokenizer.json, edited -> (ours, library's)
    data = json.loads((SHARED / source / "tokenizer.json").read_text(encoding="utf-8"))
    change(data)
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    lib = LibTokenizer.from_file(str(tmp_path / "tokenizer.json"))
    lib.encode_special_tokens = True
    return load_tokenizer(tmp_path), lib


def llama3_style(data):  # GPT-2's vocabulary with Llama 3's pre-tokenizer and ignore_merges
    data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    data["model"].update(type="BPE", ignore_merges=True)


def metaspace_style(data):  # Llama 2's vocabulary written the newer way: a Metaspace pre-tokenizer and decoder
    data["normalizer"] = None
    data["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
    data["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}


def metaspace_split_always(data):  # Metaspace splitting at every ▁, prefix always, Metaspace decoder
    data["normalizer"] = None
    data["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}
    data["decoder"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}
    data["model"]["byte_fallback"] = False  # unknown characters -> <unk>, fused


def nfkc_digits(data):  # SmolLM2 with an NFKC normalizer and Digits in runs
    data["normalizer"] = {"type": "NFKC"}
    data["pre_tokenizer"]["pretokenizers"][0]["individual_digits"] = False


@needs_shared
@pytest.mark.parametrize("source, change", [("gpt2", llama3_style), ("tinyllama-1.1b-chat-v1.0", metaspace_style),
                                            ("tinyllama-1.1b-chat-v1.0", metaspace_split_always),
                                            ("smollm2-135m", nfkc_digits)])
def test_variants_match_the_library(tmp_path, source, change):
    tok, lib = write_variant(tmp_path, source, change)
    for s in STRINGS[:150]:
        ids = tok.encode(s)
        assert ids == lib.encode(s, add_special_tokens=False).ids, repr(s)
        assert tok.decode(ids) == lib.decode(ids, skip_special_tokens=False), repr(s)


LONG_RUNS = [" " * 50_000 + "x", "\n" * 50_000, "!" * 50_000, "7" * 50_000, " \t\n\r" * 12_500 + "y", "ab " * 17_000]


@needs_shared
@pytest.mark.parametrize("folder", REAL)
def test_long_runs_match_the_library(folder):  # whitespace, punctuation, digits: no quadratic backtracking either
    tok, lib = real(folder)
    for s in LONG_RUNS:
        assert tok.encode(s) == lib.encode(s, add_special_tokens=False).ids, repr(s[:10])


@needs_shared
def test_non_special_added_tokens_are_matched_in_text_special_ones_never(tmp_path):
    def add(data):
        data["added_tokens"].append({"id": 50257, "content": "hello world", "single_word": False, "lstrip": False,
                                     "rstrip": False, "normalized": False, "special": False})
    tok, lib = write_variant(tmp_path, "gpt2", add)
    s = "say hello world<|endoftext|> twice: hello worldhello world"
    assert tok.encode(s) == lib.encode(s, add_special_tokens=False).ids
    assert tok.encode(s).count(50257) == 3 and 50256 not in tok.encode(s)
    assert tok.decode(tok.encode(s)) == s


# --- the regular-expression translation ------------------------------------------------------

def onig_members(pattern):  # the code points the library's regex engine matches with `pattern`
    split = pre_tokenizers.Split(Regex(pattern), behavior="removed")
    members = set()
    for start in range(0, 0x110000, 20000):
        cps = [c for c in range(start, min(start + 20000, 0x110000)) if not 0xD800 <= c <= 0xDFFF]
        kept = set()
        for _, (a, b) in split.pre_tokenize_str("".join(map(chr, cps))):
            kept.update(range(a, b))
        members.update(c for k, c in enumerate(cps) if k not in kept)
    return members


@pytest.mark.parametrize("name, onig", [("L", r"\p{L}"), ("N", r"\p{N}"), ("s", r"\s")])
def test_unicode_classes_equal_oniguruma_on_every_assigned_code_point(name, onig):
    import re
    ours = re.compile(f"[{unicode_classes()[name]}]")
    theirs = onig_members(onig)
    known = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and unicodedata.category(chr(c)) != "Cn"]
    assert [c for c in known if bool(ours.match(chr(c))) != (c in theirs)] == []


@pytest.mark.parametrize("pattern", [GPT2_PATTERN, LLAMA3_PATTERN])
def test_translated_patterns_split_like_the_library(pattern):
    regex = translate_pattern(pattern, "test")
    split = pre_tokenizers.Split(Regex(pattern), "isolated")
    for s in STRINGS:
        s = s.replace("\ud800", "")
        assert regex.findall(s) == [p for p, _ in split.pre_tokenize_str(s)], repr(s)


@pytest.mark.parametrize("pattern, named", [(r"\w+", r"\w"), (r"\d+", r"\d"), (r"\p{Lu}", r"\p{Lu}"),
                                            (r"(a)\1", r"\1"), (r"\h", r"\h")])
def test_untranslated_escapes_are_refused_by_name(pattern, named):
    with pytest.raises(ValueError, match=r"pre_tokenizer\.pattern\.Regex uses " + named.replace("\\", r"\\")
                       .replace("{", r"\{").replace("}", r"\}")):
        translate_pattern(pattern, "pre_tokenizer.pattern.Regex")


def test_a_pattern_re_cannot_compile_is_refused_by_name():
    with pytest.raises(ValueError, match=r"pre_tokenizer\.pattern\.Regex is not a pattern Python's re can run"):
        translate_pattern("(unclosed", "pre_tokenizer.pattern.Regex")


def test_bpe_known_answer_and_left_to_right_ties():
    merges = {(1, 1): (0, 10), (10, 2): (1, 11)}  # (a, b) -> (rank, new id)
    assert bpe([1, 1, 2, 1], merges) == [11, 1]
    assert bpe([1, 1, 1], merges) == [10, 1]
    assert bpe([], merges) == [] and bpe([5], merges) == [5]


# --- the common tokenizer API, control tokens, streaming --------------------------------------

@needs_shared
@pytest.mark.parametrize("folder, bos, eos", [("gpt2", 50256, 50256), ("smollm2-135m", 0, 0),
                                              ("tinyllama-1.1b-chat-v1.0", 1, 2)])
def test_bos_eos_from_the_model_files_and_never_from_text(folder, bos, eos):
    tok, _ = real(folder)
    assert (tok.bos_id, tok.eos_id) == (bos, eos)
    assert isinstance(tok.vocab_size, int) and tok.vocab_size == len(tok.tokens)
    assert tok.encode("hi", bos=True)[0] == bos and tok.encode("hi", bos=True)[1:] == tok.encode("hi")
    for text in [tok.tokens[i] for i in sorted(tok.special)]:
        assert not set(tok.encode(text)) & tok.special, text


@needs_shared
@pytest.mark.parametrize("folder", REAL)
def test_stream_decoder_never_splits_a_character(folder):
    tok, _ = real(folder)
    for s in STRINGS[:80] + ["🙂👍🏽中文", " é", "\u0085x"]:
        ids = tok.encode(s, bos=True)
        stream = tok.stream_decoder()
        pieces = [stream.push(i) for i in ids] + [stream.flush()]
        assert "".join(pieces) == tok.decode(ids)
        assert all("\ufffd" not in p for p in pieces), (s, pieces)


@needs_shared
def test_a_stream_cut_inside_a_character_flushes_u_fffd():
    tok, _ = real("tinyllama-1.1b-chat-v1.0")
    ids = tok.encode("🙂")  # ▁, then four byte tokens
    stream = tok.stream_decoder()
    assert [stream.push(i) for i in ids[:-1]] == ["", "", "", ""] and stream.flush() == "\ufffd"


def test_encode_and_decode_refuse_bad_arguments():
    tok = load_tokenizer(WEIGHTS)
    with pytest.raises(TypeError, match="encode takes a str, got bytes"):
        tok.encode(b"abc")
    for bad, message in [([tok.vocab_size], f"unknown token id {tok.vocab_size}"), ([-1], "unknown token id -1"),
                         ([3.0], "token id 3.0 is not an integer"), (["7"], "token id '7' is not an integer")]:
        with pytest.raises(ValueError, match=message):
            tok.decode(bad)
    first, second = tok.encode("é")  # two byte tokens in the course vocabulary
    stream = tok.stream_decoder()
    assert stream.push(first) == ""
    with pytest.raises(ValueError, match="unknown token id"):
        stream.push(10**9)
    assert stream.push(second) == "é"  # the refused id changed nothing


def test_lone_surrogate_becomes_u_fffd():
    tok = load_tokenizer(WEIGHTS)
    assert tok.decode(tok.encode("a\ud800b")) == "a\ufffdb"


@needs_shared
def test_a_byte_the_vocabulary_lacks_is_an_error_not_a_silent_drop():
    tok, lib = real("smollm2-135m")  # SmolLM2 has no token for byte 0x04; the library drops it silently
    assert lib.encode("a\x04b", add_special_tokens=False).ids == tok.encode("a") + tok.encode("b")
    with pytest.raises(ValueError, match=r"character '\\x04' \(UTF-8 04\) has no token in this vocabulary"):
        tok.encode("a\x04b")


def test_bos_true_without_a_bos_token_is_refused(tmp_path):
    data = json.loads((WEIGHTS / "tokenizer.json").read_text(encoding="utf-8"))
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    tok = load_tokenizer(tmp_path)  # no config files beside it
    assert (tok.bos_id, tok.eos_id, tok.eos_ids) == (None, None, ())
    with pytest.raises(ValueError, match="bos=True, but this tokenizer has no BOS token"):
        tok.encode("x", bos=True)


# --- BOS/EOS files -----------------------------------------------------------------------------

def course_folder(tmp_path, **files):  # the course tokenizer.json plus the given config files
    (tmp_path / "tokenizer.json").write_text((WEIGHTS / "tokenizer.json").read_text(encoding="utf-8"), encoding="utf-8")
    for name, content in files.items():
        (tmp_path / f"{name}.json").write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return tmp_path


def test_bos_eos_sources_in_order(tmp_path):
    folder = course_folder(tmp_path, generation_config={"eos_token_id": [16383, 16382]},
                           config={"bos_token_id": 16382, "eos_token_id": 5},
                           tokenizer_config={"bos_token": {"content": "<|eos|>"}})
    tok = load_tokenizer(folder)
    assert (tok.bos_id, tok.eos_id, tok.eos_ids) == (16382, 16383, (16383, 16382))


def test_bos_eos_from_tokenizer_config_names(tmp_path):
    tok = load_tokenizer(course_folder(tmp_path, tokenizer_config={"bos_token": "<|bos|>", "eos_token": {"content": "<|eos|>"}}))
    assert (tok.bos_id, tok.eos_id) == (16382, 16383)


@pytest.mark.parametrize("files, message", [
    ({"config": {"bos_token_id": "1"}}, r"config.json: bos_token_id must be a token id in 0..16383, got '1'"),
    ({"config": {"eos_token_id": 99999}}, r"config.json: eos_token_id must be a token id in 0..16383 or a list"),
    ({"config": {"eos_token_id": True}}, r"eos_token_id must be a token id"),
    ({"generation_config": {"bos_token_id": [1, 2]}}, r"generation_config.json: bos_token_id must be one token id"),
    ({"tokenizer_config": {"eos_token": "<nope>"}}, r"tokenizer_config.json: eos_token must name a token"),
    ({"config": "[1, 2]"}, r"config.json must hold a JSON object"),
    ({"config": "{nope"}, r"config.json is not valid UTF-8 JSON"),
])
def test_bad_bos_eos_files_are_refused_naming_file_and_key(tmp_path, files, message):
    with pytest.raises(ValueError, match=message):
        load_tokenizer(course_folder(tmp_path, **files))


# --- malformed and unsupported tokenizer.json --------------------------------------------------

def load_edited(tmp_path, change):
    data = json.loads((WEIGHTS / "tokenizer.json").read_text(encoding="utf-8"))
    changed = change(data)
    data = data if changed is None else changed
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    return load_tokenizer(tmp_path / "tokenizer.json")


def setter(path, value):  # a change that sets data[path[0]][path[1]]... = value
    def change(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


BAD = [  # (change, the field the error must name)
    (lambda d: [], r"the file must hold a JSON object, got list"),
    (setter(["model"], "BPE"), r"tokenizer.json.model must be object, got str"),
    (setter(["model", "type"], "WordPiece"), r"model.type 'WordPiece' is not supported"),
    (setter(["model", "type"], "Unigram"), r"model.type 'Unigram' is not supported"),
    (setter(["model", "type"], 3), r"model.type must be string, got int"),
    (setter(["model", "vocab"], []), r"model.vocab must be object, got list"),
    (setter(["model", "vocab", "a"], "97"), r"model.vocab\['a'\] must be a non-negative integer id, got '97'"),
    (setter(["model", "vocab", "a"], True), r"model.vocab\['a'\] must be a non-negative integer id, got True"),
    (setter(["model", "vocab", "a"], -1), r"model.vocab\['a'\] must be a non-negative integer id, got -1"),
    (setter(["model", "merges"], {}), r"model.merges must be array, got dict"),
    (setter(["model", "merges", 0], 5), r"model.merges\[0\] must be \"a b\" or \[\"a\", \"b\"\], got 5"),
    (setter(["model", "merges", 0], "a b c"), r"model.merges\[0\] must be \"a b\""),
    (setter(["model", "merges", 0], ["Ġ", 7]), r"model.merges\[0\] must be \"a b\""),
    (setter(["model", "merges", 0], "Ġ nope"), r"model.merges\[0\] \('Ġ' \+ 'nope'\) needs the token 'nope'"),
    (setter(["model", "dropout"], 0.1), r"model.dropout must be null or 0"),
    (setter(["model", "continuing_subword_prefix"], "##"), r"model.continuing_subword_prefix '##' is not supported"),
    (setter(["model", "unk_token"], "<nope>"), r"model.unk_token '<nope>' is not in model.vocab"),
    (setter(["model", "byte_fallback"], "yes"), r"model.byte_fallback must be boolean, got str"),
    (setter(["added_tokens"], {}), r"tokenizer.json.added_tokens must be array, got dict"),
    (setter(["added_tokens", 0], "<|bos|>"), r"added_tokens\[0\] must be a JSON object, got str"),
    (setter(["added_tokens", 0, "id"], "16382"), r"added_tokens\[0\].id must be integer, got str"),
    (setter(["added_tokens", 0, "id"], -3), r"added_tokens\[0\] needs a non-negative id"),
    (setter(["added_tokens", 0, "content"], None), r"added_tokens\[0\].content must be string, got NoneType"),
    (setter(["added_tokens", 0, "special"], "true"), r"added_tokens\[0\].special must be boolean"),
    (setter(["normalizer"], "NFC"), r"tokenizer.json.normalizer must be object or null, got str"),
    (setter(["normalizer"], {"type": "Lowercase"}), r"normalizer.type 'Lowercase' is not supported"),
    (setter(["normalizer"], {"type": "Replace", "pattern": {"Regex": " +"}, "content": "▁"}),
     r"normalizer.pattern must be a String pattern"),
    (setter(["normalizer"], {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": 1}]}),
     r"normalizer.normalizers\[0\].prepend must be string, got int"),
    (setter(["pre_tokenizer"], {"type": "Whitespace"}), r"pre_tokenizer.type 'Whitespace' is not supported"),
    (setter(["pre_tokenizer", "pretokenizers", 0, "pattern"], {"Regex": r"\w+"}),
     r"pre_tokenizer.pretokenizers\[0\].pattern.Regex uses \\w"),
    (setter(["pre_tokenizer", "pretokenizers", 0, "behavior"], "Contiguous"),
     r"pre_tokenizer.pretokenizers\[0\].behavior 'Contiguous' is not supported"),
    (setter(["pre_tokenizer", "pretokenizers", 0, "invert"], True), r"pre_tokenizer.pretokenizers\[0\].invert true"),
    (setter(["pre_tokenizer", "pretokenizers"], None), r"pre_tokenizer.pretokenizers must be array, got NoneType"),
    (setter(["pre_tokenizer"], {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "sometimes"}),
     r"pre_tokenizer.prepend_scheme 'sometimes' is not one of always, first, never"),
    (setter(["model", "vocab", "Ġzz"], 10**12), r"model.vocab has an id of 1000000000000, but only 16383 tokens"),
    (setter(["model", "vocab", "Ġzz"], 300), r"model.vocab gives id 300 to both 'om' and 'Ġzz'"),
    (lambda d: d["added_tokens"].append({"id": 10**12, "content": "<x>", "special": True}),
     r"added_tokens\[2\].id 1000000000000 leaves a gap"),
    (lambda d: d["added_tokens"].append(dict(d["added_tokens"][0], id=16384)),
     r"added_tokens\[2\] \(16384, '<\|bos\|>'\) clashes with another token"),
    (lambda d: d["added_tokens"].append({"id": 300, "content": "<x>", "special": True}),
     r"added_tokens\[2\] \(300, '<x>'\) clashes with another token \('om'\)"),
    (lambda d: d["model"]["merges"].append("Ġt he"), r"model.merges\[16126\] \('Ġt' \+ 'he'\) repeats model.merges\[11\]"),
    (setter(["decoder"], None), r"decoder is null"),
    (setter(["decoder"], {"type": "WordPiece"}), r"decoder.type 'WordPiece' is not supported"),
    (setter(["decoder"], {"type": "Sequence", "decoders": [{"type": "Strip", "content": " ", "start": 1, "stop": 0}]}),
     r"decoder.decoders\[0\].type 'Strip' is not supported here"),
    (setter(["decoder"], {"type": "Sequence", "decoders": [{"type": "Fuse"}, {"type": "Strip", "content": " ",
                                                                              "start": 0, "stop": 1}]}),
     r"decoder.decoders\[1\] must strip one character from the start only"),
]


@pytest.mark.parametrize("change, message", BAD)
def test_malformed_or_unsupported_files_are_refused_naming_the_field(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        load_edited(tmp_path, change)


@pytest.mark.parametrize("content, message", [(b"", "is not valid UTF-8 JSON"), (b"\xff\xfe{}", "is not valid UTF-8 JSON"),
                                              (b'{"model": NaN}', "tokenizer.json.model must be object, got float")])
def test_unreadable_files_are_refused(tmp_path, content, message):
    (tmp_path / "tokenizer.json").write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_tokenizer(tmp_path)


def test_json_nested_too_deeply_is_a_value_error(tmp_path):
    (tmp_path / "tokenizer.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(ValueError, match="is not valid UTF-8 JSON"):
        load_tokenizer(tmp_path)


def test_bad_paths(tmp_path):
    with pytest.raises(TypeError, match="load_tokenizer takes the path of a model folder or tokenizer.json, got NoneType"):
        load_tokenizer(None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tokenizer(tmp_path / "nowhere")
    folder = course_folder(tmp_path)
    (folder / "config.json").mkdir()  # a config.json that is not a file is not silently skipped
    with pytest.raises(ValueError, match="config.json is not a regular file"):
        load_tokenizer(folder)


def test_decode_and_encode_argument_types():
    tok = load_tokenizer(WEIGHTS)
    with pytest.raises(TypeError, match="decode takes a sequence of token ids, got NoneType"):
        tok.decode(None)
    with pytest.raises(TypeError, match=r"got str \(encode turns text into ids\)"):
        tok.decode("abc")
    with pytest.raises(ValueError, match="token id True is not an integer"):
        tok.decode([True])
    with pytest.raises(TypeError, match="bos must be True or False, got 'no'"):
        tok.encode("x", bos="no")
    assert tok.decode((i for i in tok.encode("to be"))) == "to be"  # any iterable of ids


def test_not_a_regular_file_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json does not exist"):
        load_tokenizer(tmp_path)  # a folder without tokenizer.json
    with pytest.raises(ValueError, match="/dev/zero is not a regular file"):
        load_tokenizer("/dev/zero")


def test_every_tokenizer_offers_the_common_api():
    from tinyllm_lab.llama2c import Llama2cTokenizer
    for cls in (HFTokenizer, Tokenizer, Llama2cTokenizer):
        for name in ("encode", "decode", "stream_decoder"):
            assert callable(getattr(cls, name)), (cls, name)
    for tok in (load_tokenizer(WEIGHTS), Tokenizer.load(WEIGHTS / "tokenizer.json")):
        assert isinstance(tok.vocab_size, int) and isinstance(tok.bos_id, int) and isinstance(tok.eos_id, int)
        stream = tok.stream_decoder()
        assert "".join(stream.push(i) for i in tok.encode("é🙂")) + stream.flush() == "é🙂"
