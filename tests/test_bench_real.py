"""The real-model benchmark's plumbing on its --tiny model, without timing anything: the folder is
what transformers writes, the three engines do the same work, and the targets are issue 9's.
The figures are for `python -m tinyllm_lab.bench_real`, never for a unit test.
"""

import json

import pytest

from tinyllm_lab import bench_real

pytest.importorskip("transformers", reason="the benchmark compares against transformers")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return bench_real.write_folder(tmp_path_factory.mktemp("smollm2_tiny"), tiny=True)


def test_the_folder_is_smollm2_shaped_in_bf16(folder):
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"],
            config["num_key_value_heads"], config["vocab_size"], config["tie_word_embeddings"]) == (2, 96, 3, 1, 49152, True)
    assert config.get("rope_theta", config.get("rope_parameters", {}).get("rope_theta")) == 100000
    header = json.loads((folder / "model.safetensors").read_bytes()[8:8 + int.from_bytes(
        (folder / "model.safetensors").read_bytes()[:8], "little")])
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"BF16"}
    # float32 size: embedding (tied, stored once) + 2 layers + final norm
    D, F, KV = 96, 256, 32
    per_layer = 2 * D + D * D + 2 * KV * D + D * D + 3 * F * D
    assert bench_real.float32_bytes(folder) == 4 * (49152 * D + 2 * per_layer + D)


def test_the_three_engines_pick_the_same_greedy_tokens(folder):
    rates, tokens = bench_real.decode_rates(folder, steps=5, repeats=1)
    assert set(rates) == set(tokens) == {"numpy", "transformers", "torch reference"}
    assert all(len(t) == 5 for t in tokens.values())
    assert tokens["numpy"] == tokens["transformers"] == tokens["torch reference"]


@pytest.mark.parametrize("ratios, passed", [
    ((1.0, 2.0, 1.5), [True, True, True]),      # exactly on every target
    ((0.99, 2.01, 1.51), [False, False, False]),
])
def test_the_targets_are_the_issues(ratios, passed):
    decode, load, rss = ratios
    results = bench_real.targets({"numpy": decode * 10, "transformers": 10.0},
                                 {"numpy load_model": load * 3, "transformers": 3.0}, {"numpy": rss * 100}, 100.0)
    assert [ok for *_, ok in results] == passed
