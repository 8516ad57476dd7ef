# Promoted from notebooks/day5_model_session.ipynb by `python -m tinyllm_lab.promote`.
# Do not edit here: edit the notebook's `#| promote: config` cells and promote again.

"""Day 5 model configuration: the architecture in one frozen dataclass, with Meta / llama2.c names."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelConfig:
    dim: int                  # D: width of the residual stream
    n_layers: int             # number of transformer blocks
    n_heads: int              # H: query heads
    n_kv_heads: int           # K: key/value heads (K < H is grouped-query attention)
    head_dim: int             # Dh: width of one head; H * Dh == D
    hidden_dim: int           # F: width of the SwiGLU feed-forward
    vocab_size: int           # V: number of token ids
    max_seq_len: int          # longest context: size of the RoPE tables and the KV cache
    norm_eps: float = 1e-5    # RMSNorm epsilon, inside the square root
    rope_theta: float = 10000.0  # RoPE base: theta_i = rope_theta ** (-2i / Dh)
    tie_embeddings: bool = True  # output head shares the token-embedding matrix

    def __post_init__(self):
        for name in ("dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "hidden_dim", "vocab_size", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.n_heads * self.head_dim != self.dim:
            raise ValueError(f"ModelConfig: n_heads * head_dim = {self.n_heads} * {self.head_dim} "
                             f"= {self.n_heads * self.head_dim}, but dim = {self.dim}")
        if self.n_heads % self.n_kv_heads != 0:
            raise ValueError(f"ModelConfig: n_heads = {self.n_heads} is not divisible by n_kv_heads = {self.n_kv_heads}")
        if self.head_dim % 2 != 0:
            raise ValueError(f"ModelConfig: head_dim = {self.head_dim} must be even for RoPE pairs")
        if not self.norm_eps > 0:
            raise ValueError(f"ModelConfig.norm_eps must be positive, got {self.norm_eps!r}")
        if not self.rope_theta > 0:
            raise ValueError(f"ModelConfig.rope_theta must be positive, got {self.rope_theta!r}")
        if not isinstance(self.tie_embeddings, bool):
            raise ValueError(f"ModelConfig.tie_embeddings must be True or False, got {self.tie_embeddings!r}")


# The course model: small enough to run anywhere, big enough to learn some English.
COURSE_MODEL = ModelConfig(dim=256, n_layers=2, n_heads=4, n_kv_heads=4, head_dim=64, hidden_dim=1024,
                           vocab_size=16384, max_seq_len=1024, norm_eps=1e-5, rope_theta=10000.0,
                           tie_embeddings=True)
