"""The command line, `python -m tinyllm_lab "PROMPT"`, run in a subprocess as a user runs it.

Happy paths are compared with `Session.generate` in this process; every bad argument and every
broken weights folder (built in tmp_path) must give one `tinyllm-lab: error:` line, no traceback.
"""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinyllm_lab
from tinyllm_lab import __main__ as cli
from tinyllm_lab.safetensors import load_file, save_file
from tinyllm_lab.session import Session
from tinyllm_lab.tokenizer import Tokenizer, tokenizer_json
from tinyllm_lab.weights import load_model

WEIGHTS = Path(tinyllm_lab.__file__).resolve().parent.parent / "weights"
PROMPT = "ROMEO."
FILES = ("config.json", "model.safetensors", "tokenizer.json")


def run(*args):  # -> CompletedProcess with text stdout / stderr
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "tinyllm_lab", *args], capture_output=True, text=True,
                          encoding="utf-8", env=env, cwd=WEIGHTS.parent, timeout=120)


@pytest.fixture(scope="module")
def bundled():  # -> (Model, Tokenizer) of the bundled weights
    return load_model(WEIGHTS), Tokenizer.load(WEIGHTS / "tokenizer.json")


def expected_output(bundled, prompt, max_new_tokens, seed=0, temperature=0.8, top_k=0, top_p=0.95):
    """What the CLI must print: the prompt, the new tokens' text up to EOS, a newline."""
    model, tok = bundled
    prompt_ids = tok.encode(prompt, bos=True)
    new = Session(model, tok.eos_id).generate(prompt_ids, max_new_tokens, np.random.default_rng(seed),
                                              temperature, top_k, top_p)
    if tok.eos_id in new:
        new = new[:new.index(tok.eos_id)]
    return tok.decode(prompt_ids[1:] + new) + "\n"


def assert_one_error_line(result, status, fragment):
    assert result.returncode == status, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tinyllm-lab: error: ")
    assert fragment in lines[0]


# ---- it generates ------------------------------------------------------------------------------

def test_greedy_is_deterministic_and_equals_session_generate(bundled):
    first = run(PROMPT, "--temperature", "0", "--max-new-tokens", "10")
    second = run(PROMPT, "--temperature", "0", "--max-new-tokens", "10")
    assert first.returncode == 0 and first.stderr == ""
    assert first.stdout == second.stdout
    assert first.stdout.startswith(PROMPT) and len(first.stdout.strip()) > len(PROMPT)
    assert first.stdout == expected_output(bundled, PROMPT, 10, temperature=0.0)


@pytest.mark.parametrize("options, settings", [
    ([], dict(seed=0)),  # the documented defaults: seed 0, temperature 0.8, top-k 0, top-p 0.95
    (["--seed", "3", "--temperature", "1.2", "--top-k", "5", "--top-p", "0.9"],
     dict(seed=3, temperature=1.2, top_k=5, top_p=0.9)),
])
def test_seeded_sampling_is_reproducible_and_uses_the_options(bundled, options, settings):
    first = run(PROMPT, "--max-new-tokens", "10", *options)
    second = run(PROMPT, "--max-new-tokens", "10", *options)
    assert first.returncode == 0 and first.stderr == ""
    assert first.stdout == second.stdout
    assert first.stdout == expected_output(bundled, PROMPT, 10, **settings)


def test_the_seed_changes_the_sample():
    outputs = {run(PROMPT, "--max-new-tokens", "10", "--seed", str(seed)).stdout for seed in (1, 2)}
    assert len(outputs) == 2


def test_empty_prompt_samples_from_bos_alone(bundled):
    result = run("", "--max-new-tokens", "6", "--seed", "1")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout == expected_output(bundled, "", 6, seed=1)
    assert result.stdout.strip()


def test_another_weights_folder(tmp_path, bundled):
    for name in FILES:
        (tmp_path / name).symlink_to(WEIGHTS / name)
    result = run(PROMPT, "--weights", str(tmp_path), "--max-new-tokens", "5", "--temperature", "0")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout == expected_output(bundled, PROMPT, 5, temperature=0.0)


def test_help_lists_the_options_and_defaults():
    result = run("--help")
    assert result.returncode == 0
    for text in ["--max-new-tokens", "default 100", "--temperature", "default 0.8", "--top-k", "--top-p",
                 "default 0.95", "--seed", "--weights"]:
        assert text in result.stdout


class Recorder:  # a stdout that remembers each write and flush
    def __init__(self):
        self.events = []

    def write(self, text):
        self.events.append(("write", text))

    def flush(self):
        self.events.append(("flush", None))


def test_streams_each_piece_as_soon_as_it_is_complete():
    out = Recorder()
    cli.generate(cli.parse_args([PROMPT, "--max-new-tokens", "6", "--temperature", "0"]), out)
    writes = [i for i, (kind, text) in enumerate(out.events) if kind == "write" and text]
    assert len(writes) >= 4  # the prompt, then several pieces: not one write at the end
    assert all(out.events[i + 1][0] == "flush" for i in writes)


def test_stops_at_eos_and_does_not_print_it(monkeypatch, bundled):
    _, tok = bundled
    word, after = tok.encode(" love"), tok.encode(" never")
    monkeypatch.setattr(cli.Session, "stream", lambda self, *args: iter(word + [tok.eos_id] + after))
    out = Recorder()
    cli.generate(cli.parse_args([PROMPT]), out)
    assert "".join(text for kind, text in out.events if kind == "write") == PROMPT + " love\n"


# ---- bad arguments: exit status 2 ----------------------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    ([PROMPT, "--temperature", "-1"], "--temperature"),
    ([PROMPT, "--temperature", "nan"], "--temperature"),
    ([PROMPT, "--temperature", "inf"], "--temperature"),
    ([PROMPT, "--temperature", "hot"], "--temperature"),
    ([PROMPT, "--top-p", "0"], "--top-p"),
    ([PROMPT, "--top-p", "1.5"], "--top-p"),
    ([PROMPT, "--top-k", "-1"], "--top-k"),
    ([PROMPT, "--top-k", "2.5"], "--top-k"),
    ([PROMPT, "--max-new-tokens", "-1"], "--max-new-tokens"),
    ([PROMPT, "--max-new-tokens", "2000"], "exceeds the context of 1024 tokens: use --max-new-tokens 1019 or less, or raise --context"),
    (["word " * 1100, "--max-new-tokens", "1"], "shorten the prompt"),
    ([PROMPT, "--seed", "-1"], "--seed"),
    ([PROMPT, "--seed", "x"], "--seed"),
    ([PROMPT, "--unknown"], "--unknown"),
    ([], "prompt"),
])
def test_bad_arguments_give_one_line(args, fragment):
    assert_one_error_line(run(*args), 2, fragment)


def test_a_temperature_too_small_for_the_logits_gives_one_line():
    """1e-320 passes the argument check (finite, >= 0) but overflows logits / T: the sampler's
    refusal, raised while streaming, still ends as one line, not a traceback."""
    result = run(PROMPT, "--temperature", "1e-320")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("tinyllm-lab: error: sampling stopped: temperature 1e-320 is too small")


# ---- broken weights: exit status 1 ---------------------------------------------------------------

@pytest.fixture(scope="module")
def model_bytes():
    return (WEIGHTS / "model.safetensors").read_bytes()


def weights_folder(folder, **replace):  # the bundled files, linked, except those given as bytes / text / None
    folder.mkdir()
    for name in FILES:
        if name not in replace:
            (folder / name).symlink_to(WEIGHTS / name)
        elif isinstance(replace[name], bytes):
            (folder / name).write_bytes(replace[name])
        elif isinstance(replace[name], str):
            (folder / name).write_text(replace[name], encoding="utf-8")
    return folder


def config(**changes):  # -> the bundled config.json, changed, as text
    data = json.loads((WEIGHTS / "config.json").read_text(encoding="utf-8"))
    data.update(changes)
    return json.dumps({k: v for k, v in data.items() if v is not None})


def nan_in_the_weights(folder, model_bytes):  # the bundled weights with one NaN
    tensors, metadata = load_file(model_bytes)
    tensors["model.norm.weight"] = tensors["model.norm.weight"].copy()  # load_file's arrays are read-only views
    tensors["model.norm.weight"][3] = np.nan
    weights_folder(folder, **{"model.safetensors": b""})
    save_file(tensors, folder / "model.safetensors", metadata)
    return folder


def another_tokenizer(folder, model_bytes):  # a tokenizer of 300 tokens next to a model of 16384
    small = Tokenizer([(97, 98 + i) for i in range(42)])  # merges "ab", "ac", ...: 256 + 42 + BOS + EOS = 300
    return weights_folder(folder, **{"tokenizer.json": json.dumps(tokenizer_json(small)),
                                     "config.json": config(bos_token_id=298, eos_token_id=299)})


def files(**replace):  # -> a builder (folder, model_bytes) -> folder
    return lambda folder, model_bytes: weights_folder(folder, **replace)


BROKEN = {  # case: (build the folder, a fragment the error line must contain)
    "missing folder": (lambda folder, b: folder, "does not exist"),
    "a file, not a folder": (lambda folder, b: weights_folder(folder) / "config.json", "pass the folder that holds it"),
    "no config.json": (files(**{"config.json": None}), "has no config.json"),
    "no model.safetensors": (files(**{"model.safetensors": None}), "has no model.safetensors"),
    "no tokenizer.json": (files(**{"tokenizer.json": None}), "has no tokenizer.json"),
    "truncated model.safetensors": (lambda folder, b: weights_folder(folder, **{"model.safetensors": b[:len(b) // 2]}),
                                    "truncated"),
    "garbage model.safetensors": (files(**{"model.safetensors": b"not a checkpoint at all"}), "safetensors"),
    "empty model.safetensors": (files(**{"model.safetensors": b""}), "safetensors"),
    "a NaN in the weights": (nan_in_the_weights, "1 nan"),
    "garbage tokenizer.json": (files(**{"tokenizer.json": "{this is not json"}), "tokenizer.json"),
    "tokenizer.json of the wrong kind": (files(**{"tokenizer.json": "[1, 2, 3]"}), "tokenizer.json"),
    "tokenizer.json without a model": (files(**{"tokenizer.json": '{"model": {}}'}), "tokenizer.json"),
    "tokenizer of another vocabulary": (another_tokenizer,
                                        "tokenizer.json has 300 tokens but the model's vocab_size is 16384"),
    "garbage config.json": (files(**{"config.json": "not json"}), "config.json"),
    "config.json not an object": (files(**{"config.json": "[256]"}), "object"),
    "config.json missing a field": (files(**{"config.json": config(hidden_size=None)}), "hidden_size"),
    "config.json with the wrong vocab": (files(**{"config.json": config(vocab_size=300)}), "model.embed_tokens.weight"),
    "config.json with impossible heads": (files(**{"config.json": config(num_attention_heads=3)}), "n_heads"),
    "config.json with a text number": (files(**{"config.json": config(hidden_size="256")}), "hidden_size"),
    "config.json with an EOS outside the vocabulary": (files(**{"config.json": config(eos_token_id=99999)}),
                                                       "eos_token_id"),
    "tokenizer.json without a vocab": (lambda folder, b: weights_folder(folder, **{"tokenizer.json": without_vocab()}),
                                       "has no 'vocab' field"),
}


def without_vocab():  # -> a tokenizer.json whose BPE model has no vocab, as text
    data = tokenizer_json(Tokenizer([]))
    del data["model"]["vocab"]
    return json.dumps(data)


@pytest.mark.parametrize("case", BROKEN)
def test_broken_weights_give_one_line(case, tmp_path, model_bytes):
    build, fragment = BROKEN[case]
    folder = build(tmp_path / "weights", model_bytes)
    assert_one_error_line(run(PROMPT, "--weights", str(folder), "--max-new-tokens", "2"), 1, fragment)


# ---- the boundary: anything raised while loading is one line naming the folder; later, a traceback --------

@pytest.mark.parametrize("changes", [dict(num_attention_heads=0), dict(rms_norm_eps="abc")])
def test_config_values_that_break_the_loader_give_one_line_naming_the_folder(changes, tmp_path):
    folder = weights_folder(tmp_path / "weights", **{"config.json": config(**changes)})
    assert_one_error_line(run(PROMPT, "--weights", str(folder), "--max-new-tokens", "2"), 1,
                          f"cannot load the model in {folder}: ")


def test_an_unexpected_exception_while_loading_gives_one_line(monkeypatch, capsys):
    def load_checkpoint(path, max_seq_len=None, tokenizer=None):
        raise ZeroDivisionError("integer division or modulo by zero")  # what no loader check foresaw
    monkeypatch.setattr(cli, "load_checkpoint", load_checkpoint)
    assert cli.main([PROMPT, "--weights", str(WEIGHTS)]) == 1
    err = capsys.readouterr().err
    assert err == f"tinyllm-lab: error: cannot load the model in {WEIGHTS}: ZeroDivisionError: integer division or modulo by zero\n"


def test_an_exception_during_generation_is_not_hidden(monkeypatch):
    def stream(self, *args):  # a bug in the engine, after the weights loaded fine
        raise ZeroDivisionError("a bug")
        yield
    monkeypatch.setattr(cli.Session, "stream", stream)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        cli.main([PROMPT, "--max-new-tokens", "2"])


def test_the_readme_sample_is_what_the_command_prints():
    """README.md shows one command and its output: it must still be true of these weights."""
    readme = (WEIGHTS.parent / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```console\n\$ \.venv/bin/python -m tinyllm_lab ([^\n]*)\n(.*?)```", readme, re.S)
    assert match, "README.md lost its sample"
    result = run(*shlex.split(match.group(1)))
    assert result.returncode == 0, result.stderr
    assert result.stdout == match.group(2)


# ---- any checkpoint: llama2.c .bin with --tokenizer, --context, a Hugging Face folder with a real tokenizer ----

SHARED = WEIGHTS.parent.parent / "shared"
STORIES = SHARED / "models" / "stories260K"
STORIES_BIN, STORIES_TOK = STORIES / "stories260K.bin", STORIES / "tok512.bin"
KNOWN_STORY = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
needs_stories = pytest.mark.skipif(not (STORIES_BIN.is_file() and STORIES_TOK.is_file()),
                                   reason="../shared/models/stories260K/ (stories260K.bin, tok512.bin) is not "
                                          "next to the repository: no llama2.c checkpoint to run")


@needs_stories
@pytest.mark.parametrize("prompt", ["", "Once upon a time"])
def test_stories260k_writes_its_known_story(prompt):
    """The README's known answer of llama2.c's own test, from BOS alone or from its first words."""
    result = run(prompt, "--weights", str(STORIES_BIN), "--tokenizer", str(STORIES_TOK),
                 "--temperature", "0", "--max-new-tokens", "40")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith(KNOWN_STORY), result.stdout  # no space in front: it follows BOS


@needs_stories
@pytest.mark.parametrize("args, status, fragment", [
    ([], 1, "llama2.c model file: it needs its tokenizer, pass tokenizer= (--tokenizer"),
    (["--tokenizer", str(WEIGHTS / "tokenizer.json")], 1, "is not a llama2.c tokenizer"),
    (["--tokenizer", str(STORIES_BIN)], 1, "stories260K.bin: token 2 has length 265839806, expected 1..64"),
    (["--tokenizer", str(STORIES_TOK), "--context", "513"], 1, "max_seq_len = 513 is outside 1..512"),
    (["--tokenizer", str(STORIES_TOK), "--context", "8"], 2, "exceeds the context of 8 tokens: use --max-new-tokens 6 or less"),
    (["--tokenizer", str(STORIES / "absent.bin")], 1, "absent.bin does not exist"),
])
def test_a_llama2c_checkpoint_that_cannot_run_gives_one_line(args, status, fragment):
    assert_one_error_line(run("Once", "--weights", str(STORIES_BIN), "--max-new-tokens", "10", *args), status, fragment)


@pytest.mark.parametrize("args, status, fragment", [
    (["--weights", "/dev/zero", "--tokenizer", "/dev/null"], 1, "/dev/zero is a device, pipe or socket, not a regular file"),
    (["--context", "0"], 2, "--context"),
    (["--context", "x"], 2, "--context"),
    (["--context", "2000"], 1, "2000"),
    (["--context", "8", "--max-new-tokens", "10"], 2, "exceeds the context of 8 tokens"),
    (["--context", "1"], 2, "the prompt (5 tokens with BOS) + --max-new-tokens 100 exceeds the context of 1 tokens: "
                            "shorten the prompt, or raise --context"),
    (["--weights", str(WEIGHTS / "model.safetensors")], 1, f"pass the folder that holds it ({WEIGHTS})"),
])
def test_bad_checkpoint_arguments_give_one_line(args, status, fragment):
    assert_one_error_line(run(PROMPT, *args), status, fragment)


def test_the_context_does_not_change_the_text(bundled):
    result = run(PROMPT, "--context", "16", "--max-new-tokens", "10", "--temperature", "0")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout == expected_output(bundled, PROMPT, 10, temperature=0.0)


def test_a_folder_without_the_files_says_what_is_missing_once(tmp_path):
    result = run(PROMPT, "--weights", str(tmp_path))
    assert_one_error_line(result, 1, f"{tmp_path} is not a Hugging Face model folder: it has no config.json, "
                                     "no model.safetensors (or model.safetensors.index.json with its shards), "
                                     "no tokenizer.json")
    assert result.stderr.count("config.json") == 1 and result.stderr.count("tokenizer.json") == 1


# ---- output that cannot be written: one line on stderr, exit 1, never a traceback -------------------------

needs_dev_full = pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system (not Linux)")


def run_with_stdout(stdout, *args, preexec_fn=None):  # -> CompletedProcess; stdout: a file object, or None for closed
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "tinyllm_lab", *args], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, env=env, cwd=WEIGHTS.parent, timeout=120, preexec_fn=preexec_fn)


def assert_one_stderr_line(result, line):
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    assert result.stderr.splitlines() == [line]


@needs_dev_full
@pytest.mark.parametrize("args", [[PROMPT, "--max-new-tokens", "5"], ["--help"]])
def test_a_full_disk_gives_one_line(args):
    with open("/dev/full", "w") as full:
        result = run_with_stdout(full, *args)
    assert_one_stderr_line(result, "tinyllm-lab: error: cannot write the output: No space left on device")


@pytest.mark.parametrize("args", [[PROMPT, "--max-new-tokens", "5"], ["--help"]])
def test_a_closed_stdout_gives_one_line(args):
    result = run_with_stdout(None, *args, preexec_fn=lambda: os.close(1))  # as `python -m tinyllm_lab ... >&-`
    assert_one_stderr_line(result, "tinyllm-lab: error: standard output is closed: nowhere to write the text")


def test_a_reader_that_leaves_early_ends_it_quietly():
    """`| head -c 3`: the pipe closes while tokens are still coming: status 0, nothing on stderr."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.Popen([sys.executable, "-m", "tinyllm_lab", PROMPT, "--max-new-tokens", "500"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=WEIGHTS.parent)
    assert proc.stdout.read(3) == b"ROM"
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0
    assert proc.stderr.read() == b""


# ---- a Hugging Face folder as transformers writes it, with a real tokenizer --------------------------------

TOKENIZERS = SHARED / "tokenizers"
LLAMA_32_1B = {  # huggingface.co/meta-llama/Llama-3.2-1B config.json: the fields that shape the model
    "model_type": "llama", "hidden_act": "silu", "hidden_size": 2048, "intermediate_size": 8192,
    "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": True,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
}
SHAPES = {  # name: (published config, shrunk fields, folder of the real tokenizer.json to pair with it)
    # SmolLM2-135M: byte-level BPE, GQA 3:1, head_dim 64 -> 32, tied, theta 1e5
    "SmolLM2-135M": ("smollm2-135m", dict(num_hidden_layers=2, hidden_size=96, intermediate_size=256,
                                          num_attention_heads=3, num_key_value_heads=1), "smollm2-135m"),
    # TinyLlama-1.1B: SentencePiece-style BPE with byte fallback, GQA 8:1, untied head
    "TinyLlama-1.1B": ("tinyllama-1.1b-chat-v1.0", dict(num_hidden_layers=2, hidden_size=128, intermediate_size=352,
                                                       num_attention_heads=8, num_key_value_heads=1),
                       "tinyllama-1.1b-chat-v1.0"),
    # Llama-3.2-1B's shape and Llama 3 RoPE scaling (its tokenizer is gated: TinyLlama's 32000 stands in)
    "Llama-3.2-1B": (LLAMA_32_1B, dict(num_hidden_layers=2, hidden_size=128, intermediate_size=256, head_dim=32,
                                       num_attention_heads=4, num_key_value_heads=1, vocab_size=32000,
                                       bos_token_id=1, eos_token_id=2), "tinyllama-1.1b-chat-v1.0"),
}


def hf_folder(tmp_path_factory, shape):  # -> (folder, transformers model): random float32 weights, real tokenizer
    published, shrink, tokenizer = SHAPES[shape]
    files = [TOKENIZERS / tokenizer / "tokenizer.json"] + ([] if isinstance(published, dict)
                                                           else [TOKENIZERS / published / "config.json"])
    if not all(f.is_file() for f in files):
        pytest.skip(f"../shared/tokenizers/ ({', '.join(f.parent.name + '/' + f.name for f in files)}) "
                    "is not next to the repository")
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    transformers.utils.logging.disable_progress_bar()
    config = dict(published) if isinstance(published, dict) else json.loads(files[1].read_text(encoding="utf-8"))
    config.update(shrink)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config)).eval()
    folder = tmp_path_factory.mktemp(shape)
    model.save_pretrained(folder)
    (folder / "tokenizer.json").write_bytes(files[0].read_bytes())
    return folder, model


@pytest.mark.parametrize("shape", SHAPES)
def test_a_real_shaped_folder_runs_from_the_command_line(tmp_path_factory, shape):
    """Greedy from the command line = transformers' greedy ids decoded by the `tokenizers` library."""
    import torch
    from tokenizers import Tokenizer as HFTokenizer

    from tinyllm_lab.hf_tokenizer import load_tokenizer
    folder, model = hf_folder(tmp_path_factory, shape)
    bos, eos = model.config.bos_token_id, model.config.eos_token_id
    prompt, n = "Hello world, this is café 日本 🙂", 12
    reference_tok = HFTokenizer.from_file(str(folder / "tokenizer.json"))
    ids = [bos] + reference_tok.encode(prompt, add_special_tokens=False).ids
    new = []
    with torch.inference_mode():
        for _ in range(n):
            new.append(int(model(torch.tensor([ids + new])).logits[0, -1].argmax()))
    if eos in new:  # the command stops at EOS, and does not print it
        new = new[:new.index(eos)]
    result = run(prompt, "--weights", str(folder), "--temperature", "0", "--max-new-tokens", str(n))
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith(prompt)
    # transformers' greedy ids, spelled by our tokenizer (checked against the library in test_hf_tokenizer)
    assert result.stdout == load_tokenizer(folder).decode(ids[1:] + new) + "\n"
    reference = reference_tok.decode(ids[1:] + new, skip_special_tokens=False)
    if "\ufffd" not in reference:  # byte tokens that make no character: the library blanks their whole run
        assert result.stdout == reference + "\n"

@needs_stories
def test_the_readme_stories260k_example_is_what_the_command_prints():
    """README's worked example, with its models/stories260K/ download folder replaced by ../shared's."""
    readme = (WEIGHTS.parent / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```console\n(?:\$ huggingface-cli[^\n]*\n)\$ \.venv/bin/python -m tinyllm_lab ([^\n]*stories260K[^\n]*)\n"
                      r"(.*?)```", readme, re.S)
    assert match, "README.md lost its stories260K example"
    args = [arg.replace("models/stories260K/", f"{STORIES}/") for arg in shlex.split(match.group(1))]
    result = run(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == match.group(2)
    assert result.stdout.startswith(KNOWN_STORY)


@needs_stories
def test_a_prompt_that_is_not_utf8_is_read_as_replacement_characters():
    """`python -m tinyllm_lab $'\\xff'`: Python hands the byte over as a lone surrogate."""
    result = run("Lily\udcff", "--weights", str(STORIES_BIN), "--tokenizer", str(STORIES_TOK),
                 "--temperature", "0", "--max-new-tokens", "3")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("Lily\ufffd")


def test_a_prompt_the_tokenizer_refuses_gives_one_line(monkeypatch, capsys):
    from tinyllm_lab.hf_tokenizer import HFTokenizer

    def encode(self, text, bos=False):
        raise ValueError("this text cannot be encoded")
    monkeypatch.setattr(HFTokenizer, "encode", encode)
    assert cli.main([PROMPT]) == 2
    assert capsys.readouterr().err == "tinyllm-lab: error: cannot encode the prompt: this text cannot be encoded\n"
