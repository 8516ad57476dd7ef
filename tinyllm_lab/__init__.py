"""tinyllm-lab: a LLaMA-style decoder-only language model, inference only, in numpy.

Every function that takes arrays states their shapes with one alphabet:

    T  tokens in this call          D   model dim (dim)
    H  query heads (n_heads)        K   key/value heads (n_kv_heads)
    Dh head dim (head_dim)          F   feed-forward hidden dim (hidden_dim)
    V  vocabulary size              S   cached positions (keys and values seen so far)

Everything is float32 and runs on the CPU. BLAS is single-threaded by default: importing
this package before numpy sets OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS to
1 unless you already set them (set them yourself, before Python starts, to opt in to more).
The only runtime dependency is numpy; torch appears only in `tinyllm_lab.reference`.
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # must happen before numpy loads its BLAS

__version__ = "0.1.0"
