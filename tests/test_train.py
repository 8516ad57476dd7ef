"""Smoke test of the training script (`tinyllm_lab.train`): a tiny model, a few dozen steps, a loss that falls.

The real run (`python -m tinyllm_lab.train`) takes minutes on a GPU and never runs here.
"""

import math

import numpy as np
import pytest
import torch

from tinyllm_lab.config import ModelConfig
from tinyllm_lab.reference import init_model
from tinyllm_lab.train import batches, evaluate, learning_rate, train

TINY = ModelConfig(dim=32, n_layers=1, n_heads=2, n_kv_heads=2, head_dim=16, hidden_dim=64, vocab_size=300,
                   max_seq_len=64, norm_eps=1e-5, rope_theta=10000.0, tie_embeddings=True)


def cyclic_stream(n_tokens, period, seed):  # -> [n_tokens] int64: `period` distinct random ids, repeated
    """A text with structure to learn: each id is always followed by the same id."""
    cycle = np.random.default_rng(seed).permutation(TINY.vocab_size)[:period]
    return np.resize(cycle, n_tokens).astype(np.int64)


@pytest.fixture(scope="module")
def trained():  # -> (model, history, val_ids): 40 steps on the cyclic stream
    ids = cyclic_stream(3000, period=17, seed=0)
    train_ids, val_ids = ids[:2400], ids[2400:]
    model = init_model(TINY, seed=0)
    history = train(model, train_ids, val_ids, steps=40, batch_size=8, seq_len=32, lr=1e-2, eval_every=20,
                    seed=0, device="cpu", progress=False)
    return model, history, val_ids


def test_validation_loss_falls(trained):
    _, history, _ = trained
    losses = [h["val_loss"] for h in history]
    assert abs(losses[0] - math.log(TINY.vocab_size)) < 0.5  # an untrained model guesses nearly uniformly
    assert min(losses) < 0.2 * losses[0], losses  # a stream of bigrams is easy: the loss must collapse


def test_history_records_each_evaluation(trained):
    _, history, _ = trained
    assert [h["step"] for h in history] == [0, 20, 40]
    assert history[0]["train_loss"] is None  # nothing trained yet at step 0
    assert all(h["train_loss"] > 0 and h["minutes"] >= 0 for h in history[1:])


def test_the_best_validation_weights_are_kept(trained):
    model, history, val_ids = trained
    val = evaluate(model, torch.as_tensor(val_ids), seq_len=32, batch_size=8, device="cpu")
    assert val == pytest.approx(min(h["val_loss"] for h in history), rel=1e-5)


def test_the_best_weights_are_kept_even_when_they_are_the_first():
    # Validation text made of tokens the training text never uses: training makes it worse, so the
    # best weights are the initial ones, and `train` must hand them back.
    tokens = np.random.default_rng(1).permutation(TINY.vocab_size)
    train_ids, val_ids = np.resize(tokens[:7], 500), np.resize(tokens[7:14], 200)
    model = init_model(TINY, seed=0)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    history = train(model, train_ids, val_ids, steps=10,
                    batch_size=4, seq_len=16, lr=1e-2, eval_every=5, seed=0, device="cpu", progress=False)
    assert history[-1]["val_loss"] > history[0]["val_loss"]
    assert all(torch.equal(v, initial[k]) for k, v in model.state_dict().items())


def test_training_is_deterministic_for_a_seed():
    ids = cyclic_stream(600, period=5, seed=1)
    runs = []
    for _ in range(2):
        model = init_model(TINY, seed=0)
        history = train(model, ids[:500], ids[500:], steps=4, batch_size=4, seq_len=16, lr=1e-2, eval_every=2,
                        seed=3, device="cpu", progress=False)
        runs.append(([h["val_loss"] for h in history], model.tok_embeddings.weight.detach().clone()))
    assert runs[0][0] == runs[1][0]
    assert torch.equal(runs[0][1], runs[1][1])


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    steps, peak, warmup = 100, 1e-3, 10
    lrs = [learning_rate(s, steps, peak, warmup) for s in range(steps + 1)]
    assert lrs[0] == pytest.approx(peak / warmup)                    # linear warm-up starts at peak / warmup
    assert all(a < b for a, b in zip(lrs[:warmup], lrs[1:warmup]))  # ... and rises every step
    assert lrs[warmup - 1] == pytest.approx(peak) and lrs[warmup] == pytest.approx(peak)  # reaches the peak
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1:]))  # then never rises again
    assert lrs[(warmup + steps) // 2] == pytest.approx(peak * 0.55)  # cosine half way: 0.1 + 0.9 * 0.5
    assert lrs[steps] == pytest.approx(peak / 10)                     # and ends at a tenth of the peak


@pytest.mark.parametrize("batch_size, seq_len", [(1, 1), (4, 8), (3, 50)])
def test_batches_target_is_the_input_shifted_by_one(batch_size, seq_len):
    ids = torch.as_tensor(np.random.default_rng(0).integers(0, 300, size=60))
    x, y = batches(ids, batch_size, seq_len, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (batch_size, seq_len) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x moved one token on ...
    for row_x, row_y in zip(x, y):           # ... and each row is a window of the ids
        starts = [s for s in range(len(ids) - seq_len) if torch.equal(ids[s:s + seq_len], row_x)]
        assert any(torch.equal(ids[s + 1:s + seq_len + 1], row_y) for s in starts)


def test_a_tiny_text_end_to_end(tmp_path):
    """The script's own data path on a tiny text: a small BPE, `token_ids` (BOS + work + EOS, cached,
    split by whole works), then a few training steps that lower the validation loss."""
    from tinyllm_lab.corpus import Corpus
    from tinyllm_lab.tokenizer import train_bpe_fast
    from tinyllm_lab.train import token_ids

    verse = "Shall I compare thee to a summer's day? Thou art more lovely and more temperate.\n"
    corpus = Corpus(works={f"work{i:02d}": verse * 20 for i in range(20)}, source="a test")  # work19: validation
    tokenizer = train_bpe_fast(corpus.train_text, 300)
    tokenizer.save(tmp_path / "tokenizer.json")
    train_ids, val_ids = token_ids(corpus, tokenizer, tmp_path / "tokenizer.json", tmp_path)
    assert train_ids[0] == tokenizer.bos_id and train_ids[-1] == tokenizer.eos_id
    assert np.count_nonzero(train_ids == tokenizer.bos_id) == 19 and np.count_nonzero(val_ids == tokenizer.bos_id) == 1
    assert list(tmp_path.glob("tokens-*.npz")), "the token ids are cached"
    cached_train, _ = token_ids(corpus, tokenizer, tmp_path / "tokenizer.json", tmp_path)
    assert np.array_equal(cached_train, train_ids)

    model = init_model(TINY, seed=0)
    history = train(model, train_ids, val_ids, steps=30, batch_size=8, seq_len=32, lr=1e-2, eval_every=15,
                    seed=0, device="cpu", progress=False)
    assert history[-1]["val_loss"] < 0.5 * history[0]["val_loss"], [h["val_loss"] for h in history]
