"""The figures of a run, and the exact comparison of two runs.

``python -m flow figures --config C -o FILE`` writes a run's *figures*;
``python -m flow compare A B`` compares two runs, each given as a run directory
(``build/default``) or as a figures file.  This is how a rerun, another
machine or a refactor is checked against a reference: "the default run
reproduces every figure" is a command, not a hand-made table.

A run's figures are

* every metric of every stage manifest, flattened to dotted paths
  (``autoencoder.median_emd.emd_cnn.median``, ``data.wafers.test``; list
  items as ``[i]``), except timings: a path component that names a time or a
  rate (:data:`TIMING`: ``wall_s``, ``s_per_epoch``, ``label_pairs_per_s``,
  ``timings_s``, ...), a memory peak (``peak_rss_mb``) or run state
  (``cached``) is left out;
* the sha256 of every output file of every stage (``outputs``);
* for information only: each stage's host block (CPU model, cores, the
  TensorFlow settings), git revision and tool versions.

The comparison is exact: two numbers are equal when they are equal (NaN equals
NaN), as the flow's bit-exactness checks compare integer codes, never floats
with a tolerance.  A figure present on one side only counts as a difference.
Output hashes are listed but do not count unless ``--outputs`` is given: some
outputs carry a time stamp (the report, the handoff archive).  ``--ignore
REGEX`` leaves out further figures (matched against the dotted path).

The result carries ``n_total``, ``n_mismatch``, the figures present on one side
only and the mismatches (figure, A, B); ``--out FILE`` writes it as JSON.
Exit status 0 when every compared figure is equal, 1 when not, 2 on bad input.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from flow.runner.atomic import atomic_write_json
from flow.runner.errors import FlowError
from flow.runner.manifest import MANIFEST

SCHEMA = "flow-figures/1"

#: A path component matching this is a timing, a rate, a memory peak or run state, not a figure.
TIMING = re.compile(r"(^|_)(s|ms|us|seconds)$|_per_s$|^s_per_|_s_per_|wall|^timings?(_s)?$|^cached$"
                    r"|(^|_)rss(_|$)")

_INDEX = re.compile(r"\[\d+\]")


def is_timing(path: str) -> bool:
    """Whether a dotted figure path names a timing (any component matches :data:`TIMING`)."""
    return any(TIMING.search(_INDEX.sub("", part)) for part in path.split("."))


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted path, scalar)`` of every leaf of a JSON value; an empty dict/list is a leaf."""
    if isinstance(value, dict) and value:
        for key in sorted(value):
            yield from flatten(value[key], f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            yield from flatten(item, f"{prefix}[{i}]")
    else:
        yield prefix, value


def run_figures(run_dir: str | Path) -> dict[str, Any]:
    """The figures of the run in ``run_dir`` (every ``<stage>/manifest.json`` below it)."""
    run_dir = Path(run_dir)
    manifests = sorted(run_dir.glob(f"*/{MANIFEST}"))
    if not manifests:
        raise FlowError(f"{run_dir}: expected a run directory holding <stage>/{MANIFEST} "
                        f"(e.g. build/default) or a figures file written by `python -m flow figures`, "
                        f"got {'a directory without stage manifests' if run_dir.is_dir() else 'nothing'}")
    figures: dict[str, Any] = {}
    outputs: dict[str, str] = {}
    stages: dict[str, dict] = {}
    for path in manifests:
        try:
            man = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise FlowError(f"{path} is not valid JSON ({err}); rerun that stage") from None
        stage = man.get("stage", path.parent.name)
        for key, value in flatten(man.get("metrics", {}), stage):
            if not is_timing(key):
                figures[key] = value
        for name, meta in sorted(man.get("outputs", {}).items()):
            outputs[f"{stage}/{name}"] = meta.get("sha256") if isinstance(meta, dict) else meta
        stages[stage] = {"finished_utc": man.get("finished_utc"), "git": man.get("git"),
                         "host": man.get("host"), "tools": man.get("tools")}
    return {"schema": SCHEMA, "source": str(run_dir), "stages": stages,
            "figures": figures, "outputs": outputs}


def load_figures(source: str | Path) -> dict[str, Any]:
    """Figures of a run directory, or of a figures file written by :func:`write_figures`."""
    source = Path(source)
    if source.is_file():
        try:
            data = json.loads(source.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise FlowError(f"{source}: expected a figures file (JSON, schema {SCHEMA!r}), "
                            f"got a file that is not JSON ({err})") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            got = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise FlowError(f"{source}: expected a figures file with schema {SCHEMA!r}, got {got!r}")
        return data
    if not source.exists():
        raise FlowError(f"{source}: expected a run directory (e.g. build/default) or a figures file, "
                        f"got a path that does not exist")
    return run_figures(source)


def write_figures(run_dir: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the figures of ``run_dir`` to ``out`` (atomically) and return them."""
    data = run_figures(run_dir)
    atomic_write_json(Path(out), data)
    return data


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def compare(a: dict[str, Any], b: dict[str, Any], *, ignore: Iterable[str] = (),
            stages: Iterable[str] = (), outputs: bool = False) -> dict[str, Any]:
    """Exact comparison of two figure sets (see the module doc); A is the reference."""
    pats = []
    for p in ignore:
        try:
            pats.append(re.compile(p))
        except re.error as err:
            raise FlowError(f"--ignore {p!r}: expected a regular expression, got one that does not "
                            f"compile ({err})") from None
    keep = set(stages)

    def chosen(path: str) -> bool:
        if keep and path.split(".")[0].split("/")[0] not in keep:
            return False
        return not any(p.search(path) for p in pats)

    fa = {k: v for k, v in a["figures"].items() if chosen(k) and not is_timing(k)}
    fb = {k: v for k, v in b["figures"].items() if chosen(k) and not is_timing(k)}
    common = sorted(fa.keys() & fb.keys())
    mismatches = [{"figure": k, "a": fa[k], "b": fb[k]} for k in common if not _equal(fa[k], fb[k])]
    oa = {k: v for k, v in a.get("outputs", {}).items() if chosen(k)}
    ob = {k: v for k, v in b.get("outputs", {}).items() if chosen(k)}
    out_common = sorted(oa.keys() & ob.keys())
    out_diff = [k for k in out_common if oa[k] != ob[k]]
    only_a = sorted(fa.keys() - fb.keys())
    only_b = sorted(fb.keys() - fa.keys())
    n_diff = len(mismatches) + len(only_a) + len(only_b) + (len(out_diff) if outputs else 0)

    def hosts(x: dict) -> dict[str, str | None]:
        return {s: ((v.get("host") or {}).get("cpu_model"), (v.get("host") or {}).get("cpu_family_model"))
                for s, v in x.get("stages", {}).items() if not keep or s in keep}

    return {"a": a.get("source"), "b": b.get("source"), "n_total": len(common),
            "n_mismatch": len(mismatches), "only_a": only_a, "only_b": only_b,
            "mismatches": mismatches, "equal": n_diff == 0,
            "outputs": {"n_total": len(out_common), "n_mismatch": len(out_diff), "counted": outputs,
                        "mismatches": out_diff,
                        "only_a": sorted(oa.keys() - ob.keys()), "only_b": sorted(ob.keys() - oa.keys())},
            "hosts": {"a": hosts(a), "b": hosts(b)},
            "git": {"a": {s: v.get("git") for s, v in a.get("stages", {}).items()},
                    "b": {s: v.get("git") for s, v in b.get("stages", {}).items()}}}


def _fmt(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, float) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _rel(a: Any, b: Any) -> str:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool) and a != 0 and math.isfinite(a) and math.isfinite(b):
        return f"{(b - a) / abs(a):+.3%}"
    return ""


def print_result(res: dict[str, Any], *, limit: int = 30) -> None:
    """A summary table per stage and the first ``limit`` differences, expected (A) vs got (B)."""
    from rich.console import Console
    from rich.table import Table

    con = Console()
    per: dict[str, list[int]] = {}
    for key in res["only_a"]:
        per.setdefault(key.split(".")[0], [0, 0, 0, 0])[2] += 1
    for key in res["only_b"]:
        per.setdefault(key.split(".")[0], [0, 0, 0, 0])[3] += 1
    for m in res["mismatches"]:
        per.setdefault(m["figure"].split(".")[0], [0, 0, 0, 0])[1] += 1
    t = Table(title=f"figures: A = {res['a']}  vs  B = {res['b']}", title_justify="left")
    for col in ("stage", "CPU A", "CPU B", "changed", "only in A", "only in B"):
        t.add_column(col)
    for stage in sorted(set(per) | set(res["hosts"]["a"]) | set(res["hosts"]["b"])):
        c = per.get(stage, [0, 0, 0, 0])
        ha, hb = res["hosts"]["a"].get(stage), res["hosts"]["b"].get(stage)
        t.add_row(stage, " ".join(str(x) for x in ha or ()) or "-", " ".join(str(x) for x in hb or ()) or "-",
                  str(c[1]), str(c[2]), str(c[3]))
    con.print(t)
    shown = 0
    for m in res["mismatches"][:limit]:
        con.print(f"  [red]changed[/red] {m['figure']}: expected {_fmt(m['a'])}, got {_fmt(m['b'])} "
                  f"{_rel(m['a'], m['b'])}", highlight=False)
        shown += 1
    for key in (res["only_a"] + res["only_b"])[:max(0, limit - shown)]:
        side = "A" if key in res["only_a"] else "B"
        con.print(f"  [red]missing[/red] {key}: only in {side}", highlight=False)
    o = res["outputs"]
    con.print(f"outputs: {o['n_total'] - o['n_mismatch']} of {o['n_total']} byte-identical"
              f"{'' if o['counted'] else ' (not counted; --outputs counts them)'}"
              + (f"; differing: {', '.join(o['mismatches'][:8])}{' ...' if len(o['mismatches']) > 8 else ''}"
                 if o["mismatches"] else ""), highlight=False)
    n_miss = len(res["only_a"]) + len(res["only_b"])
    verdict = "EQUAL" if res["equal"] else "DIFFERENT"
    con.print(f"[bold]{verdict}[/bold]: n_total {res['n_total']} figures compared, n_mismatch "
              f"{res['n_mismatch']}, {n_miss} on one side only", highlight=False)


def main_compare(a: str, b: str, *, ignore: list[str], stages: list[str], outputs: bool,
                 out: str | None, limit: int) -> int:
    res = compare(load_figures(a), load_figures(b), ignore=ignore, stages=stages, outputs=outputs)
    if out:
        atomic_write_json(Path(out), res)
    print_result(res, limit=limit)
    return 0 if res["equal"] else 1
