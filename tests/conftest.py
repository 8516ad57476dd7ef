"""Shared test set-up.

BLAS gets one thread before anything imports numpy, here and in the notebook kernels that
nbval starts (they inherit this environment): the engine's default, and it keeps stored
notebook outputs reproducible.
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
