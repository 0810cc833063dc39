"""One thread for everything inside one evaluation.

On shared 2-core machines, threads inside one evaluation lose: OpenBLAS threads that
spin while Numba kernels run (and the other way round) made a fit several times slower
whenever another process was busy. The kernels run on one thread; numpy's linear
algebra is held to one BLAS thread wherever it alternates with them. Parallel work
belongs over independent jobs (replications, data sets), in processes.
"""

from __future__ import annotations

_controller = None


def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries, made once: finding them scans
    the process's shared libraries (1.1 ms, eleven times in a whole fit). scipy's
    linear algebra is imported first, so that its own BLAS is among them."""
    global _controller
    if _controller is None:
        import scipy.linalg  # noqa: F401  (loads scipy's BLAS)
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


def one_blas_thread():
    """A context manager: numpy's and scipy's BLAS/LAPACK on one thread inside the block."""
    return _blas_controller().limit(limits=1, user_api="blas")
