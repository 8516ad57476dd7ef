"""Generate text from the command line, streamed as it is produced.

    python -m tinyllm_lab "ROMEO."                     # the bundled course model, seed 0
    python -m tinyllm_lab "ROMEO." --seed 7 --temperature 1.0 --top-k 40
    python -m tinyllm_lab "ROMEO." --temperature 0    # greedy
    python -m tinyllm_lab "" --weights other_folder   # BOS alone: an unconditional sample

The prompt is encoded with BOS in front; the prompt is printed, then each new token's text as
soon as it is complete (`StreamDecoder`), and a final newline. Generation stops at EOS (not
printed) or after --max-new-tokens. A prompt + --max-new-tokens longer than the model's context
(max_seq_len) is refused, not cut. Bad arguments exit with status 2, weights that cannot be
loaded with status 1; either way with one line on stderr: `tinyllm-lab: error: ...`.

Hand-written, not promoted: the entry point that ties together the tokenizer (day 7), the
loader (day 6) and the session (day 5).
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

import tinyllm_lab
from tinyllm_lab.session import Session
from tinyllm_lab.tokenizer import StreamDecoder, Tokenizer
from tinyllm_lab.weights import load_model

PROG = "tinyllm-lab"
BUNDLED_WEIGHTS = Path(tinyllm_lab.__file__).resolve().parent.parent / "weights"  # the repository's weights/
WEIGHT_FILES = ("config.json", "model.safetensors", "tokenizer.json")


class CLIError(Exception):
    """A problem the user can fix, reported as one line; `status` is the exit code."""

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints the usage, then the error: keep only one line
        self.exit(2, f"{PROG}: error: {message} (see --help)\n")


def _number(kind, check, requirement):  # -> an argparse `type` that converts, then checks
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"{text} is not {requirement}")
        return value
    return convert


def parse_args(argv):
    parser = Parser(prog=PROG, description="Generate text with the tinyllm-lab numpy engine, streamed as it is produced.",
                    epilog="Exit status: 0 done, 1 the weights cannot be loaded, 2 bad arguments.")
    parser.add_argument("prompt", help='the text to continue ("" for BOS alone); encoded with BOS in front')
    parser.add_argument("--max-new-tokens", type=_number(int, lambda n: n >= 0, "an integer >= 0"), default=100,
                        metavar="N", help="stop after N new tokens, or earlier at EOS (default 100)")
    parser.add_argument("--temperature", type=_number(float, lambda t: 0 <= t < math.inf, "a finite number >= 0"),
                        default=0.8, metavar="T", help="divide the logits by T; 0 = greedy (default 0.8)")
    parser.add_argument("--top-k", type=_number(int, lambda k: k >= 0, "an integer >= 0"), default=0, metavar="K",
                        help="sample only from the K most likely tokens; 0 = no limit (default 0)")
    parser.add_argument("--top-p", type=_number(float, lambda p: 0 < p <= 1, "in (0, 1]"), default=0.95, metavar="P",
                        help="sample only from the most likely tokens holding P of the mass; 1 = no limit (default 0.95)")
    parser.add_argument("--seed", type=_number(int, lambda s: s >= 0, "an integer >= 0"), default=0, metavar="S",
                        help="seed of the sampling generator: the same seed gives the same text (default 0)")
    parser.add_argument("--weights", type=Path, default=BUNDLED_WEIGHTS, metavar="FOLDER",
                        help="a folder with config.json, model.safetensors and tokenizer.json "
                             "(default: the course model in the repository's weights/)")
    return parser.parse_args(argv)


def one_line(error):  # an exception -> its message on one line (some loader messages list problems on lines)
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    message = " ".join(lines[:1] + ["; ".join(lines[1:])]).strip()
    if isinstance(error, (ValueError, OSError)):  # the loaders' own errors, and unreadable files: self-explanatory
        return message or type(error).__name__
    return f"{type(error).__name__}: {message}" if message else type(error).__name__  # the type is part of the clue


def load(folder):  # -> (Model, Tokenizer), or CLIError saying what is wrong with the folder
    """Read the three files of `folder`; ANY exception while doing so becomes a one-line CLIError.

    The boundary: loading parses files that anyone can hand us, so whatever a file makes the
    loaders raise (bad JSON, a field of the wrong type, a config whose numbers make the loader
    divide by zero, ...) is reported as a problem with that folder, exit status 1. Nothing after
    `load` is caught this way: once the files have loaded and been checked, an exception during
    generation is a bug in the engine, and it keeps its traceback.
    """
    if not folder.is_dir():
        problem = "does not exist" if not folder.exists() else "is not a folder"
        raise CLIError(f"weights folder {folder} {problem} (pass --weights FOLDER)")
    missing = [name for name in WEIGHT_FILES if not (folder / name).is_file()]
    if missing:
        raise CLIError(f"weights folder {folder} has no {', '.join(missing)} (it needs {', '.join(WEIGHT_FILES)})")
    try:
        hf = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except Exception as e:
        raise CLIError(f"cannot read {folder / 'config.json'}: {one_line(e)}") from None
    if not isinstance(hf, dict):
        raise CLIError(f"{folder / 'config.json'} is not a JSON object, so not a Hugging Face config")
    try:
        model = load_model(folder)
    except Exception as e:
        raise CLIError(f"cannot load the model in {folder}: {one_line(e)}") from None
    try:
        tokenizer = Tokenizer.load(folder / "tokenizer.json")
    except Exception as e:
        raise CLIError(f"cannot load {folder / 'tokenizer.json'}: {one_line(e)}") from None
    if tokenizer.vocab_size != model.config.vocab_size:
        raise CLIError(f"{folder}: tokenizer.json has {tokenizer.vocab_size} tokens but config.json has "
                       f"vocab_size {model.config.vocab_size}: they do not belong together")
    for name, ours in [("bos_token_id", tokenizer.bos_id), ("eos_token_id", tokenizer.eos_id)]:
        if hf.get(name, ours) != ours:
            raise CLIError(f"{folder}: config.json has {name} {hf[name]} but the tokenizer's is {ours}")
    return model, tokenizer


def generate(args, out):
    """Load, check, then write the prompt and each new token's text to `out` as soon as it is complete."""
    model, tokenizer = load(args.weights)
    prompt_ids = tokenizer.encode(args.prompt, bos=True)
    limit = model.config.max_seq_len
    if len(prompt_ids) + args.max_new_tokens > limit:
        room = limit - len(prompt_ids)
        advice = f"use --max-new-tokens {room} or less" if room > 0 else "shorten the prompt"
        raise CLIError(f"the prompt ({len(prompt_ids)} tokens with BOS) + --max-new-tokens {args.max_new_tokens} "
                       f"exceeds the model's context of {limit} tokens: {advice}", status=2)
    session = Session(model, eos_id=tokenizer.eos_id)
    tokens = session.stream(prompt_ids, args.max_new_tokens, np.random.default_rng(args.seed),
                            args.temperature, args.top_k, args.top_p)
    stream = StreamDecoder(tokenizer)
    out.write("".join(stream.push(i) for i in prompt_ids[1:]))  # the prompt as the model read it
    out.flush()
    try:
        for token in tokens:
            if token == tokenizer.eos_id:
                break
            piece = stream.push(token)
            if piece:
                out.write(piece)
                out.flush()  # streaming: show each piece now, not when a buffer fills
    except ValueError as e:  # the sampler refusing the settings for these logits, e.g. --temperature 1e-320
        out.write("\n")
        raise CLIError(f"sampling stopped: {one_line(e)}", status=2) from None
    out.write(stream.flush() + "\n")
    out.flush()


def main(argv=None):  # -> exit status
    args = parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")  # a terminal that cannot show a character gets '?', not a crash
    try:
        generate(args, sys.stdout)
    except CLIError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return e.status
    except MemoryError as e:  # e.g. a config.json whose max_position_embeddings asks for a huge KV cache
        print(f"{PROG}: error: out of memory: {one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `| head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the flush at exit cannot fail again
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
