"""Benchmark on a real model's shape: SmolLM2-135M (random weights), the numpy engine against transformers.

    python -m tinyllm_lab.bench_real [--steps 64] [--repeats 3] [--keep FOLDER] [--tiny]

The model: a `LlamaForCausalLM` with SmolLM2-135M's published configuration (read from
../shared/tokenizers/smollm2-135m/config.json when it is there, else the same numbers written
below: 30 layers, dim 576, 9 query / 3 key-value heads, FFN 1536, vocabulary 49152, tied head;
134.5 M parameters), random weights drawn by transformers, saved by transformers in BF16 (as
the real checkpoint is) into a temporary folder, next to SmolLM2's real tokenizer.json if
../shared has it. `--tiny` shrinks it to 2 layers of width 96 (the smoke test's size).

The figures, all on the CPU with ONE thread each (BLAS for numpy; `torch.set_num_threads(1)`):

    decode tok/s   greedy decoding after a 16-token prompt (prefilled, not timed): the rate over
                   --steps steps, each step keeping its best time of --repeats runs, the engines
                   alternating (see `tinyllm_lab.bench`). Three engines: ours (numpy, float32),
                   transformers (`from_pretrained(..., dtype=float32)`, its own KV cache), and the
                   course's PyTorch reference (`tinyllm_lab.reference`, float32).
    load s         in a fresh process, imports done first and not counted: our
                   `weights.load_model(folder)` vs transformers' `from_pretrained(folder,
                   dtype=float32)`, best of --repeats; plus `tinyllm_lab.load(folder)`, which also
                   reads the tokenizer.
    peak RSS MiB   in a fresh process: the largest resident size (Linux VmHWM) after loading and
                   a short greedy generation, against the size of the weights in float32.

Targets (from issue 9): decode >= 1.0x transformers; load <= 2x from_pretrained; peak RSS
<= 1.5x the float32 weights. Exit status 1 if one is missed. The machine this runs on may be
shared: trust ratios over absolute figures, and run it twice before believing a small
difference. A benchmark, not a test (tests/test_bench_real.py only runs its plumbing on --tiny).
Hand-written, imports torch and transformers: not part of the engine.
"""

import os

if __name__ == "__main__":  # one thread against one thread, whatever the environment says
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"  # before numpy loads its BLAS

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from tinyllm_lab import bench  # noqa: E402
from tinyllm_lab.bench import TransformersEngine, best_of, decode, quiet_transformers, run_fresh  # noqa: E402

SHARED_SMOLLM2 = Path(__file__).resolve().parents[1].parent / "shared" / "tokenizers" / "smollm2-135m"
SMOLLM2_CONFIG = {  # huggingface.co/HuggingFaceTB/SmolLM2-135M config.json, the fields that shape the model
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
    "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
    "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 100000, "tie_word_embeddings": True,
    "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "bos_token_id": 0, "eos_token_id": 0,
    "initializer_range": 0.041666666666666664,
}
TINY = {"num_hidden_layers": 2, "hidden_size": 96, "intermediate_size": 256, "num_attention_heads": 3,
        "num_key_value_heads": 1}  # --tiny: the GQA ratio 3 and head_dim 32, two layers
PROMPT_LENGTH = 16
CONTEXT = 256  # the KV cache every engine is given (prompt + steps must fit)
SEED = 0


# ---------------------------------------------------------------------------------------------
# The model folder

def smollm2_config(tiny=False):  # -> dict for transformers.LlamaConfig
    config = dict(SMOLLM2_CONFIG)
    if (SHARED_SMOLLM2 / "config.json").is_file():
        published = json.loads((SHARED_SMOLLM2 / "config.json").read_text(encoding="utf-8"))
        config.update({k: published[k] for k in SMOLLM2_CONFIG if k in published})
    return {**config, **TINY} if tiny else config


def write_folder(folder, tiny=False):  # -> folder: config.json, model.safetensors (BF16), tokenizer.json if we have it
    """Random weights drawn and saved by transformers, as `save_pretrained` writes a real checkpoint."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    quiet_transformers()
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(LlamaConfig(**smollm2_config(tiny))).to(torch.bfloat16)
    model.save_pretrained(folder)
    if (SHARED_SMOLLM2 / "tokenizer.json").is_file():
        shutil.copy(SHARED_SMOLLM2 / "tokenizer.json", folder / "tokenizer.json")
    return Path(folder)


def float32_bytes(folder):  # -> bytes of the weights once widened to float32 (each stored tensor once)
    from safetensors import safe_open
    total = 0
    for path in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            total += sum(4 * int(np.prod(f.get_slice(name).get_shape())) for name in f.keys())
    return total


# ---------------------------------------------------------------------------------------------
# The three engines, each with prefill(tokens) -> next greedy token and step(token) -> next greedy token

class NumpyEngine(bench.NumpyEngine):  # the benchmark's, with a KV cache of CONTEXT positions
    def __init__(self, folder):
        super().__init__(folder, max_seq_len=CONTEXT)


class ReferenceEngine(bench.TorchEngine):  # the benchmark's prefill and step; loaded here with CONTEXT positions
    name = "torch reference"

    def __init__(self, folder):
        from dataclasses import replace

        import torch
        from safetensors.torch import load_file

        from tinyllm_lab import reference
        from tinyllm_lab.weights import config_from_hf
        torch.set_num_threads(1)
        config = config_from_hf(json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")))
        config = replace(config, max_seq_len=CONTEXT)
        self.torch, self.model = torch, reference.Transformer(config)
        state = {name: t.float() for name, t in load_file(str(Path(folder) / "model.safetensors")).items()}
        if config.tie_embeddings:
            state.pop("lm_head.weight", None)  # a tied head stored anyway is the embedding again
        self.model.load_state_dict(reference.from_hf_state_dict(state, config))
        self.model.eval()
        self.pos = 0


ENGINES = (NumpyEngine, TransformersEngine, ReferenceEngine)


def decode_rates(folder, steps, repeats):  # -> ({engine: tokens/s}, {engine: greedy tokens})
    engines = [engine(folder) for engine in ENGINES]
    vocab = engines[0].model.config.vocab_size
    prompt = np.random.default_rng(SEED).integers(0, vocab, PROMPT_LENGTH)
    runs = best_of(engines, decode(prompt, PROMPT_LENGTH + steps), repeats)
    return ({name: steps / seconds.sum() for name, (_, seconds) in runs.items()},
            {name: tokens for name, (tokens, _) in runs.items()})


# ---------------------------------------------------------------------------------------------
# Fresh processes: load time and peak memory

LOAD = {  # Python source: imports first (not timed), then prints the seconds the load took
    "numpy load_model": "import time\nfrom tinyllm_lab.weights import load_model\n"
                        "start = time.perf_counter(); load_model({folder!r}); print(time.perf_counter() - start)\n",
    "tinyllm_lab.load": "import time, tinyllm_lab\nfrom tinyllm_lab import checkpoint, weights\n"
                        "start = time.perf_counter(); tinyllm_lab.load({folder!r}); print(time.perf_counter() - start)\n",
    "transformers": "import time, torch\nfrom transformers import LlamaForCausalLM\ntorch.set_num_threads(1)\n"
                    "start = time.perf_counter()\nLlamaForCausalLM.from_pretrained({folder!r}, dtype=torch.float32)\n"
                    "print(time.perf_counter() - start)\n",
}
PEAK = ("from tinyllm_lab import bench_real\n"
        "print(bench_real.peak_rss_mib(bench_real.{engine}, {folder!r}))\n")


def peak_rss_mib(engine_class, folder):  # -> MiB; for a fresh process: load, then a short greedy generation
    engine = engine_class(folder)
    token = engine.prefill(np.arange(PROMPT_LENGTH))
    for _ in range(8):
        token = engine.step(token)
    return bench.peak_rss_mib()


def fresh_figures(folder, repeats):  # -> ({load row: seconds}, {engine: peak MiB})
    has_tokenizer = (Path(folder) / "tokenizer.json").is_file()
    loads = {name: min(run_fresh(code.format(folder=str(folder))) for _ in range(repeats))
             for name, code in LOAD.items() if has_tokenizer or name != "tinyllm_lab.load"}
    peaks = {engine.name: run_fresh(PEAK.format(engine=engine.__name__, folder=str(folder))) for engine in ENGINES}
    return loads, peaks


# ---------------------------------------------------------------------------------------------

def targets(rates, loads, peaks, weights_mib):  # -> [(description, measured, passed)]
    checks = [("decode: numpy / transformers >= 1.0", rates["numpy"] / rates["transformers"], lambda v: v >= 1.0),
              ("load: numpy load_model / from_pretrained <= 2.0", loads["numpy load_model"] / loads["transformers"],
               lambda v: v <= 2.0),
              ("peak RSS: numpy / float32 weights <= 1.5", peaks["numpy"] / weights_mib, lambda v: v <= 1.5)]
    return [(text, value, ok(value)) for text, value, ok in checks]


def report(rates, tokens, loads, peaks, weights_mib, steps, repeats, out=sys.stdout):  # -> list of targets
    names = [engine.name for engine in ENGINES]
    print(f"\n{'decode, tokens/s (' + str(steps) + ' steps, best of ' + str(repeats) + ')':<44}{'':>4}"
          f"{'x transformers':>16}", file=out)
    for name in names:
        print(f"  {name:<40}{rates[name]:>8.1f}{rates[name] / rates['transformers']:>16.2f}", file=out)
    agree = {name: next((i for i, (a, b) in enumerate(zip(tokens["numpy"], tokens[name])) if a != b),
                        len(tokens["numpy"])) for name in names[1:]}
    print("  greedy tokens shared with numpy: " + ", ".join(f"{name} {n}/{steps}" for name, n in agree.items()), file=out)
    print(f"\n{'load, seconds in a fresh process (best of ' + str(repeats) + ')':<48}{'x transformers':>16}", file=out)
    for name, seconds in loads.items():
        print(f"  {name:<40}{seconds:>8.2f}{seconds / loads['transformers']:>16.2f}", file=out)
    print(f"\n{'peak RSS, MiB in a fresh process':<48}{'x f32 weights':>16}", file=out)
    print(f"  (load + a 16-token prompt + 8 steps; the float32 weights are {weights_mib:.0f} MiB)", file=out)
    for name in names:
        print(f"  {name:<40}{peaks[name]:>8.0f}{peaks[name] / weights_mib:>16.2f}", file=out)
    results = targets(rates, loads, peaks, weights_mib)
    print("\ntargets (issue 9):", file=out)
    for text, value, passed in results:
        print(f"  {'PASS' if passed else 'FAIL'}  {text}  (measured {value:.2f})", file=out)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinyllm_lab.bench_real", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=64, help="decode steps timed (default 64)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure, the best kept (default 3)")
    parser.add_argument("--keep", type=Path, default=None, metavar="FOLDER",
                        help="write the model folder here and keep it (default: a temporary folder, removed)")
    parser.add_argument("--tiny", action="store_true", help="2 layers of width 96: checks the plumbing in seconds")
    args = parser.parse_args(argv)
    if args.repeats < 1 or not 1 <= args.steps <= CONTEXT - PROMPT_LENGTH:
        parser.error(f"--repeats must be >= 1 and --steps in 1..{CONTEXT - PROMPT_LENGTH}")
    with tempfile.TemporaryDirectory(prefix="bench_real_") as tmp:
        folder = write_folder(args.keep or Path(tmp), args.tiny)
        weights_mib = float32_bytes(folder) / 2**20
        print(f"model: SmolLM2-135M-shaped{' (--tiny)' if args.tiny else ''}, random BF16 weights in {folder} "
              f"({weights_mib:.0f} MiB as float32); tokenizer.json: "
              f"{'SmolLM2' if (folder / 'tokenizer.json').is_file() else 'none (../shared absent)'}")
        rates, tokens = decode_rates(folder, args.steps, args.repeats)
        loads, peaks = fresh_figures(folder, args.repeats)
        results = report(rates, tokens, loads, peaks, weights_mib, args.steps, args.repeats)
    return 0 if all(passed for *_, passed in results) else 1


if __name__ == "__main__":
    sys.exit(main())
