"""A Monte Carlo study's finished replications on disk (Parquet), so that a study that
was stopped can be resumed: a rerun skips what the store holds.

The file holds the tidy results table; its schema metadata (key ``mlmiss.study``) the
study's seed and a fingerprint of each design's settings (population, analysis model,
fit options), so that a store is not resumed by a study that would give other numbers.
It is rewritten whole, to a temporary file then renamed, so a crash leaves the previous
version intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from ..errors import SimulationError

METADATA_KEY = b"mlmiss.study"


def load(path) -> tuple[pd.DataFrame | None, dict]:
    """(the stored results, the study metadata), or (None, {}) without a file."""
    path = Path(path)
    if not path.exists():
        return None, {}
    import pyarrow.parquet as pq   # imported here: only studies with a store need it

    try:
        table = pq.read_table(path)
    except Exception as exc:   # pyarrow's errors have no common base worth naming
        raise SimulationError(f"store {str(path)!r} cannot be read as Parquet ({exc})") from None
    metadata = table.schema.metadata or {}
    if METADATA_KEY not in metadata:
        raise SimulationError(f"store {str(path)!r} is not an mlmiss Monte Carlo store (no "
                              "study metadata); give another file")
    study = json.loads(metadata[METADATA_KEY].decode())
    return table.to_pandas(), study


def save(path, results: pd.DataFrame, study: dict) -> None:
    """Write ``results`` with the ``study`` metadata, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    table = pa.Table.from_pandas(results, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[METADATA_KEY] = json.dumps(study, sort_keys=True).encode()
    table = table.replace_schema_metadata(metadata)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, temporary)
        os.replace(temporary, path)
    except OSError as exc:
        raise SimulationError(f"store {str(path)!r} cannot be written ({exc})") from None
    finally:
        if temporary.exists():
            temporary.unlink()


def check_compatible(path, stored: dict, seed: int, fingerprints: dict) -> None:
    """A store may be resumed by a study with its seed and, for each design both have,
    its settings."""
    if stored.get("seed") != seed:
        raise SimulationError(f"store {str(path)!r} holds a study with seed {stored.get('seed')}, "
                              f"not {seed}: give the same seed (or seed=None to take the "
                              "store's), or another store")
    changed = [name for name, key in fingerprints.items()
               if name in stored.get("designs", {}) and stored["designs"][name] != key]
    if changed:
        raise SimulationError(f"store {str(path)!r} holds design(s) {', '.join(changed)} run "
                              "with other settings (population, analysis model or fit "
                              "options); give another store")
