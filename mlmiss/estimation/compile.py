"""Compile the kernels of a fit in two processes when Numba's cache is cold.

Numba compiles each kernel on its first call, one after another, about 17 s for the
kernels of a whole fit, once per installation (the result is cached on disk). Here
the kernels are split into two groups of about equal compile time; each group's
kernels are called on tiny arrays of the types real data give (empty loops: only the
compilation matters), one group in this process while a second interpreter compiles
the other and writes it to the cache, from where this process loads it. The second
process is a fresh ``python -m mlmiss.estimation.compile``, not a fork or a spawn of
the user's program, so nothing of the user's script runs twice.

:func:`ensure_compiled` does this before the first fit of a process, and only when the
cache is cold; ``MLMISS_PARALLEL_COMPILE=0`` turns it off (the kernels then compile on
first use, as before).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..data import Moments, TwoLevelData
from ..likelihood import clusters, engine, hessian, within
from ..model import kernels as model_kernels

#: the environment switch, and what turns it off
SWITCH = "MLMISS_PARALLEL_COMPILE"


def _tiny():
    """Data and moments with every feature the kernels see: missing values at both
    levels, a within-only and a "both" variable, a between-only variable."""
    df = pd.DataFrame({"g": [1, 1, 2, 2, 3, 3], "y1": [0.1, np.nan, 0.3, 0.2, 0.5, 0.4],
                       "y2": [1.0, 0.4, np.nan, 0.1, 0.2, 0.3],
                       "w": [1.0, 1.0, 2.0, 2.0, np.nan, np.nan]})
    data = TwoLevelData.from_frame(df, "g", y=["y1", "y2"], z=["w"])
    moments = Moments([0.0, 0.0], [1.0], np.eye(2), [[0.5, 0.0], [0.0, 0.0]], [[1.0]],
                      [[0.1], [0.0]])
    return data, moments


def _stage_arrays(data, moments):
    """Stages 1-2 (:class:`.engine.Stages`) as zeros of the shapes and types the engine
    makes, so the cluster kernels compile without the pattern kernels."""
    p = data.n_y
    level1, level2 = engine.pattern_buffers(data, moments.between_index.size, np.zeros)
    return engine.Stages(np.zeros((p, p)), 0.0, *level1, *level2)


def _compile_patterns(data, moments):
    engine.pattern_stages(data, moments)


def _compile_terms(data, moments):
    # McDonald's form only (stage 2's zeros: every log-determinant finite); the kernels
    # of the other forms, and the per-row terms of robust inference, compile on first
    # need (``python -m mlmiss.warmup`` compiles them too)
    st = _stage_arrays(data, moments)
    engine._cluster_stage(data, moments, st, np.empty(data.n_clusters))


def _compile_scores(data, moments):
    st = _stage_arrays(data, moments)
    l1, l2 = data.level1, data.level2
    sums = engine.score_buffers(data, moments.between_index.size, np.zeros)
    clusters.cluster_scores(moments.mu_z, data.z, l2.cluster_pattern, st.zinv, st.zlogdet, st.h,
                            st.s_inv, st.s_logdet, l1.cluster_pair_ptr, l1.pair_pattern,
                            l1.pair_freq, l1.pair_sum, st.wb, st.wbb, st.wmub, sums[7], *sums[:7])
    clusters.finish_between_gradient(sums[7], st.h, st.zinv, l2.freq, *sums[4:7])


def _compile_cluster_forms(data, moments):
    # F_j in every form and the cluster's score vectors, which the Hessian needs: on
    # the first group's side, early, so that the second group loads them from the cache
    nb, k = moments.between_index.size, data.n_z
    _, aj, pj, _, _, g = clusters.block_buffers(nb, k)
    aj[:] = np.eye(nb)
    square = np.zeros((1, nb, nb))
    f, af, e_mat = np.zeros((nb, nb)), np.zeros((nb, nb)), np.zeros((nb, nb))
    clusters.cluster_f_into(aj, square[0], square[0], np.int64(0), square[0], 0.0, f,
                            np.zeros((4, nb, nb)))
    vectors = [np.zeros(nb) for _ in range(4)]
    clusters.cluster_score_vectors(aj, f, pj, g, vectors[0], vectors[1], af, e_mat, vectors[2],
                                   vectors[3])


def _compile_backward(data, moments):
    st = _stage_arrays(data, moments)
    l1 = data.level1
    p = data.n_y
    pat_c, pat_r, pat_y = engine.score_buffers(data, moments.between_index.size, np.zeros)[:3]
    within.within_backward(moments.mu_y, st.omega_w + np.eye(p), moments.between_index,
                           l1.tree_var, l1.tree_depth, l1.tree_pattern, l1.freq,
                           l1.pattern_sum, l1.pattern_sumsq, pat_c, pat_r, pat_y,
                           np.empty((p, p)), np.empty(p))


def _compile_hessian(data, moments):
    st = _stage_arrays(data, moments)
    p, k = data.n_y, data.n_z
    rng = np.random.default_rng(0)
    sym = rng.normal(size=(2, p, p))
    directions = hessian.Directions(rng.normal(size=(2, p)), rng.normal(size=(2, k)),
                                    sym + sym.transpose(0, 2, 1), np.zeros((2, p, p)),
                                    np.ones((2, k, k)), np.zeros((2, p, k)))
    hessian.hessian_from_stages(data, moments, st, directions)


def _compile_model(data, moments):
    # a level with a latent variable and a regression: every entry type of the RAM
    # Jacobian (imported here: the model layer's parser is not needed otherwise)
    from ..model.partable import parameter_table
    from ..model.ram import TwoLevelModel

    table = parameter_table("level: 1\n f =~ y1 + y2\nlevel: 2\n fb =~ y1\n fb ~ w\n").table
    model = TwoLevelModel(table, list(data.y_names), list(data.z_names))
    theta = np.full(model.npar, 0.5)
    model.moments(theta)
    model.jacobian(theta)


#: the two groups, of about equal compile time (seconds on a cold cache, each group in
#: a process of its own: scores 5.2 + backward 1.5 + patterns 2.2; terms 2.3 + model
#: 1.7 + hessian 4.4; a kernel's cost depends on which callees its group has compiled)
GROUPS = {"first": (_compile_cluster_forms, _compile_scores, _compile_model, _compile_patterns),
          "second": (_compile_terms, _compile_backward, _compile_hessian)}
#: kernels whose cache files tell whether the cache is warm
_PROBES = (clusters.cluster_scores, clusters.cluster_terms, within.within_backward,
           model_kernels.level_jacobian_into, hessian.cluster_hessian_chunk)


def cache_is_cold() -> bool:
    """Whether some kernel of a fit has no cache index newer than its source (Numba's
    cache layout, read defensively: when in doubt, warm)."""
    try:
        for kernel in _PROBES:
            index = Path(kernel._cache._cache_file._index_path)
            source = Path(kernel.py_func.__code__.co_filename)
            if not index.exists() or index.stat().st_mtime < source.stat().st_mtime:
                return True
    except (AttributeError, OSError):
        return False
    return False


def compile_group(name: str) -> None:
    data, moments = _tiny()
    for job in GROUPS[name]:
        job(data, moments)


_done = False


def ensure_compiled() -> bool:
    """Before the first fit of a process: with a cold cache, compile the kernels in
    two processes (:func:`compile_kernels`). Returns whether it did."""
    global _done
    if _done or os.environ.get(SWITCH, "1") == "0" or not cache_is_cold():
        _done = True
        return False
    _done = True
    compile_kernels()
    return True


def compile_kernels() -> None:
    """The first group here while a helper interpreter compiles the second (both
    here if the helper cannot start)."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [package_root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    try:
        helper = subprocess.Popen([sys.executable, "-m", "mlmiss.estimation.compile", "second"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        helper = None
    compile_group("first")
    if helper is None:
        compile_group("second")
    else:
        helper.wait()


if __name__ == "__main__":
    for group in sys.argv[1:]:
        compile_group(group)
