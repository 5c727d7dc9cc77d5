"""The ``.npz`` files stages exchange: one deterministic writer, one checked reader.

Both contracts built on it (:mod:`flow.dataset`, the data stage's split files,
and :mod:`flow.vectors`, the golden test vectors) declare their arrays as
``name -> dtype``; :func:`read_npz` refuses a file whose names or dtypes
differ, naming the file, what was expected and what it holds.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from flow.runner.atomic import atomic_write_bytes
from flow.runner.errors import DataFormatError

#: dtype placeholder of a string array (any length): ``np.dtype(str)`` kind ``U``
STR = "str"


def npz_bytes(arrays: dict[str, np.ndarray], *, compress: bool = False) -> bytes:
    """The ``np.savez`` format (``np.load`` reads it) with fixed zip timestamps and
    members in the order of ``arrays``: the same arrays always give the same bytes.
    0-d arrays stay 0-d; every array is written in C order."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method, allowZip64=True) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            info.external_attr = 0o644 << 16
            if compress:
                info._compresslevel = 1  # fast deflate; measured in docs/data.md
            a = np.asarray(arr)
            if a.ndim:                   # ascontiguousarray would turn a 0-d array into 1-d
                a = np.ascontiguousarray(a)
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, a, allow_pickle=False)
    return buf.getvalue()


def write_npz(path: str | Path, arrays: dict[str, np.ndarray], *, compress: bool = False) -> None:
    """:func:`npz_bytes` written atomically to ``path``."""
    atomic_write_bytes(path, npz_bytes(arrays, compress=compress))


def _dtype_name(dt) -> str:
    return "str" if dt == STR else np.dtype(dt).name


def _dtype_ok(arr: np.ndarray, dt) -> bool:
    return arr.dtype.kind == "U" if dt == STR else arr.dtype == np.dtype(dt)


def read_npz(path: str | Path, dtypes: dict[str, object], *, optional=(), keys=None,
             what: str = "file") -> dict[str, np.ndarray]:
    """Read a contract file: every name of ``dtypes`` present (those in ``optional`` may be
    absent), no other name, each with its dtype.  ``keys``: load only these arrays (the
    names of the whole file are still checked).  Raises
    :class:`~flow.errors.DataFormatError` naming the file, the expected and the found
    arrays or dtypes."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataFormatError(f"{path}: no such {what}") from None
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataFormatError(f"{path}: not an .npz {what} ({err})") from None
    with z:
        names = list(z.files)
        missing = [k for k in dtypes if k not in names and k not in optional]
        extra = [k for k in names if k not in dtypes]
        if missing or extra:
            raise DataFormatError(
                f"{path}: not a valid {what}: expected arrays {list(dtypes)}"
                + (f" ({list(optional)} optional)" if optional else "")
                + f", got {names}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unexpected {extra}" if extra else ""))
        wanted = [k for k in (dtypes if keys is None else keys) if k in names]
        unknown = [k for k in (keys or ()) if k not in dtypes]
        if unknown:
            raise DataFormatError(f"{path}: asked for arrays {unknown} that a {what} does not "
                                  f"have (its arrays: {list(dtypes)})")
        out = {k: z[k] for k in wanted}
    for k, a in out.items():
        if not _dtype_ok(a, dtypes[k]):
            raise DataFormatError(f"{path}: array {k!r} of the {what}: expected dtype "
                                  f"{_dtype_name(dtypes[k])}, got {a.dtype}")
    return out
