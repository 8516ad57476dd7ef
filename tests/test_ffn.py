"""Day 4 SwiGLU feed-forward: a known answer, parity with PyTorch and Hugging Face's LlamaMLP, bad input."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinyllm_lab.ffn import swiglu


def weights(rng, D, Fh):
    w_gate = (rng.standard_normal((Fh, D)) / math.sqrt(D)).astype(np.float32)
    w_up = (rng.standard_normal((Fh, D)) / math.sqrt(D)).astype(np.float32)
    w_down = (rng.standard_normal((D, Fh)) / math.sqrt(Fh)).astype(np.float32)
    return w_gate, w_up, w_down


def test_known_answer_one_unit():
    # D = F = 1: out = w_down * silu(w_gate * x) * (w_up * x) = 0.5 * silu(2) * 6, silu(2) = 2 / (1 + e^-2)
    x = np.array([[2.0]], np.float32)
    out = swiglu(x, np.array([[1.0]], np.float32), np.array([[3.0]], np.float32), np.array([[0.5]], np.float32))
    assert out.dtype == np.float32
    assert abs(out[0, 0] - 0.5 * (2 / (1 + math.exp(-2))) * 6) < 1e-6


def test_a_closed_gate_or_a_zero_up_projection_gives_zero():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8)).astype(np.float32)
    w_gate, w_up, w_down = weights(rng, 8, 16)
    assert not swiglu(x, np.zeros_like(w_gate), w_up, w_down).any()  # silu(0) = 0
    assert not swiglu(x, w_gate, np.zeros_like(w_up), w_down).any()


@pytest.mark.parametrize("T,D,Fh", [(1, 1, 1), (1, 8, 16), (7, 32, 96), (5, 256, 1024), (64, 64, 172)])
def test_swiglu_matches_torch(T, D, Fh):
    rng = np.random.default_rng(T * D + Fh)
    x = rng.standard_normal((T, D)).astype(np.float32)
    w_gate, w_up, w_down = weights(rng, D, Fh)
    out = swiglu(x, w_gate, w_up, w_down)
    assert out.shape == (T, D) and out.dtype == np.float32
    # Meta's FeedForward.forward: self.w2(F.silu(self.w1(x)) * self.w3(x)), w1 = gate, w3 = up, w2 = down
    w1, w3, w2, xt = (torch.from_numpy(a) for a in (w_gate, w_up, w_down, x))
    expected = F.linear(F.silu(F.linear(xt, w1)) * F.linear(xt, w3), w2).numpy()
    assert np.abs(out - expected).max() < 1e-5


def test_names_map_to_hugging_face_llama_mlp():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP
    torch.manual_seed(0)
    mlp = LlamaMLP(LlamaConfig(hidden_size=32, intermediate_size=80, hidden_act="silu")).eval()
    x = torch.randn(6, 32)
    with torch.no_grad():
        expected = mlp(x).numpy()
    out = swiglu(x.numpy(), mlp.gate_proj.weight.detach().numpy(), mlp.up_proj.weight.detach().numpy(),
                 mlp.down_proj.weight.detach().numpy())
    assert np.abs(out - expected).max() < 1e-5


@pytest.mark.parametrize("gate,up,down,match", [
    ((16, 8), (16, 8), (8, 12), r"w_down \(8, 12\).*w_down \[D, F\] = \[8, 16\]"),
    ((16, 8), (12, 8), (8, 16), r"w_up \(12, 8\).*\[F, D\] = \[16, 8\]"),
    ((16, 6), (16, 6), (8, 16), r"x \(4, 8\), w_gate \(16, 6\)"),
    ((16, 8), (16, 8), (16, 8), r"w_down \(16, 8\)"),  # w_down stored transposed
])
def test_mismatched_weight_shapes_raise_naming_the_shapes(gate, up, down, match):
    z = lambda shape: np.zeros(shape, np.float32)
    with pytest.raises(ValueError, match=match):
        swiglu(z((4, 8)), z(gate), z(up), z(down))


# --- the dtype rule -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int64])
def test_swiglu_computes_in_float32_for_any_real_dtype(dtype):
    rng = np.random.default_rng(21)
    x = (3 * rng.standard_normal((4, 16))).astype(dtype)
    ws = [(2 * w).astype(dtype) for w in weights(rng, 16, 32)]
    out = swiglu(x, *ws)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, swiglu(x.astype(np.float32), *[w.astype(np.float32) for w in ws]))


@pytest.mark.parametrize("which", ["x", "w_gate", "w_up", "w_down"])
def test_swiglu_refuses_arrays_that_are_not_real_numbers_by_name(which):
    args = dict(zip(["x", "w_gate", "w_up", "w_down"], [np.ones((2, 4), np.float32), *weights(np.random.default_rng(0), 4, 8)]))
    args[which] = args[which] > 0  # bool
    with pytest.raises(TypeError, match=f"{which} must hold real numbers .*got dtype bool"):
        swiglu(**args)


def test_swiglu_refuses_a_scalar_x():
    with pytest.raises(ValueError, match=r"swiglu: x \(\), w_gate \(8, 4\)"):
        swiglu(np.float32(1), *weights(np.random.default_rng(0), 4, 8))
