"""The dataset split files (``data/train.npz``, ``val.npz``, ``test.npz``): the contract
between the ``data`` stage, which writes them, and every stage that reads them.

One row per wafer; the arrays and their dtypes are :data:`NPZ_DTYPES` (shapes
and meaning in ``docs/data.md``).  :func:`write_split` is the only writer
(deterministic: the same arrays give the same bytes), :func:`read_split` the
only reader (names and dtypes checked, a mismatch is a
:class:`~flow.runner.errors.DataFormatError` naming the file).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from flow.core.npzfile import read_npz, write_npz
from flow.runner.errors import DataFormatError

SPLITS = ("train", "val", "test")
#: dtype of every array of a split file (the contract).
NPZ_DTYPES = {
    "words": np.uint8, "calq": np.int32, "aein": np.uint8, "sum_code": np.uint16,
    "eta": np.float32, "layer": np.int16, "waferu": np.int16, "waferv": np.int16,
    "occupancy": np.int16, "zside": np.int8, "simenergy": np.float32, "event": np.int64,
    "gen_pt": np.float32, "gen_eta": np.float32, "gen_phi": np.float32,
}
#: arrays added to the contract later: older split files may lack them (``read_split`` accepts that).
NPZ_OPTIONAL = ("gen_phi",)


def split_file(name: str) -> str:
    """File name of a split inside the data stage's directory (``train`` -> ``train.npz``)."""
    return f"{name}.npz"


def write_split(path: str | Path, arrays: dict[str, np.ndarray], *, compress: bool) -> None:
    """Write one split file: the arrays of :data:`NPZ_DTYPES` in contract order, each of
    its contract dtype (anything else is refused, not cast); fixed zip timestamps, so the
    same wafers always give the same bytes."""
    missing = [k for k in NPZ_DTYPES if k not in arrays and k not in NPZ_OPTIONAL]
    extra = [k for k in arrays if k not in NPZ_DTYPES]
    if missing or extra:
        raise DataFormatError(f"{path}: a split file holds the arrays {list(NPZ_DTYPES)}; got "
                              f"{list(arrays)}" + (f" (missing {missing})" if missing else "")
                              + (f" (unexpected {extra})" if extra else ""))
    wrong = {k: str(np.asarray(arrays[k]).dtype) for k, dt in NPZ_DTYPES.items()
             if k in arrays and np.asarray(arrays[k]).dtype != dt}
    if wrong:
        raise DataFormatError(f"{path}: split-file arrays of the wrong dtype: expected "
                              f"{ {k: np.dtype(NPZ_DTYPES[k]).name for k in wrong} }, got {wrong}")
    write_npz(path, {k: arrays[k] for k in NPZ_DTYPES if k in arrays}, compress=compress)


def read_split(path: str | Path, keys=None) -> dict[str, np.ndarray]:
    """A split file as a dict of arrays (all of them, or only ``keys``), after checking the
    contract's names and dtypes; the arrays of :data:`NPZ_OPTIONAL` may be absent in
    files written before they existed."""
    return read_npz(path, NPZ_DTYPES, optional=NPZ_OPTIONAL, keys=keys, what="dataset split file")
