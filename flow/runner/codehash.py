"""The flow code a stage runs, and its hash (code-aware staleness).

A stage's code is its module ``flow.<stage>``, every ``flow`` module it
imports (directly or indirectly, anywhere in the file: lazy imports inside
functions count) and the files those modules read at run time
(:data:`RESOURCES`: templates, the geometry table, the cocotb testbench).
The set is found from a static import graph (``ast``), so it is
deterministic, independent of what a process happened to import, and cheap
to compute without TensorFlow: the Makefile uses it for the prerequisites of
each stage's manifest (``python -m flow.runner.codehash --make``), the runner records
its hash in every manifest (``code_sha256``, with ``code_files``: path ->
sha256) and :func:`flow.runner.manifest.verify` calls an artifact stale when the
hash of its stage's current code differs.

The runner and its infrastructure (:data:`RUNNER`: CLI, stages, manifests,
config, errors, host pinning, tool resolution, atomic writers, doctor, bench)
belong to no stage: editing them reruns nothing.  Config values are covered
by each manifest's ``config_hash`` instead.

This module uses the standard library only (``make`` runs it before the venv
may exist).
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "flow"

#: directory holding the ``flow`` package (the repository root in a checkout); tests
#: point it at a copy of the tree
ROOT = Path(__file__).resolve().parents[2]

#: modules of the runner and its infrastructure: part of no stage's code, not followed
RUNNER = frozenset({"flow", "flow.__main__", "flow.cli", "flow.runner"} | {
    f"flow.runner.{m}" for m in ("stages", "manifest", "config", "errors", "host", "doctor", "bench",
                                 "codehash", "tools", "atomic")})

#: files a module reads at run time besides its imports: globs relative to ROOT.  Python
#: files among them are scanned for ``flow`` imports too (the shipped testbench imports
#: none).  tests/test_codehash.py checks that every file below flow/resources
#: belongs to a module.
RESOURCES: dict[str, tuple[str, ...]] = {
    "flow.core.geometry": ("flow/resources/geometry.json",),
    "flow.core.hls": ("flow/resources/hls/*",),
    "flow.core.hls_harness": ("flow/resources/hls/*",),    # the compile recipe of those sources (csim)
    "flow.hdl.datapath": ("flow/resources/rtl/*",),
    "flow.report.render": ("flow/resources/report/*",),
    # the shipped testbench, SEU testbench and runner: cosim runs them, handoff ships them (tb/)
    "flow.core.testbench": ("flow/resources/handoff/*.py", "flow/resources/handoff/*.txt"),
    "flow.handoff.docs": ("flow/resources/handoff/*.tmpl",),
}


@dataclass(frozen=True)
class StageCode:
    """The code of one stage: repository-relative path -> sha256, and their hash."""

    stage: str
    files: dict[str, str]

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        for rel in sorted(self.files):
            h.update(f"{rel}\0{self.files[rel]}\n".encode())
        return h.hexdigest()


# ------------------------------------------------------------------ module graph
def _root(root: Path | None) -> Path:
    return Path(root) if root is not None else ROOT


def module_file(name: str, root: Path | None = None) -> Path | None:
    """The source file of module ``name`` (``flow.x`` or ``flow.x.y``) below ``root``."""
    base = _root(root).joinpath(*name.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


#: a string naming a module's function for a run-time import, ``"flow.hdl.prog:generate"``
_DYNAMIC = re.compile(r"flow(?:\.[A-Za-z_][A-Za-z0-9_]*)+:[A-Za-z_][A-Za-z0-9_]*")

#: parsed imports by (file content sha256, module name): a file is parsed once per content
_PARSED: dict[tuple[str, str | None], frozenset[str]] = {}


def _imports(path: Path, module: str | None) -> frozenset[str]:
    """Names of the ``flow`` modules a file imports (candidates; unresolvable ones are
    dropped by the caller).  ``module`` is the file's own dotted name (None for a file
    outside the package: only absolute imports resolve there)."""
    data = path.read_bytes()
    key = (hashlib.sha256(data).hexdigest(), module)
    if key in _PARSED:
        return _PARSED[key]
    tree = ast.parse(data, filename=str(path))
    is_pkg = path.name == "__init__.py"
    pkg = (module if is_pkg else module.rpartition(".")[0]) if module else ""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if not pkg:
                    continue
                parts = pkg.split(".")
                if node.level > len(parts):
                    continue
                base = ".".join(parts[:len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and _DYNAMIC.fullmatch(node.value)):
            # a "flow.module:function" string: a module imported by name at run time
            # (the RTL flavour registry's generators), an edge like an import
            found.add(node.value.partition(":")[0])
    out = frozenset(n for n in found if n == PACKAGE or n.startswith(PACKAGE + "."))
    _PARSED[key] = out
    return out


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _resource_files(module: str, root: Path) -> list[Path]:
    out: list[Path] = []
    for pattern in RESOURCES.get(module, ()):
        out += [p for p in sorted(root.glob(pattern)) if p.is_file() and "__pycache__" not in p.parts]
    return out


def modules_of(start: str, root: Path | None = None) -> tuple[list[str], list[Path]]:
    """The ``flow`` modules reachable from ``start`` by imports (runner modules neither
    included nor followed) and the resource files they read."""
    root = _root(root)
    seen: set[str] = set()
    resources: set[Path] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen or name in RUNNER:
            continue
        path = module_file(name, root)
        if path is None:
            continue
        seen.add(name)
        todo += _parents(name)
        todo += _imports(path, name)
        for res in _resource_files(name, root):
            if res not in resources:
                resources.add(res)
                if res.suffix == ".py":
                    todo += _imports(res, None)
    return sorted(seen), sorted(resources)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stage_code(stage: str, root: Path | None = None) -> StageCode:
    """The files of ``stage``'s code (module ``flow.<stage>``) with their sha256."""
    root = _root(root)
    start = f"{PACKAGE}.{stage}.stage"
    if module_file(start, root) is None:
        return StageCode(stage, {})
    mods, resources = modules_of(start, root)
    paths = [module_file(m, root) for m in mods] + resources
    return StageCode(stage, {p.relative_to(root).as_posix(): _sha256(p) for p in paths})


def describe_change(recorded: dict[str, str] | None, current: dict[str, str]) -> str:
    """``changed: a, b / added: c / removed: d`` between two ``code_files`` records (no
    semicolons: ``flow status`` shows an error up to its first one)."""
    if not recorded:
        return "its manifest records no code files"
    changed = sorted(f for f in current if f in recorded and recorded[f] != current[f])
    added = sorted(set(current) - set(recorded))
    removed = sorted(set(recorded) - set(current))
    parts = [f"{what}: {', '.join(files)}" for what, files in
             (("changed", changed), ("added", added), ("removed", removed)) if files]
    return " / ".join(parts) or "same files, different hash"


# ------------------------------------------------------------------ make
def make_rules(stages: list[str], root: Path | None = None) -> str:
    """Make variables ``CODE_<stage>`` (the stage's code files) and an empty rule per file,
    so that a deleted or renamed file reruns its stages instead of stopping make."""
    lines = ["# generated by `python -m flow.runner.codehash --make` from the flow's imports: do not edit"]
    every: set[str] = set()
    for s in stages:
        files = sorted(stage_code(s, root).files)
        every.update(files)
        lines.append(f"CODE_{s} := {' '.join(files)}")
    lines += [f"{f}:" for f in sorted(every)]
    return "\n".join(lines) + "\n"


def _stage_names() -> list[str]:
    from flow.runner.stages import STAGES  # stdlib-only module

    return list(STAGES)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flow.runner.codehash",
                                description="files (and hash) of the flow code each stage runs")
    p.add_argument("stages", nargs="*", help="stages (default: all)")
    p.add_argument("--make", action="store_true", help="print make variables CODE_<stage>")
    p.add_argument("--hash", action="store_true", help="print each stage's code_sha256")
    args = p.parse_args(argv)
    names = _stage_names()
    bad = [s for s in args.stages if s not in names]
    if bad:
        print(f"error: unknown stage(s) {bad}: expected some of {names}", file=sys.stderr)
        return 2
    stages = args.stages or names
    if args.make:
        sys.stdout.write(make_rules(stages))
        return 0
    for s in stages:
        code = stage_code(s)
        if args.hash:
            print(f"{s} {code.sha256}")
        else:
            print("\n".join(sorted(code.files)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
