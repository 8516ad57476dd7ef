# Promoted from notebooks/day5_model_session.ipynb by `python -m tinyllm_lab.promote`.
# Do not edit here: edit the notebook's `#| promote: config` cells and promote again.

"""Day 5 model configuration: the architecture in one frozen dataclass, with Meta / llama2.c names.

Checked at construction: sizes positive integers (numpy integers are stored as Python ints; bool
and float refused), norm_eps and rope_theta finite numbers > 0 (stored as float), the heads
consistent. Every problem is a ValueError naming the field.
"""

import math
import numbers
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ModelConfig:
    dim: int                  # D: width of the residual stream
    n_layers: int             # number of transformer blocks
    n_heads: int              # H: query heads
    n_kv_heads: int           # K: key/value heads (K < H is grouped-query attention)
    head_dim: int             # Dh: width of one head; usually H * Dh == D, not required
    hidden_dim: int           # F: width of the SwiGLU feed-forward
    vocab_size: int           # V: number of token ids
    max_seq_len: int          # longest context: size of the RoPE tables and the KV cache
    norm_eps: float = 1e-5    # RMSNorm epsilon, inside the square root
    rope_theta: float = 10000.0  # RoPE base: theta_i = rope_theta ** (-2i / Dh)
    tie_embeddings: bool = True  # output head shares the token-embedding matrix

    def __post_init__(self):
        for name in ("dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "hidden_dim", "vocab_size", "max_seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:  # numpy ints are Integral
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))  # frozen: set once, here, as a Python int
        if self.n_heads % self.n_kv_heads != 0:
            raise ValueError(f"ModelConfig: n_heads = {self.n_heads} is not divisible by n_kv_heads = {self.n_kv_heads}")
        if self.head_dim % 2 != 0:
            raise ValueError(f"ModelConfig: head_dim = {self.head_dim} must be even for RoPE pairs")
        for name in ("norm_eps", "rope_theta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"ModelConfig.{name} must be a number, got {value!r}")
            try:
                as_float = float(value)
            except OverflowError:  # an integer beyond float's range, e.g. 10**400
                as_float = math.inf
            if not 0 < as_float < math.inf:  # also false for nan
                raise ValueError(f"ModelConfig.{name} must be finite and > 0, got {value!r}")
            object.__setattr__(self, name, as_float)
        with np.errstate(over="ignore", under="ignore"):
            eps32 = np.float32(self.norm_eps)  # rms_norm adds it in float32
        if not 0 < eps32 < np.inf:
            raise ValueError(f"ModelConfig.norm_eps = {self.norm_eps!r} is {float(eps32)} in float32, where "
                             f"rms_norm adds it; it must be between 1.4e-45 and 3.4e38")
        if not isinstance(self.tie_embeddings, (bool, np.bool_)):
            raise ValueError(f"ModelConfig.tie_embeddings must be True or False, got {self.tie_embeddings!r}")
        object.__setattr__(self, "tie_embeddings", bool(self.tie_embeddings))


# The course model: small enough to run anywhere, big enough to learn some English.
COURSE_MODEL = ModelConfig(dim=256, n_layers=2, n_heads=4, n_kv_heads=4, head_dim=64, hidden_dim=1024,
                           vocab_size=16384, max_seq_len=1024, norm_eps=1e-5, rope_theta=10000.0,
                           tie_embeddings=True)
