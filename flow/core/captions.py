"""Figure captions, written by the stage that draws the figures.

A stage that saves figures into its ``plots/`` folder also writes
``plots/captions.json``: ``{figure file name: caption}`` for every figure it
saved.  The report takes each figure's caption from there
(:class:`flow.report.inputs.Figures`), so a caption is written next to the code
that knows what the figure shows.  This module is the file's one writer and
one reader.
"""
from __future__ import annotations

import json
from pathlib import Path

from flow.runner.errors import DataFormatError

#: the captions file, beside the figures
FILE = "captions.json"


def write_captions(plot_dir: str | Path, captions: dict[str, str]) -> Path:
    """Write ``plot_dir/captions.json`` (sorted keys: the same captions give the same bytes)."""
    path = Path(plot_dir) / FILE
    path.write_text(json.dumps(dict(sorted(captions.items())), indent=1) + "\n")
    return path


def read_captions(path: str | Path) -> dict[str, str]:
    """The captions of a ``captions.json``; an unreadable file is a :class:`DataFormatError`."""
    try:
        obj = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path}: expected a JSON object {{figure file name: caption}}, "
                              f"got invalid JSON ({err})") from err
    if not (isinstance(obj, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in obj.items())):
        raise DataFormatError(f"{path}: expected a JSON object {{figure file name: caption}} of strings, "
                              f"got {type(obj).__name__}")
    return obj
