# Promoted from notebooks/day4_kv_cache_ffn.ipynb by `python -m tinyllm_lab.promote`.
# Do not edit here: edit the notebook's `#| promote: ffn` cells and promote again.

"""Day 4 feed-forward: the SwiGLU MLP of Llama (Shazeer 2020, "GLU Variants Improve Transformer").

`swiglu(x) = w_down(silu(w_gate x) * w_up x)`. The same three matrices under other names:

    ours     Meta Llama   Hugging Face          shape
    w_gate   w1           mlp.gate_proj         [F, D]
    w_up     w3           mlp.up_proj           [F, D]
    w_down   w2           mlp.down_proj         [D, F]

Computes in float32: every array goes through `as_float32` (day 1's dtype rule).
"""

import numpy as np

from tinyllm_lab.ops import as_float32, linear, silu


def swiglu(x, w_gate, w_up, w_down):  # [T, D], [F, D], [F, D], [D, F] -> [T, D]
    """The gated feed-forward block: `linear(silu(linear(x, w_gate)) * linear(x, w_up), w_down)`.

    Meta: `self.w2(F.silu(self.w1(x)) * self.w3(x))`. Computes in float32 (`as_float32`); shapes
    that do not fit raise ValueError naming all four.
    """
    x, w_gate = as_float32(x, "x"), as_float32(w_gate, "w_gate")
    w_up, w_down = as_float32(w_up, "w_up"), as_float32(w_down, "w_down")
    if x.ndim == 0 or w_gate.ndim != 2:
        raise ValueError(f"swiglu: x {x.shape}, w_gate {w_gate.shape}; expected x [..., D] and w_gate [F, D]")
    D, F = x.shape[-1], w_gate.shape[0]
    if w_gate.shape != (F, D) or w_up.shape != (F, D) or w_down.shape != (D, F):
        raise ValueError(f"swiglu: x {x.shape}, w_gate {w_gate.shape}, w_up {w_up.shape}, w_down {w_down.shape}; "
                         f"expected w_gate and w_up [F, D] = [{F}, {D}] and w_down [D, F] = [{D}, {F}]")
    gate = silu(linear(x, w_gate))  # [T, F]: how much of each hidden unit passes
    up = linear(x, w_up)  # [T, F]: what passes
    return linear(gate * up, w_down)  # [T, D]
