"""One thread for everything inside one evaluation.

On shared 2-core machines, threads inside one evaluation lose: OpenBLAS threads that
spin while Numba kernels run (and the other way round) made a fit several times slower
whenever another process was busy. The kernels run on one thread; numpy's linear
algebra is held to one BLAS thread wherever it alternates with them. Parallel work
belongs over independent jobs (replications, data sets), in processes.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def one_blas_thread():
    """A context manager: numpy's BLAS/LAPACK on one thread inside the block."""
    return threadpool_limits(1, user_api="blas")
