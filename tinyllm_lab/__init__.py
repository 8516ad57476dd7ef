"""tinyllm-lab: a LLaMA-style decoder-only language model, inference only, in numpy.

Every function that takes arrays states their shapes with one alphabet:

    T  tokens in this call          D   model dim (dim)
    H  query heads (n_heads)        K   key/value heads (n_kv_heads)
    Dh head dim (head_dim)          F   feed-forward hidden dim (hidden_dim)
    V  vocabulary size              S   cached positions (keys and values seen so far)

Everything is float32 and runs on the CPU. BLAS is single-threaded by default: importing this
package sets OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS to 1 unless you set one
of them yourself (do that, before Python starts, to opt in to more threads). Those variables
only work before numpy loads its BLAS; if numpy came first, the limit is applied through
threadpoolctl when it is installed (it is in the course environment), else a warning says so.
The only runtime dependency is numpy; torch appears only in `tinyllm_lab.reference`.
"""

import os
import sys

_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_user_chose_threads = any(var in os.environ for var in _THREAD_VARS)
for _var in _THREAD_VARS:
    os.environ.setdefault(_var, "1")  # read by numpy's BLAS when it loads

if "numpy" in sys.modules and not _user_chose_threads:  # too late for the variables
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1, user_api="blas")
    except ImportError:
        import warnings
        warnings.warn("numpy was imported before tinyllm_lab, so BLAS may use several threads; "
                      "import tinyllm_lab first (or set OPENBLAS_NUM_THREADS=1) for the single-threaded default")

__version__ = "0.1.0"


def load(path, max_seq_len=None, tokenizer=None):  # -> (Model, tokenizer)
    """The model and tokenizer of a checkpoint: a Hugging Face folder, or a llama2.c `.bin` with `tokenizer=` its tokenizer .bin.

    See `tinyllm_lab.checkpoint.load` (imported on first call, so `import tinyllm_lab` stays light).
    """
    from tinyllm_lab.checkpoint import load as load_checkpoint
    return load_checkpoint(path, max_seq_len=max_seq_len, tokenizer=tokenizer)
