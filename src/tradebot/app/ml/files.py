"""Writing a position dataset: the Parquet file and its manifest JSON beside it."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from tradebot.app.ml.dataset import Dataset
from tradebot.errors import ConfigError

__all__ = ["atomic_target", "manifest_path", "write_dataset", "write_json_atomic"]


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to: on success it replaces ``path`` (atomic
    within a folder: the old file or the new one, never half of one), on an error it is removed."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` to ``path`` as indented UTF-8 JSON through :func:`atomic_target`."""
    with atomic_target(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def manifest_path(out: Path) -> Path:
    """Return the manifest's path for the dataset file ``out``: ``X.parquet`` → ``X.manifest.json``."""
    return out.with_name(f"{out.stem}.manifest.json")


def write_dataset(dataset: Dataset, out: Path) -> tuple[Path, Path]:
    """Write ``dataset`` to ``out`` (Parquet, zstd) and its manifest beside it; return both paths.

    The manifest gets ``parquet_file`` (the file's name) and ``parquet_sha256`` (its hash). Both files
    are written to a temporary name first and then moved into place. The same dataset gives
    byte-identical files.

    Raises
    ------
    ConfigError
        If ``out`` does not end in ``.parquet`` or is a folder.
    """
    if out.suffix != ".parquet":
        raise ConfigError(f"--out must name a .parquet file, was {str(out)!r}")
    if out.is_dir():
        raise ConfigError(f"--out must name a .parquet file, was the folder {str(out)!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(out) as tmp:
        pq.write_table(dataset.table, tmp, compression="zstd")
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    manifest: dict[str, Any] = {**dataset.manifest, "parquet_file": out.name, "parquet_sha256": digest}
    path = manifest_path(out)
    write_json_atomic(path, manifest)
    return out, path
