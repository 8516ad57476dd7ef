"""Export the course model's weights and the PyTorch reference's golden logits into a folder.

    python -m tinyllm_lab.export [--seed 0] [--out weights]

writes, byte-identical on rerun:

    config.json             Hugging Face LlamaForCausalLM config
    model.safetensors       float32 weights, Hugging Face names (see reference.hf_state_dict)
    golden.safetensors      tokens [T] int64, logits [T, V] float32 (prefill),
                            decode_logits [T, V] float32 (token by token through the KV cache)

Three steps, each reusable on its own: `reference.init_model(config, seed)` makes random weights,
`reference.save_hf_folder(model, folder)` writes them, `write_golden(folder, prompt_ids)` runs the
reference on what was written. Training (day 7) replaces only the first step: it calls
`save_hf_folder` on its trained model, then `write_golden` with a real tokenized prompt.
Hand-written, not promoted; imports torch.
"""

import argparse
import hashlib
from pathlib import Path

import torch
from safetensors.torch import save_file

from tinyllm_lab.config import COURSE_MODEL, ModelConfig
from tinyllm_lab.reference import bos_eos_ids, init_model, load_hf_folder, save_hf_folder

GOLDEN_FILE = "golden.safetensors"


def golden_prompt_ids(config: ModelConfig, length=16, seed=0):  # -> list of `length` ints
    """The fixed prompt for random weights: BOS, then ids drawn uniformly below BOS from a seeded generator."""
    bos, _ = bos_eos_ids(config)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return [bos] + torch.randint(0, bos, (length - 1,), generator=generator).tolist()


def reference_logits(model, tokens):  # [T] int64 -> prefill [T, V], decode [T, V], both float32
    """The reference's logits two ways: the whole prompt in one uncached forward, and token by token
    through its KV cache (start_pos = 0, 1, ..., T-1)."""
    with torch.inference_mode():
        prefill = model(tokens[None])[0]
        decode = torch.cat([model(tokens[None, t:t + 1], start_pos=t)[0] for t in range(len(tokens))])
    return prefill, decode


def write_golden(folder, prompt_ids):  # -> Path of golden.safetensors
    """Load the model stored in folder into the reference and save its logits on prompt_ids next to it.

    The only metadata is {"format": "pt"}: safetensors writes metadata from a hash map, so two or more
    keys come out in a random order and the file would differ from run to run. (With a tokenizer,
    the prompt's text is its decoded `tokens`.)
    """
    folder = Path(folder)
    model = load_hf_folder(folder)
    tokens = torch.tensor(prompt_ids, dtype=torch.int64)
    if tokens.ndim != 1 or not 0 < len(tokens) <= model.config.max_seq_len:
        raise ValueError(f"prompt_ids must be 1 to {model.config.max_seq_len} token ids, got shape {tuple(tokens.shape)}")
    if tokens.min() < 0 or tokens.max() >= model.config.vocab_size:
        raise ValueError(f"prompt_ids must lie in 0..{model.config.vocab_size - 1}, got {tokens.min()}..{tokens.max()}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # BLAS sums in an order that depends on the thread count: pin it, so the bytes repeat
    try:
        prefill, decode = reference_logits(model, tokens)
    finally:
        torch.set_num_threads(threads)
    path = folder / GOLDEN_FILE
    save_file({"tokens": tokens, "logits": prefill.contiguous(), "decode_logits": decode.contiguous()},
              str(path), metadata={"format": "pt"})
    return path


def export(out="weights", seed=0, config: ModelConfig = COURSE_MODEL, prompt_ids=None):  # -> list of Paths
    """Random weights from seed -> Hugging Face folder -> golden logits. Returns the files written."""
    out = Path(out)
    save_hf_folder(init_model(config, seed), out)
    write_golden(out, golden_prompt_ids(config) if prompt_ids is None else prompt_ids)
    return [out / "config.json", out / "model.safetensors", out / GOLDEN_FILE]


def sha256(path):  # -> hex digest of the file's bytes
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinyllm_lab.export", description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument("--out", default="weights", help="folder to write (default weights)")
    args = parser.parse_args(argv)
    for path in export(args.out, args.seed):
        print(f"{sha256(path)}  {path}")


if __name__ == "__main__":
    main()
