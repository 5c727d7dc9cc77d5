"""Code-aware staleness: each stage's code (flow/runner/codehash.py) in its manifest, verify() and make."""
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes import fake_stage

from flow import cli
from flow.runner import codehash as H
from flow.runner import config as C
from flow.runner.errors import StageInputError
from flow.runner.manifest import MANIFEST, verify
from flow.runner.stages import STAGES, run_stage

ROOT = Path(__file__).resolve().parents[1]
QUIET = {"echo": lambda *a: None}


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A copy of the package and the testbench that flow.runner.codehash reads instead of the real one."""
    root = tmp_path / "src"
    shutil.copytree(ROOT / "flow", root / "flow", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(H, "ROOT", root)
    return root


def _edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# edited\n")


def test_stage_code_follows_imports_and_resources():
    data = H.stage_code("data").files
    assert {"flow/data/stage.py", "flow/core/frontend.py", "flow/core/geometry.py", "flow/data/ntuple.py",
            "flow/core/generator.py",
            "flow/resources/geometry.json"} <= set(data)
    # the runner and its infrastructure belong to no stage
    for name in H.RUNNER:
        assert H.module_file(name) is not None, f"{name} in RUNNER does not exist"
        rel = H.module_file(name).relative_to(H.ROOT).as_posix()
        assert all(rel not in H.stage_code(s).files for s in STAGES), rel
    cosim = H.stage_code("cosim").files
    # the shipped testbench and runner (one testbench for cosim and handoff)
    for f in ("run.py", "test_econt_handoff.py", "econt_vectors.py"):
        assert f"flow/resources/handoff/{f}" in cosim and f"flow/resources/handoff/{f}" in H.stage_code(
            "handoff").files
    # the vector sets come from the golden model: it is part of cosim's code
    assert "flow/core/encoder.py" in cosim and "flow/core/frontend.py" in cosim
    assert any(f.startswith("flow/resources/hls/") for f in H.stage_code("csim").files)
    report = ("report/__init__", "report/stage", "report/doc", "report/inputs", "report/render",
              "report/sections", "core/__init__", "core/captions")
    assert set(H.stage_code("report").files) == {f"flow/{m}.py" for m in report} | {
        f"flow/resources/report/{p.name}" for p in (ROOT / "flow/resources/report").iterdir()}
    for s in STAGES:
        assert f"flow/{s}/stage.py" in H.stage_code(s).files


def test_every_resource_file_belongs_to_a_module():
    claimed = {p for globs in H.RESOURCES.values() for g in globs for p in ROOT.glob(g)}
    files = {p for p in (ROOT / "flow" / "resources").rglob("*")
             if p.is_file() and "__pycache__" not in p.parts}
    assert files <= claimed, sorted(str(p.relative_to(ROOT)) for p in files - claimed)
    # a module whose code (not its docstrings) names package resources or the testbench declares them
    for path in sorted(p for p in (ROOT / "flow").rglob("*.py")
                       if "resources" not in p.parts and "__pycache__" not in p.parts):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name in H.RUNNER:
            continue
        tree = ast.parse(path.read_text())
        docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
        # a bare folder name counts where it builds a path (``... / "resources"``, joinpath, Path),
        # not as a table id or a word in a message
        in_path = {id(x) for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div)
                   for x in (n.left, n.right)}
        in_path |= {id(x) for n in ast.walk(tree) if isinstance(n, ast.Call)
                    and getattr(n.func, "attr", getattr(n.func, "id", None)) in ("joinpath", "Path")
                    for x in n.args}
        strings = [n.value for n in ast.walk(tree)
                   if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
                   and (re.match(r"(.*/)?resources/", n.value)
                        or (n.value == "resources" and id(n) in in_path))]
        if strings:
            assert name in H.RESOURCES, f"{path.name} reads files it does not declare in codehash.RESOURCES"


def test_editing_a_shared_core_changes_the_hash_of_every_stage_that_imports_it(tree):
    before = {s: H.stage_code(s).sha256 for s in STAGES}
    _edit(tree / "flow" / "core" / "frontend.py")
    after = {s: H.stage_code(s).sha256 for s in STAGES}
    changed = {s for s in STAGES if before[s] != after[s]}
    users = {s for s in STAGES if "flow/core/frontend.py" in H.stage_code(s).files}
    assert changed == users
    assert {"data", "autoencoder", "convert", "csim", "rtl", "cosim", "physics", "handoff"} <= changed
    assert "emd" not in changed and "report" not in changed
    # a resource file and the testbench count as code too
    _edit(tree / "flow" / "resources" / "report" / "report.css")
    assert H.stage_code("report").sha256 != after["report"]
    _edit(tree / "flow" / "resources" / "handoff" / "test_econt_handoff.py")
    assert H.stage_code("cosim").sha256 != after["cosim"]
    assert H.stage_code("handoff").sha256 != after["handoff"]
    assert H.stage_code("csim").sha256 == after["csim"]


def test_a_new_import_joins_the_stage_code(tree):
    assert "flow/core/encoder_file.py" not in H.stage_code("data").files
    p = tree / "flow" / "data" / "stage.py"
    p.write_text(p.read_text() + "\n\ndef _later():\n    from flow.core.encoder_file import Fmt  # noqa\n")
    assert "flow/core/encoder_file.py" in H.stage_code("data").files


def _write(ctx):
    (ctx.out / "a.txt").write_text("a\n")


def test_verify_calls_an_artifact_built_from_other_code_stale(tree, tmp_path, monkeypatch, capsys):
    fake_stage(monkeypatch, "data", _write)
    fake_stage(monkeypatch, "emd", _write)
    cfg = C.parse_config({"name": "t", "workdir": str(tmp_path / "build")})
    man = run_stage(cfg, "data", **QUIET)
    assert man["code_sha256"] == H.stage_code("data").sha256
    assert "flow/core/frontend.py" in man["code_files"]
    run_stage(cfg, "emd", **QUIET)
    verify(cfg, "emd")

    _edit(tree / "flow" / "core" / "frontend.py")
    with pytest.raises(StageInputError, match=r"stage 'data' is stale: the flow code it runs changed since "
                                              r"it was built \(changed: flow/core/frontend.py, code_sha256 "
                                              r".*make data"):
        verify(cfg, "data")
    # a downstream stage cannot use it either (and emd's own code did not change)
    with pytest.raises(StageInputError, match=r"stage 'data' is stale.*flow/core/frontend.py"):
        verify(cfg, "emd")
    with pytest.raises(StageInputError, match=r"stage 'data' is stale.*flow/core/frontend.py"):
        run_stage(cfg, "emd", **QUIET)
    # rebuilt with the new code: fresh again, and emd is stale because data was rebuilt
    run_stage(cfg, "data", **QUIET)
    verify(cfg, "data")
    with pytest.raises(StageInputError, match=r"stage 'emd' is stale: stage 'data' was rebuilt"):
        verify(cfg, "emd")

    # `flow status` shows it too
    _edit(tree / "flow" / "core" / "geometry.py")
    with pytest.raises(StageInputError, match=r"changed: flow/core/geometry.py"):
        verify(cfg, "data")
    conf = tmp_path / "t.yaml"
    conf.write_text(f"name: t\nworkdir: {tmp_path / 'build'}\n")
    monkeypatch.setenv("COLUMNS", "200")      # rich shortens the detail column in 80 columns
    assert cli.main(["status", "--config", str(conf)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "STALE" in out and "flow/core/geometry.py" in out


def test_the_manifest_is_as_old_as_the_stage_start(tmp_path, monkeypatch):
    """An input edited while a stage runs (a shared core, the config) is newer than the
    stage's manifest, so make reruns the stage instead of leaving it to the hash check
    downstream to refuse it."""
    meanwhile = tmp_path / "edited_while_the_stage_ran.py"

    def body(ctx):
        time.sleep(1.1)
        meanwhile.write_text("x = 1\n")
        time.sleep(1.1)
        (ctx.out / "out.txt").write_text("x")
    fake_stage(monkeypatch, "data", body)
    cfg = C.parse_config({"name": "t", "workdir": str(tmp_path / "build")})
    t0 = time.time()
    run_stage(cfg, "data", **QUIET)
    m = (cfg.stage_dir("data") / MANIFEST).stat().st_mtime
    assert t0 - 1 <= m < meanwhile.stat().st_mtime
    assert (cfg.stage_dir("data") / "out.txt").stat().st_mtime > m     # only the manifest is back-dated


def test_a_manifest_without_code_hash_is_stale(tmp_path, monkeypatch):
    fake_stage(monkeypatch, "data", _write)
    cfg = C.parse_config({"name": "t", "workdir": str(tmp_path)})
    run_stage(cfg, "data", **QUIET)
    path = cfg.stage_dir("data") / MANIFEST
    man = json.loads(path.read_text())
    del man["code_sha256"], man["code_files"]
    path.write_text(json.dumps(man))
    with pytest.raises(StageInputError, match=r"records no code hash.*older flow.*make data"):
        verify(cfg, "data")


def test_cli_deps_prints_the_stage_code():
    r = subprocess.run([sys.executable, "-m", "flow", "deps", "data"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == sorted(H.stage_code("data").files)
    r = subprocess.run([sys.executable, "-m", "flow", "deps", "nosuchstage"], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "unknown stage" in r.stderr


def test_make_rules_list_each_stage_code_and_every_file():
    text = H.make_rules(list(STAGES))
    for s in STAGES:
        line = next(x for x in text.splitlines() if x.startswith(f"CODE_{s} := "))
        assert line.split(" := ")[1].split() == sorted(H.stage_code(s).files)
    assert "flow/core/frontend.py:" in text.splitlines()   # a deleted file reruns, not breaks, make


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_reruns_the_stages_whose_code_changed(tmp_path):
    """`make -n` on a copy of the tree: touching flow/core/frontend.py reruns data, touching
    flow/hdl/area.py reruns rtl and cosim but not data."""
    shutil.copytree(ROOT / "flow", tmp_path / "flow", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("Makefile", "pyproject.toml"):
        shutil.copy2(ROOT / f, tmp_path / f)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "t.yaml").write_text("name: t\n")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / ".installed").touch()
    old = time.time() - 100
    for p in tmp_path.rglob("*"):
        os.utime(p, (old, old), follow_symlinks=False)
    for s in STAGES:
        (tmp_path / "build" / "t" / s).mkdir(parents=True)
        (tmp_path / "build" / "t" / s / MANIFEST).write_text("{}")

    def planned(goal):
        r = subprocess.run(["make", "-n", goal, "VENV=venv", "CONFIG=configs/t.yaml"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        return re.findall(r"-m flow (\w+) --config", r.stdout)

    assert planned("handoff") == []
    now = time.time() + 10
    os.utime(tmp_path / "flow" / "hdl" / "area.py", (now, now))
    assert planned("data") == []
    assert set(planned("cosim")) == {"rtl", "cosim"}
    for s in ("rtl", "cosim"):
        os.utime(tmp_path / "build" / "t" / s / MANIFEST, (now + 11, now + 11))
    assert planned("cosim") == []
    os.utime(tmp_path / "flow" / "core" / "frontend.py", (now + 5, now + 5))
    assert planned("data") == ["data"]
    assert planned("emd")[0] == "data"


def test_rtl_code_includes_every_registered_flavour_generator():
    """The flavour registry imports its generators by name at run time
    (``"flow.hdl.prog:generate"``); the static graph still counts them as rtl's code."""
    from flow.hdl.flavours import FLAVOURS

    files = H.stage_code("rtl").files
    for fl in FLAVOURS.values():
        mod = fl.generator.partition(":")[0]
        assert mod.replace(".", "/") + ".py" in files, fl.name
