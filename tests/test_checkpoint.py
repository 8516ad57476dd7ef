"""`tinyllm_lab.load(path, max_seq_len=None, tokenizer=None)`: one way in for every checkpoint.

The bundled course folder always; llama2.c's stories260K when ../shared is next to the repository
(skipped, with the reason, when it is not). Bad arguments and folders give the documented error
types with messages naming the file and the argument.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinyllm_lab
from tinyllm_lab.checkpoint import load
from tinyllm_lab.llama2c import Llama2cTokenizer
from tinyllm_lab.session import Session

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights"
STORIES = ROOT.parent / "shared" / "models" / "stories260K"
STORIES_BIN, STORIES_TOK = STORIES / "stories260K.bin", STORIES / "tok512.bin"
KNOWN_STORY = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
needs_stories = pytest.mark.skipif(not (STORIES_BIN.is_file() and STORIES_TOK.is_file()),
                                   reason="../shared/models/stories260K/ (stories260K.bin, tok512.bin) is not "
                                          "next to the repository: no llama2.c checkpoint to load")


def test_import_tinyllm_lab_stays_light():
    """`load` is there at once, but the loaders are imported only when it is called."""
    code = ("import sys, tinyllm_lab; assert callable(tinyllm_lab.load); "
            "print(sorted(m for m in sys.modules if m.startswith('tinyllm_lab') or m in ('torch', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "['tinyllm_lab']"


def test_the_course_folder(tmp_path):
    model, tok = tinyllm_lab.load(WEIGHTS)
    assert model.config.vocab_size == tok.vocab_size == 16384
    assert model.config.max_seq_len == 1024  # min(max_position_embeddings 1024, 4096)
    prompt = tok.encode("ROMEO.", bos=True)
    assert prompt[0] == tok.bos_id and tok.decode(prompt[1:]) == "ROMEO."
    short, _ = load(str(WEIGHTS), max_seq_len=np.int64(32))  # a str path, a smaller context, a numpy integer
    assert short.config.max_seq_len == 32 and type(short.config.max_seq_len) is int
    assert short.new_cache().keys.shape[1] == 32
    full = Session(model).generate(prompt, 8)
    assert Session(short).generate(prompt, 8) == full  # the context changes the cache, not the text


@needs_stories
def test_a_llama2c_checkpoint_writes_its_known_story():
    model, tok = tinyllm_lab.load(STORIES_BIN, tokenizer=STORIES_TOK)
    assert isinstance(tok, Llama2cTokenizer) and model.config.max_seq_len == 512
    ids = Session(model, eos_id=tok.eos_id).generate(tok.encode("", bos=True), 40)
    assert tok.decode([tok.bos_id] + ids).startswith(KNOWN_STORY)
    small, _ = load(STORIES_BIN, max_seq_len=100, tokenizer=str(STORIES_TOK))
    assert small.new_cache().keys.shape == (5, 100, 4, 8)


@needs_stories
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(), ValueError, "stories260K.bin is a llama2.c model file: it needs its tokenizer, pass tokenizer="),
    (dict(tokenizer=WEIGHTS / "tokenizer.json"), ValueError, "is not a llama2.c tokenizer"),
    (dict(tokenizer=STORIES), ValueError, "is not a llama2.c tokenizer"),
    (dict(tokenizer=STORIES / "absent.bin"), FileNotFoundError, "tokenizer .*absent.bin does not exist"),
    (dict(tokenizer=STORIES_TOK, max_seq_len=513), ValueError, "max_seq_len = 513 is outside 1..512"),
])
def test_a_llama2c_checkpoint_refuses(kwargs, error, match):
    with pytest.raises(error, match=match):
        load(STORIES_BIN, **kwargs)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(path=42), TypeError, "path must be a path"),
    (dict(path=WEIGHTS, tokenizer=3), TypeError, "tokenizer must be a path"),
    (dict(path=WEIGHTS, max_seq_len="64"), TypeError, "max_seq_len must be an integer or None, got '64'"),
    (dict(path=WEIGHTS, max_seq_len=64.0), TypeError, "max_seq_len must be an integer"),
    (dict(path=WEIGHTS, max_seq_len=True), TypeError, "max_seq_len must be an integer"),
    (dict(path=WEIGHTS, max_seq_len=0), ValueError, "max_seq_len must be > 0, got 0"),
    (dict(path=WEIGHTS, max_seq_len=2000), ValueError, "2000"),
    (dict(path=WEIGHTS / "absent"), FileNotFoundError, "absent does not exist: expected a Hugging Face model "
                                                       "folder or a llama2.c .bin"),
    (dict(path=WEIGHTS / "config.json"), ValueError, "one file of a Hugging Face model: pass the folder"),
    (dict(path=WEIGHTS / "model.safetensors"), ValueError, "one file of a Hugging Face model: pass the folder"),
    (dict(path="/dev/zero", tokenizer="/dev/null"), ValueError, "/dev/zero is a device, pipe or socket"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        load(**kwargs)


def test_a_folder_that_is_not_a_checkpoint_names_each_missing_file_once(tmp_path):
    with pytest.raises(ValueError) as info:
        load(tmp_path)
    assert str(info.value) == (f"{tmp_path} is not a Hugging Face model folder: it has no config.json, no "
                               "model.safetensors (or model.safetensors.index.json with its shards), no tokenizer.json")
    (tmp_path / "config.json").symlink_to(WEIGHTS / "config.json")
    (tmp_path / "model.safetensors.index.json").write_text("{}")  # the index is enough to count as weights here
    with pytest.raises(ValueError, match=r"has no tokenizer.json$"):
        load(tmp_path)


def test_a_tokenizer_given_for_a_folder_replaces_the_folders(tmp_path):
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).symlink_to(WEIGHTS / name)
    model, tok = load(tmp_path, tokenizer=WEIGHTS / "tokenizer.json")
    assert tok.vocab_size == model.config.vocab_size
    assert tok.encode("ROMEO.") == tinyllm_lab.load(WEIGHTS)[1].encode("ROMEO.")


def test_a_broken_tokenizer_names_its_file(tmp_path):
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).symlink_to(WEIGHTS / name)
    (tmp_path / "tokenizer.json").write_text("[1, 2, 3]", encoding="utf-8")
    with pytest.raises(ValueError, match=f"cannot load the tokenizer {tmp_path / 'tokenizer.json'}: "):
        load(tmp_path)


def test_the_weights_are_float32_and_the_same_as_the_loaders(tmp_path):
    from tinyllm_lab.weights import load_model
    model, _ = load(WEIGHTS)
    direct = load_model(WEIGHTS)
    assert model.config == direct.config
    for ours, theirs in [(model.weights.tok_embeddings, direct.weights.tok_embeddings),
                         (model.weights.layers[1].w2, direct.weights.layers[1].w2)]:
        assert ours.dtype == np.float32
        np.testing.assert_array_equal(ours, theirs)

