"""One way in: `load(path)` -> (Model, tokenizer) for any checkpoint the engine runs.

    model, tok = load("SmolLM2-135M/")                                    # a Hugging Face folder
    model, tok = load("stories260K.bin", tokenizer="tok512.bin")          # a llama2.c legacy .bin
    model, tok = load("TinyLlama-1.1B-Chat-v1.0/", max_seq_len=256)       # a KV cache of 256 positions

A Hugging Face folder is read by day 6's loader (`weights.load_model`: config.json and
model.safetensors, or the shards listed by model.safetensors.index.json) and its tokenizer by
`hf_tokenizer.load_tokenizer` (tokenizer.json, with BOS/EOS from the model's config files). A
llama2.c `.bin` is read by `llama2c.load_llama2c`, with `tokenizer=` the path to its tokenizer
`.bin`. Every tokenizer returned offers `encode(text, bos=False)`, `decode(ids)`, `bos_id`,
`eos_id`, `vocab_size` and `stream_decoder()`.

Hand-written, not promoted: the entry point that the command line (`__main__`) and a learner's
own scripts share. numpy only.
"""

import operator
import os
from pathlib import Path

from tinyllm_lab.hf_tokenizer import load_tokenizer
from tinyllm_lab.llama2c import Llama2cTokenizer, load_llama2c
from tinyllm_lab.weights import load_model

HF_CONFIG, HF_TOKENIZER = "config.json", "tokenizer.json"
HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")  # one file, or the index of its shards


def _path(value, argument):  # str / PathLike -> Path, or TypeError naming the argument
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    raise TypeError(f"load: {argument} must be a path (str or os.PathLike), got {type(value).__name__}")


def _max_seq_len(max_seq_len):  # -> None or a Python int > 0 (numpy integers accepted), else TypeError / ValueError
    if max_seq_len is None:
        return None
    if isinstance(max_seq_len, bool) or not hasattr(type(max_seq_len), "__index__"):
        raise TypeError(f"load: max_seq_len must be an integer or None, got {max_seq_len!r}")
    if max_seq_len <= 0:
        raise ValueError(f"load: max_seq_len must be > 0, got {max_seq_len}")
    return operator.index(max_seq_len)


def missing_hf_files(folder, tokenizer):  # -> list of what the folder lacks, each named once
    missing = []
    if not (folder / HF_CONFIG).is_file():
        missing.append(HF_CONFIG)
    if not any((folder / name).is_file() for name in HF_WEIGHTS):
        missing.append(f"{HF_WEIGHTS[0]} (or {HF_WEIGHTS[1]} with its shards)")
    if tokenizer is None and not (folder / HF_TOKENIZER).is_file():
        missing.append(HF_TOKENIZER)
    return missing


def load_hf_folder(folder, max_seq_len=None, tokenizer=None):  # -> (Model, tokenizer)
    """A Hugging Face Llama/Mistral folder; `tokenizer` (a folder or tokenizer.json) overrides the folder's own."""
    missing = missing_hf_files(folder, tokenizer)
    if missing:
        raise ValueError(f"{folder} is not a Hugging Face model folder: it has no {', no '.join(missing)}")
    source = folder if tokenizer is None else tokenizer
    shown = source / HF_TOKENIZER if source.is_dir() else source
    tok = in_context(lambda: load_tokenizer(source), f"cannot load the tokenizer {shown}", source)
    model = in_context(lambda: load_model(folder, max_seq_len=max_seq_len), f"cannot load the model in {folder}", folder)
    check_vocab(tok, model, shown)
    return model, tok


def load_llama2c_file(path, max_seq_len=None, tokenizer=None):  # -> (Model, Llama2cTokenizer)
    if tokenizer is None:
        raise ValueError(f"{path} is a llama2.c model file: it needs its tokenizer, pass tokenizer= "
                         "(--tokenizer on the command line) the path to its tokenizer .bin, e.g. tok512.bin")
    if tokenizer.is_dir() or tokenizer.suffix == ".json":
        raise ValueError(f"{tokenizer} is not a llama2.c tokenizer: a llama2.c model needs the tokenizer .bin "
                         "it was trained with (e.g. tokenizer.bin, tok512.bin)")
    model = load_llama2c(path, max_seq_len)
    return model, Llama2cTokenizer.load(tokenizer, vocab_size=model.config.vocab_size)


def in_context(load_it, what, path):  # -> load_it(); a file's failure as a ValueError that names the file
    """A ValueError that does not name `path` gets `what: ` in front; any other failure while parsing
    (a loader's TypeError on a field of the wrong JSON type, ...) becomes a ValueError naming its type."""
    try:
        return load_it()
    except ValueError as e:
        if str(path) in str(e):
            raise
        raise ValueError(f"{what}: {e}") from e
    except (OSError, MemoryError):
        raise
    except Exception as e:
        raise ValueError(f"{what}: {type(e).__name__}: {e}") from e


def check_vocab(tok, model, source):
    if tok.vocab_size != model.config.vocab_size:
        raise ValueError(f"the tokenizer {source} has {tok.vocab_size} tokens but the model's vocab_size is "
                         f"{model.config.vocab_size}: they do not belong together")


def load(path, max_seq_len=None, tokenizer=None):  # -> (Model, tokenizer)
    """The model and tokenizer of a checkpoint: a Hugging Face folder, or a llama2.c `.bin` (with `tokenizer=`).

    `max_seq_len` sizes the KV cache and RoPE tables (the longest prompt + generation): default
    min(the model's trained context, 4096); more than the trained context is refused.
    `tokenizer`: for a `.bin`, the path to its llama2.c tokenizer `.bin` (required); for a
    folder, an optional tokenizer.json (or folder) to use instead of the folder's.
    Raises FileNotFoundError for a path that does not exist, TypeError for an argument of the
    wrong type, ValueError (naming the file and what is wrong) for anything the loaders refuse or
    fail on while parsing (the original exception is chained as its cause).
    """
    path = _path(path, "path")
    tokenizer = None if tokenizer is None else _path(tokenizer, "tokenizer")
    max_seq_len = _max_seq_len(max_seq_len)
    if tokenizer is not None and not tokenizer.exists():
        raise FileNotFoundError(f"tokenizer {tokenizer} does not exist")
    if path.is_dir():
        return load_hf_folder(path, max_seq_len, tokenizer)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: expected a Hugging Face model folder or a llama2.c .bin")
    if path.name in (HF_CONFIG, HF_TOKENIZER, *HF_WEIGHTS) or path.suffix in (".safetensors", ".json"):
        raise ValueError(f"{path} is one file of a Hugging Face model: pass the folder that holds it ({path.parent})")
    return load_llama2c_file(path, max_seq_len, tokenizer)
