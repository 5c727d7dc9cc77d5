"""Atomic writes: a reader (or a resumed run) sees the old or the new content, never a mix.

Every file or directory the flow replaces in place goes through here: stage
outputs written piecewise, checkpoints of the training loops, the EMD label
cache and the runner's swap of a finished stage directory.  A file is written
to a temporary sibling (same directory, so the final ``os.replace`` is a
rename on one file system), flushed, and renamed over the target.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write to; renamed onto ``path`` when the block
    succeeds, removed when it fails.  The temporary name keeps the suffix, for writers
    that pick the format from it (``model.save(... .keras)``, ``np.savez``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (fsync'ed before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def json_default(o: Any) -> Any:
    """numpy scalars/arrays and paths in manifests and reports."""
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} to JSON: {o!r}")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Atomic JSON write (indented, sorted keys); numpy values become plain numbers,
    NaN stays NaN."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=json_default)
    atomic_write_bytes(path, (text + "\n").encode())


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """A fresh temporary sibling directory of ``final`` to fill; it replaces ``final``
    (:func:`replace_dir`) when the block succeeds and is removed when it fails."""
    final = Path(final)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, final)


def replace_dir(new: str | Path, final: str | Path) -> None:
    """Replace directory ``final`` by directory ``new`` with renames only: a reader sees
    the old or the new directory (between the two renames, neither: never a mix)."""
    new, final = Path(new), Path(final)
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    if old.exists():
        shutil.rmtree(old)
