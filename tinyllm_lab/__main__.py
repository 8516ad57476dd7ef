"""Generate text from the command line, streamed as it is produced.

    python -m tinyllm_lab "ROMEO."                     # the bundled course model, seed 0
    python -m tinyllm_lab "ROMEO." --seed 7 --temperature 1.0 --top-k 40
    python -m tinyllm_lab "ROMEO." --temperature 0    # greedy
    python -m tinyllm_lab "" --weights SmolLM2-135M    # a Hugging Face folder; "" = BOS alone
    python -m tinyllm_lab "" --weights stories260K.bin --tokenizer tok512.bin --temperature 0

Sampling defaults here are temperature 0.8 and top-p 0.95 (seed 0), a sample that reads
naturally; the library's `Session.generate` / `Session.stream` default to greedy (temperature 0).
The checkpoint is read by `tinyllm_lab.load` (a Hugging Face folder, or a llama2.c `.bin` with
--tokenizer); --context sizes the KV cache (default min(the model's trained context, 4096)).
The prompt is encoded with BOS in front (when the tokenizer has one); the prompt is printed as
the model read it, then each new token's text as soon as it is complete (the tokenizer's stream
decoder), and a final newline. Generation stops at EOS (not printed) or after --max-new-tokens.
A prompt + --max-new-tokens longer than the context is refused, not cut.

It never ends in a traceback for anything a user can cause: bad arguments exit with status 2,
weights that cannot be loaded or output that cannot be written (a full disk, a closed stdout)
with status 1; either way with one line on stderr: `tinyllm-lab: error: ...`. A reader that
leaves early (`| head`) ends it quietly with status 0.

Hand-written, not promoted: the entry point that ties together the tokenizer (day 7), the
loader (day 6) and the session (day 5).
"""

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np

import tinyllm_lab
from tinyllm_lab.checkpoint import load as load_checkpoint
from tinyllm_lab.session import Session

PROG = "tinyllm-lab"
BUNDLED_WEIGHTS = Path(tinyllm_lab.__file__).resolve().parent.parent / "weights"  # the repository's weights/
DEFAULT_TEMPERATURE, DEFAULT_TOP_P = 0.8, 0.95  # the command line samples; the library's Session is greedy


class CLIError(Exception):
    """A problem the user can fix, reported as one line; `status` is the exit code."""

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


class OutputError(Exception):
    """stdout refused a write (a full disk, a closed descriptor): reported as one line, status 1."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints the usage, then the error: keep only one line
        self.exit(2, f"{PROG}: error: {message} (see --help)\n")

    def _print_message(self, message, file=None):  # --help into a full disk must not end in a traceback
        file = file or sys.stderr
        if not message or file is None:
            return
        try:  # argparse's own version swallows OSError: the help would vanish with exit status 0
            file.write(message)
            file.flush()
        except OSError as e:
            raise OutputError(e.strerror or type(e).__name__) from None


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
                    epilog="Exit status: 0 done, 1 the weights cannot be loaded or the output cannot be written, "
                           "2 bad arguments. The library's Session defaults to greedy; this command samples.")
    parser.add_argument("prompt", help='the text to continue ("" for BOS alone); encoded with BOS in front')
    parser.add_argument("--max-new-tokens", type=_number(int, lambda n: n >= 0, "an integer >= 0"), default=100,
                        metavar="N", help="stop after N new tokens, or earlier at EOS (default 100)")
    parser.add_argument("--temperature", type=_number(float, lambda t: 0 <= t < math.inf, "a finite number >= 0"),
                        default=DEFAULT_TEMPERATURE, metavar="T",
                        help=f"divide the logits by T; 0 = greedy (default {DEFAULT_TEMPERATURE})")
    parser.add_argument("--top-k", type=_number(int, lambda k: k >= 0, "an integer >= 0"), default=0, metavar="K",
                        help="sample only from the K most likely tokens; 0 = no limit (default 0)")
    parser.add_argument("--top-p", type=_number(float, lambda p: 0 < p <= 1, "in (0, 1]"), default=DEFAULT_TOP_P,
                        metavar="P", help="sample only from the most likely tokens holding P of the mass; "
                                          f"1 = no limit (default {DEFAULT_TOP_P})")
    parser.add_argument("--seed", type=_number(int, lambda s: s >= 0, "an integer >= 0"), default=0, metavar="S",
                        help="seed of the sampling generator: the same seed gives the same text (default 0)")
    parser.add_argument("--weights", type=Path, default=BUNDLED_WEIGHTS, metavar="PATH",
                        help="a Hugging Face folder (config.json, model.safetensors or its shards, tokenizer.json) "
                             "or a llama2.c .bin (with --tokenizer) (default: the course model in the repository's weights/)")
    parser.add_argument("--tokenizer", type=Path, default=None, metavar="PATH",
                        help="a llama2.c model's tokenizer .bin (required with a .bin), or a tokenizer.json "
                             "to use instead of the folder's")
    parser.add_argument("--context", type=_number(int, lambda n: n > 0, "an integer > 0"), default=None, metavar="N",
                        help="positions the KV cache holds: prompt + new tokens at most "
                             "(default min(the model's trained context, 4096))")
    return parser.parse_args(argv)


def one_line(error):  # an exception -> its message on one line (some loader messages list problems on lines)
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    message = " ".join(lines[:1] + ["; ".join(lines[1:])]).strip()
    if isinstance(error, (ValueError, OSError, TypeError)) and message:  # the loaders' own errors: self-explanatory
        return message
    return f"{type(error).__name__}: {message}" if message else type(error).__name__  # the type is part of the clue


def load(args):  # -> (Model, tokenizer), or CLIError saying what is wrong with the checkpoint
    """`tinyllm_lab.load` on --weights / --tokenizer / --context; ANY exception while loading becomes one line.

    The boundary: loading parses files that anyone can hand us, so whatever a file makes the
    loaders raise (bad JSON, a field of the wrong type, a header whose numbers make no model,
    ...) is reported as a problem with that checkpoint, exit status 1. Nothing after `load` is
    caught this way: once the files have loaded and been checked, an exception during
    generation is a bug in the engine, and it keeps its traceback.
    """
    try:
        return load_checkpoint(args.weights, max_seq_len=args.context, tokenizer=args.tokenizer)
    except MemoryError:
        raise CLIError(f"out of memory loading {args.weights} (a smaller --context may help)") from None
    except Exception as e:
        message = one_line(e)
        if str(args.weights) not in message and (args.tokenizer is None or str(args.tokenizer) not in message):
            message = f"cannot load the model in {args.weights}: {message}"  # say which checkpoint, once
        raise CLIError(message) from None


def write(out, text):  # write and flush now (streaming); a refusing stdout becomes OutputError
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        raise OutputError(e.strerror or type(e).__name__) from None


def encode_prompt(tokenizer, prompt, limit, max_new_tokens):  # -> list of ids, BOS first when there is one
    try:
        prompt_ids = tokenizer.encode(prompt, bos=tokenizer.bos_id is not None)
    except ValueError as e:  # a tokenizer refusing this text: the user's input, so one line, status 2
        raise CLIError(f"cannot encode the prompt: {one_line(e)}", status=2) from None
    if not prompt_ids:
        raise CLIError("the prompt is empty and this tokenizer has no BOS token to start from: give a prompt", status=2)
    if len(prompt_ids) + max_new_tokens > limit:
        room = limit - len(prompt_ids)
        advice = f"use --max-new-tokens {room} or less" if room > 0 else "shorten the prompt"
        n = len(prompt_ids)
        raise CLIError(f"the prompt ({n} token{'s' * (n != 1)}{' with BOS' * (prompt_ids[0] == tokenizer.bos_id)}) "
                       f"+ --max-new-tokens {max_new_tokens} exceeds the context of {limit} tokens: {advice}, "
                       "or raise --context (up to the model's trained context)", status=2)
    return prompt_ids


def generate(args, out):
    """Load, check, then write the prompt and each new token's text to `out` as soon as it is complete."""
    model, tokenizer = load(args)
    prompt_ids = encode_prompt(tokenizer, args.prompt, model.config.max_seq_len, args.max_new_tokens)
    session = Session(model, eos_id=tokenizer.eos_id)
    tokens = session.stream(prompt_ids, args.max_new_tokens, np.random.default_rng(args.seed),
                            args.temperature, args.top_k, args.top_p)
    stream = tokenizer.stream_decoder()
    shown = prompt_ids[1:] if prompt_ids[0] == tokenizer.bos_id else prompt_ids  # the text starts after BOS
    write(out, "".join(stream.push(i) for i in shown))  # the prompt as the model read it
    try:
        for token in tokens:
            if token == tokenizer.eos_id:
                break
            piece = stream.push(token)
            if piece:
                write(out, piece)  # streaming: show each piece now, not when a buffer fills
    except ValueError as e:  # the sampler refusing the settings for these logits, e.g. --temperature 1e-320
        write(out, "\n")
        raise CLIError(f"sampling stopped: {one_line(e)}", status=2) from None
    write(out, stream.flush() + "\n")


def report(message):  # one line on stderr, if there is a stderr to write to
    try:
        if sys.stderr is not None:
            print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    except OSError:
        pass


def silence_stdout():  # the buffered text can never be written: send it to /dev/null so exit cannot fail again
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, AttributeError, ValueError):
        pass


def main(argv=None):  # -> exit status
    try:
        return run(argv)
    except OutputError as e:  # e.g. `> /dev/full`
        report(f"cannot write the output: {e}")
        silence_stdout()
        return 1
    except BrokenPipeError:  # e.g. `| head`: the reader left; stop quietly
        silence_stdout()
        return 0
    except KeyboardInterrupt:
        report("interrupted")
        return 130


def run(argv):  # -> exit status; OutputError, BrokenPipeError and KeyboardInterrupt are main's
    if sys.stdout is None:  # started with stdout closed (`>&-`): nowhere to write, say so before any work
        report("standard output is closed: nowhere to write the text")
        return 1
    args = parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")  # a terminal that cannot show a character gets '?', not a crash
    try:
        generate(args, sys.stdout)
    except CLIError as e:
        report(str(e))
        return e.status
    except MemoryError as e:  # e.g. a --context too large for this machine's memory
        report(f"out of memory: {one_line(e)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
