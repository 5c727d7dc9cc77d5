"""The files stages exchange and the rules between stages (issue #15, part 1).

* no stage module imports another stage module (the stage list is the runner's registry);
* the cosim reference model shares no code with the device side (RTL generator, cosim);
* the dataset split files (:mod:`flow.core.dataset`) and the golden-vector files
  (:mod:`flow.core.vectors`): one deterministic writer, one reader with clear errors;
* ``autoencoder/encoder.json`` (:mod:`flow.core.encoder_file`): written with the weights,
  read by the later stages instead of their manifests or config, checked against
  ``weights.bin``;
* every input a stage reads is declared (an upstream of the registry, or one the stage
  verifies and records itself), and a stage writes nothing outside its directory.
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fakes import fake_stage

from flow.core import dataset as dataset
from flow.core import encoder as E
from flow.core import vectors as vectors
from flow.core.encoder_file import ENCODER_JSON, read_encoder, write_encoder
from flow.core.frontend import FrontEnd
from flow.core.npzfile import write_npz
from flow.runner import config as C
from flow.runner.errors import DataFormatError, StageInputError
from flow.runner.stages import STAGES, run_stage

ROOT = Path(__file__).resolve().parents[1]
FLOW = ROOT / "flow"
QUIET = dict(echo=lambda *a: None)


# ============================================================ import rules
#: the packages of flow/ that are not stages: the runner, the shared cores, the Verilog generators
SHARED = ("runner", "core", "hdl")


def module_name(path: Path) -> str:
    """``flow/core/tb_sets.py`` -> ``flow.core.tb_sets`` (``__init__.py`` names its package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def flow_modules() -> list[Path]:
    """Every module of the flow package (not the data-only resources)."""
    return sorted(p for p in FLOW.rglob("*.py") if "resources" not in p.relative_to(FLOW).parts
                  and "__pycache__" not in p.parts)


def flow_imports(path: Path, *, top_level_only: bool = False, module: str | None = None) -> set[str]:
    """The ``flow`` modules a file imports (dotted, e.g. ``flow.core.encoder``), relative or
    absolute, including ``importlib.import_module("flow.x")``; a ``from flow.p import m``
    counts as ``flow.p.m`` (``m`` may be a module).  With ``top_level_only`` only the
    imports executed when the module is imported (not those inside functions)."""
    tree = ast.parse(path.read_text())
    module = module or module_name(path)
    pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nodes = ast.walk(tree) if not top_level_only else [
        n for stmt in tree.body for n in ([stmt] + (list(ast.walk(stmt)) if isinstance(stmt, ast.If | ast.Try)
                                                   else []))]
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            if base == "flow" or base.startswith("flow."):
                out.add(base)
                out.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("flow."))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
            if name == "import_module" and node.args and isinstance(node.args[0], ast.Constant) \
                    and str(node.args[0].value).startswith("flow."):
                out.add(str(node.args[0].value))
    return {m for m in out if _exists(m)}


def _exists(module: str) -> bool:
    base = ROOT.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def group(module: str) -> str:
    """The package of flow/ a module belongs to (``flow.cosim.seu`` -> ``cosim``);
    the top-level ``flow``, ``flow.cli`` and ``flow.__main__`` belong to the runner."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in (*SHARED, *STAGES)) else "runner"


def test_import_walker_sees_every_import_form(tmp_path):
    pkg = tmp_path / "flow" / "p"
    pkg.mkdir(parents=True)
    p = pkg / "m.py"
    p.write_text("from . import a, b as B\nfrom .c import x\nfrom .d.e import y\nimport flow.f\n"
                 "from flow.g import z\nfrom flow import h\n"
                 "def f():\n    from .i import w\n    importlib.import_module('flow.j')\n")
    global _exists
    real, _exists = _exists, lambda m: True
    try:
        got = flow_imports(p, module="flow.p.m")
        top = flow_imports(p, top_level_only=True, module="flow.p.m")
    finally:
        _exists = real
    assert {"flow.p.a", "flow.p.b", "flow.p.c", "flow.p.d.e", "flow.f", "flow.g", "flow.h",
            "flow.p.i", "flow.j"} <= got
    assert "flow.p.i" not in top and "flow.j" not in top and "flow.p.d.e" in top


def test_every_module_sits_in_a_package_of_the_layout():
    """flow/ holds the CLI and one package per stage plus runner, core and hdl."""
    tops = {p.name for p in FLOW.iterdir() if p.name not in ("__pycache__", "resources")}
    assert tops == {"__init__.py", "__main__.py", "cli.py", *SHARED, *STAGES}, sorted(tops)
    for stage in STAGES:
        assert (FLOW / stage / "stage.py").is_file(), f"registry stage {stage} has no flow/{stage}/stage.py"
        assert STAGES[stage].module == f"flow.{stage}.stage"
    # a package's __init__ imports nothing: a module pulls in only what it imports itself
    for init in FLOW.glob("*/__init__.py"):
        if "resources" not in init.parts:
            assert not flow_imports(init), f"{init.relative_to(ROOT)} imports {flow_imports(init)}"


def test_no_stage_package_imports_another_stage_package():
    """A stage reads another stage's results through the files of its artifact, never its code.
    The chains a later stage re-runs (the co-design sweep: training, RTL, cosim, csim, physics
    on each design point) live in the shared packages (core, hdl)."""
    assert {"data", "convert", "csim", "rtl", "cosim", "handoff"} <= set(STAGES)
    bad = {}
    for path in flow_modules():
        mod = module_name(path)
        own = group(mod)
        if own not in STAGES:
            continue
        other = sorted(m for m in flow_imports(path) if group(m) in STAGES and group(m) != own)
        if other:
            bad[mod] = other
    assert not bad, f"stage packages import other stage packages: {bad}"


def test_shared_packages_import_no_stage_and_cores_no_generators():
    """core imports core and the runner; hdl also core; only the runner's stage table and
    bench load stage modules (by name, through the registry)."""
    bad = {}
    for path in flow_modules():
        mod = module_name(path)
        own = group(mod)
        if own in STAGES:
            continue
        allowed = {"core": {"core", "runner"}, "hdl": {"core", "runner", "hdl"},
                   "runner": {"core", "runner", "hdl"}}[own]
        hit = sorted(m for m in flow_imports(path) if group(m) not in allowed)
        if hit:
            bad[mod] = hit
    assert not bad, f"shared modules import outside their layer: {bad}"


#: what the cosim's expectations (the vector sets it writes for the shipped testbench) may
#: import from the flow: the golden model, the golden-vector contract and the testbench's file
#: format, nothing of the device side
REFERENCE_MODULES = {f"flow.core.{m}" for m in ("encoder", "frontend", "geometry", "fixedpoint", "vectors",
                                                 "tb_vectors", "npzfile")} | {
    "flow.core", "flow.runner", "flow.runner.errors", "flow.runner.atomic"}
#: the modules that compute and write those expectations
EXPECTATION_MODULES = ("flow.core.tb_sets", "flow.core.tb_vectors")


def _device_side(mod: str) -> bool:
    return group(mod) in ("rtl", "hdl", "convert", "cosim") or mod in ("flow.core.hls", "flow.core.csim")


def _file(mod: str) -> Path:
    base = ROOT.joinpath(*mod.split("."))
    return base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"


def test_cosim_expectations_share_no_code_with_the_device():
    for m in EXPECTATION_MODULES:
        got = flow_imports(_file(m))
        assert got <= REFERENCE_MODULES, f"{m} imports {sorted(got - REFERENCE_MODULES)}"
    # and what those modules import when loaded (transitively) stays off the device side too
    seen, todo = set(), [m for m in REFERENCE_MODULES]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += flow_imports(_file(m), top_level_only=True)
    assert not [m for m in seen if _device_side(m)], sorted(seen)
    # the same at run time: what loading the set builder really imports
    code = ("import sys; import flow.core.tb_sets  # noqa\n"
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('flow.'))))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
    assert r.returncode == 0, r.stderr
    loaded = set(r.stdout.split())
    assert "flow.core.vectors" in loaded and not [m for m in loaded if _device_side(m)], sorted(loaded)


def test_the_shipped_testbench_imports_nothing_of_the_flow():
    """cosim and the handoff archive run the same testbench; its reference is the vector files."""
    for f in sorted((FLOW / "resources" / "handoff").glob("*.py")):
        tree = ast.parse(f.read_text())
        mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert "flow" not in mods, f.name


# ============================================================ dataset splits
def _split(n: int = 50, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for k, dt in dataset.NPZ_DTYPES.items():
        shape = (n, 48) if k in ("words", "calq", "aein") else (n,)
        out[k] = (rng.random(shape) * 100).astype(dt)
    return out


def test_split_writer_is_deterministic_and_reader_round_trips(tmp_path):
    a = _split()
    dataset.write_split(tmp_path / "a.npz", a, compress=False)
    dataset.write_split(tmp_path / "b.npz", dict(reversed(list(a.items()))), compress=False)
    dataset.write_split(tmp_path / "c.npz", a, compress=True)
    dataset.write_split(tmp_path / "d.npz", a, compress=True)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert (tmp_path / "c.npz").read_bytes() == (tmp_path / "d.npz").read_bytes()
    for f in ("a.npz", "c.npz"):
        got = dataset.read_split(tmp_path / f)
        assert list(got) == list(dataset.NPZ_DTYPES)
        for k, v in a.items():
            np.testing.assert_array_equal(got[k], v)
            assert got[k].dtype == dataset.NPZ_DTYPES[k]
    part = dataset.read_split(tmp_path / "a.npz", keys=("aein", "occupancy"))
    assert set(part) == {"aein", "occupancy"}
    with np.load(tmp_path / "a.npz") as z:          # plain numpy reads it
        assert sorted(z.files) == sorted(dataset.NPZ_DTYPES)


def test_split_reader_names_file_expected_and_got(tmp_path):
    a = _split()
    missing = {k: v for k, v in a.items() if k != "eta"}
    write_npz(tmp_path / "missing.npz", missing)
    with pytest.raises(DataFormatError, match=r"missing\.npz.*expected arrays \[.*'eta'.*\].*got .*"
                                              r"missing \['eta'\]"):
        dataset.read_split(tmp_path / "missing.npz")
    write_npz(tmp_path / "extra.npz", {**a, "energy": np.zeros(50)})
    with pytest.raises(DataFormatError, match=r"extra\.npz.*unexpected \['energy'\]"):
        dataset.read_split(tmp_path / "extra.npz")
    write_npz(tmp_path / "dtype.npz", {**a, "calq": a["calq"].astype(np.int64)})
    with pytest.raises(DataFormatError, match=r"dtype\.npz: array 'calq'.*expected dtype int32, got int64"):
        dataset.read_split(tmp_path / "dtype.npz")
    with pytest.raises(DataFormatError, match=r"nothing\.npz: no such dataset split file"):
        dataset.read_split(tmp_path / "nothing.npz")
    # the optional array of older files may be absent
    write_npz(tmp_path / "old.npz", {k: v for k, v in a.items() if k != "gen_phi"})
    assert "gen_phi" not in dataset.read_split(tmp_path / "old.npz")
    # the writer refuses what the reader would refuse
    with pytest.raises(DataFormatError, match=r"unexpected \['energy'\]"):
        dataset.write_split(tmp_path / "x.npz", {**a, "energy": np.zeros(50)}, compress=False)
    with pytest.raises(DataFormatError, match=r"x\.npz: .*wrong dtype: expected \{'eta': 'float32'\}, "
                                              r"got \{'eta': 'float64'\}"):
        dataset.write_split(tmp_path / "x.npz", {**a, "eta": a["eta"].astype(np.float64)}, compress=False)
    assert not (tmp_path / "x.npz").exists()


# ============================================================ golden vectors
def test_vector_files_deterministic_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(2)
    w = E.EncoderWeights.random(3)
    words = rng.integers(0, 128, (200, 48))
    cal = rng.integers(0, 4096, 48)
    v = vectors.golden_vectors(words, np.zeros(200, np.uint8), w, drop=1, calvalues=cal, latent_bits=7)
    vectors.write_vectors(tmp_path / "a.npz", v)
    vectors.write_vectors(tmp_path / "b.npz", dict(v))
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    got = vectors.read_vectors(tmp_path / "a.npz")
    for k in vectors.FILE_DTYPES:
        np.testing.assert_array_equal(got[k], v[k])
    # the one golden function is the front end then the integer encoder
    aein, s = FrontEnd(drop=1, calvalues=tuple(int(c) for c in cal))(words)
    np.testing.assert_array_equal(got["aein"], aein)
    np.testing.assert_array_equal(got["sum_code"], s)
    np.testing.assert_array_equal(got["latent"], E.golden_encode(aein, w, 7))
    write_npz(tmp_path / "bad.npz", {**v, "latent": v["latent"].astype(np.int32)})
    with pytest.raises(DataFormatError, match=r"bad\.npz: array 'latent'.*expected dtype uint16, got int32"):
        vectors.read_vectors(tmp_path / "bad.npz")
    write_npz(tmp_path / "nolegend.npz", {k: a for k, a in v.items() if k != "kind_names"})
    with pytest.raises(DataFormatError, match=r"nolegend\.npz.*missing \['kind_names'\]"):
        vectors.read_vectors(tmp_path / "nolegend.npz")


# ============================================================ encoder.json
def test_captions_file_round_trip_and_errors(tmp_path):
    from flow.core.captions import read_captions, write_captions
    from flow.runner.errors import DataFormatError

    caps = {"b.png": "second", "a.png": "first |eta|"}
    p = write_captions(tmp_path, caps)
    assert p == tmp_path / "captions.json" and read_captions(p) == caps
    first = p.read_bytes()
    write_captions(tmp_path, dict(reversed(caps.items())))
    assert p.read_bytes() == first   # deterministic bytes
    p.write_text("[1, 2]")
    with pytest.raises(DataFormatError, match="expected a JSON object.*got list"):
        read_captions(p)
    p.write_text("{")
    with pytest.raises(DataFormatError, match="invalid JSON"):
        read_captions(p)


def test_encoder_json_round_trip_and_mismatch(tmp_path):
    w = E.EncoderWeights.random(5)
    rec = write_encoder(tmp_path, w, 7)
    assert json.loads((tmp_path / ENCODER_JSON).read_text()) == rec
    enc = read_encoder(tmp_path / ENCODER_JSON)
    assert enc.latent_bits == 7 and np.array_equal(enc.weights.to_vector(), w.to_vector())
    assert rec["formats"]["latent"]["ap"] == "ap_ufixed<7,1,AP_RND_CONV,AP_SAT>"
    assert rec["formats"]["weights"]["ap"] == E.WEIGHT_FMT.to_ap_string()
    # weights.bin replaced by other weights: a clear error with both hashes
    other = E.EncoderWeights.random(6).to_image()
    (tmp_path / "weights.bin").write_bytes(other)
    with pytest.raises(StageInputError, match=rf"weights\.bin does not match .*encoder\.json: expected "
                                              rf"weights sha256 {rec['weights_sha256']}, got "
                                              rf"{hashlib.sha256(other).hexdigest()}.*make autoencoder"):
        read_encoder(tmp_path / ENCODER_JSON)
    # formats that are not this flow's encoder
    write_encoder(tmp_path, w, 7)
    bad = dict(rec, formats={**rec["formats"], "aein": {**rec["formats"]["aein"], "width": 10}})
    (tmp_path / ENCODER_JSON).write_text(json.dumps(bad))
    with pytest.raises(StageInputError, match=r"formats: this flow's encoder .* the file records"):
        read_encoder(tmp_path / ENCODER_JSON)
    (tmp_path / ENCODER_JSON).unlink()
    with pytest.raises(StageInputError, match=r"encoder\.json is missing.*make autoencoder"):
        read_encoder(tmp_path / ENCODER_JSON)


def test_encoder_json_records_the_architecture(tmp_path):
    arch = E.EncoderArch(filters=4, weight_bits=5, act_bits=7)
    w = E.EncoderWeights.random(2, arch)
    rec = write_encoder(tmp_path, w, 5)
    assert rec["arch"] == {"filters": 4, "weight_bits": 5, "act_bits": 7}
    assert rec["image_bits"] == arch.image_bits == 1080 * 5
    assert rec["formats"]["weights"]["ap"] == "ap_fixed<5,1,AP_RND_CONV,AP_SAT>"
    assert rec["formats"]["conv_act"]["ap"] == "ap_ufixed<7,1,AP_RND_CONV,AP_SAT>"
    enc = read_encoder(tmp_path / ENCODER_JSON)
    assert enc.weights.arch == arch and np.array_equal(enc.weights.to_vector(), w.to_vector())
    # a file that predates the key is the ECON-T's encoder
    w0 = E.EncoderWeights.random(3)
    rec0 = write_encoder(tmp_path, w0, 9)
    del rec0["arch"]
    (tmp_path / ENCODER_JSON).write_text(json.dumps(rec0))
    assert read_encoder(tmp_path / ENCODER_JSON).weights.arch == E.ECONT_ARCH
    # an arch that does not fit the recorded image size or formats
    (tmp_path / ENCODER_JSON).write_text(json.dumps(dict(rec0, arch={"filters": 4})))
    with pytest.raises(StageInputError, match=r"image_bits: this flow's encoder .* has 6480, the file "
                                              r"records 12864.*make autoencoder"):
        read_encoder(tmp_path / ENCODER_JSON)
    (tmp_path / ENCODER_JSON).write_text(json.dumps(dict(rec0, arch={"filters": 0})))
    with pytest.raises(StageInputError, match=r"arch filters: expected an integer in \[1, 64\], got 0"):
        read_encoder(tmp_path / ENCODER_JSON)


# ==================================================== a small real pipeline
N_TEST = 300


class _Stop(Exception):
    """Raised by a stub once it has recorded what a stage handed it."""


def _fake_data(ctx):
    rng = np.random.default_rng(1)
    words = (rng.integers(0, 128, (N_TEST, 48)) * (rng.random((N_TEST, 48)) < 0.3)).astype(np.uint8)
    a = _split(N_TEST)
    aein, s = FrontEnd(ctx.cfg.data.drop, (ctx.cfg.data.calvalue,) * 48)(words)
    a.update(words=words, aein=aein.astype(np.uint8), sum_code=s.astype(np.uint16))
    dataset.write_split(ctx.out / dataset.split_file("test"), a, compress=False)


def _fake_autoencoder(weights, latent_bits, *, tamper=False):
    def ae(ctx):
        write_encoder(ctx.out, weights, latent_bits)
        if tamper:      # an artifact whose weights.bin is not the one encoder.json describes
            (ctx.out / "weights.bin").write_bytes(E.EncoderWeights.random(99).to_image())
    return ae


def _cfg(tmp, name="c"):
    return C.parse_config({
        "name": name, "workdir": str(tmp), "seed": 2,
        "convert": {"n_random": 40, "n_sparse": 40, "onehot_words": [1, 127], "n_alt_registers": 1,
                    "alt_max_vectors": 300, "tb_vectors": 0},
        "rtl": {"flavours": ["prog"], "yosys_check": False},
        "cosim": {"flavours": ["prog"], "yosys": []}})


# ---- recording what a stage's own code opens (an audit hook, active only while it runs)
_AUDIT: dict = {"on": False, "events": []}


def _audit(event, args):
    if _AUDIT["on"] and event in ("open", "os.symlink", "os.link", "os.rename", "os.replace",
                                  "os.mkdir", "os.remove", "shutil.rmtree"):
        _AUDIT["events"].append((event, args))


sys.addaudithook(_audit)


def _record_run(mp, stage: str) -> dict:
    """Wrap ``flow.<stage>.run``: the files its own code touches, and its context."""
    mod = importlib.import_module(STAGES[stage].module)
    orig, rec = mod.run, {}

    def run(ctx):
        rec["ctx"] = ctx
        _AUDIT.update(on=True, events=[])
        try:
            orig(ctx)
        finally:
            _AUDIT["on"] = False
            rec["events"] = list(_AUDIT["events"])
    mp.setattr(mod, "run", run)
    return rec


def _is_write(event: str, args) -> bool:
    if event != "open":
        return True
    mode, flags = args[1], args[2]
    if isinstance(mode, str):
        return any(c in mode for c in "wax+")
    return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))


def _path(p) -> Path | None:
    if isinstance(p, int) or p is None:
        return None
    return Path(os.fsdecode(p)).absolute()


def _check_declared(cfg, rec: dict, extra_reads=()) -> None:
    """Every file of the run the stage opened is its own or an output of a declared upstream;
    nothing is written outside its own directory, checkpoint directory or a temp directory."""
    ctx = rec["ctx"]
    declared = set(STAGES[ctx.stage].upstream) | set(ctx.upstream)
    own = (ctx.out.absolute(), ctx.checkpoint_dir.absolute())
    run_dir = cfg.run_dir.absolute()
    # (path, is a write): a rename, link or symlink also creates its second path
    touched = [(a[0], _is_write(e, a)) for e, a in rec["events"]]
    touched += [(a[1], True) for e, a in rec["events"] if e in ("os.symlink", "os.link", "os.rename",
                                                                 "os.replace")]
    touched += [(p, False) for p in extra_reads]
    for raw, write in touched:
        p = _path(raw)
        if p is None or any(p.is_relative_to(o) for o in own) or "__pycache__" in p.parts:
            continue
        if write:
            # <run>/<stage>.failed/: the failed-run logs of convert/csim, until the runner keeps
            # them in one place (issue #15, part 4)
            if p.is_relative_to(run_dir / f"{ctx.stage}.failed"):
                continue
            assert not p.is_relative_to(ROOT) and not p.is_relative_to(run_dir), \
                f"stage {ctx.stage} wrote outside its directory: {p}"
            continue
        if not p.is_relative_to(run_dir):
            continue
        up, rel = p.relative_to(run_dir).parts[0], p.relative_to(run_dir / p.relative_to(run_dir).parts[0])
        assert up in declared, f"stage {ctx.stage} read {p} of stage '{up}' without declaring it"
        assert rel.as_posix() in ctx.upstream[up].manifest["outputs"] or rel.name == "manifest.json", \
            f"stage {ctx.stage} read {p}, which is not a recorded output of '{up}'"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Fake data/emd/autoencoder (encoder.json with latent_bits 7, the config says 9), the
    real convert (hls4ml stubbed), rtl (lint stubbed) and cosim (the simulator stubbed),
    each run recorded."""
    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("contracts")
    cfg = _cfg(tmp)
    w = E.EncoderWeights.random(12)
    fake_stage(mp, "data", _fake_data)
    fake_stage(mp, "emd", lambda ctx: (ctx.out / "e.txt").write_text("e"))
    fake_stage(mp, "autoencoder", _fake_autoencoder(w, 7))
    for st in ("data", "emd", "autoencoder"):
        run_stage(cfg, st, **QUIET)
    import flow.convert.stage
    import flow.cosim.stage
    import flow.hdl.build

    mp.setattr(flow.convert.stage, "_convert_all", lambda *a, **k: ({}, {}))
    mp.setattr(flow.hdl.build, "lint", lambda *a, **k: "")
    handed: dict = {}

    def simulate(flavour, rtl_dir, out_dir, build_dir, logs, **kw):
        handed.update(kw, flavour=flavour)
        raise _Stop
    mp.setattr(flow.cosim.stage, "simulate", simulate)
    recs = {st: _record_run(mp, st) for st in ("convert", "rtl", "cosim")}
    run_stage(cfg, "convert", **QUIET)
    run_stage(cfg, "rtl", **QUIET)
    with pytest.raises(_Stop):
        run_stage(cfg, "cosim", **QUIET)
    yield cfg, w, recs, handed
    mp.undo()


def test_later_stages_read_the_latent_width_from_encoder_json(pipeline):
    cfg, w, _, handed = pipeline
    assert cfg.autoencoder.latent_bits == 9                  # the config says 9 ...
    meta = json.loads((cfg.stage_dir("convert") / "vectors_meta.json").read_text())
    assert meta["latent_bits"] == 7                          # ... encoder.json says 7
    v = vectors.read_vectors(cfg.stage_dir("convert") / "vectors.npz")
    assert int(v["latent"].max()) < 2 ** 7
    np.testing.assert_array_equal(v["latent"], E.golden_encode(v["aein"], w, 7))
    assert json.loads((cfg.stage_dir("rtl") / "rtl.json").read_text())["latent_bits"] == 7
    assert handed["latent_bits"] == 7


def test_each_stage_declares_the_inputs_it_reads(pipeline):
    cfg, _, recs, handed = pipeline
    assert "autoencoder" in STAGES["cosim"].upstream          # cosim reads weights.bin/encoder.json
    for st in ("convert", "rtl"):
        _check_declared(cfg, recs[st])
    # cosim: also the files its vector sets are read from (in simulate(), stubbed here)
    paths = [handed["vectors"], *handed["extra_vectors"]]
    _check_declared(cfg, recs["cosim"], extra_reads=paths)
    opened = {str(_path(a[0])) for e, a in recs["cosim"]["events"] if e == "open" and _path(a[0])}
    assert str(cfg.stage_dir("autoencoder") / ENCODER_JSON) in opened
    assert str(cfg.stage_dir("autoencoder") / "weights.bin") in opened


def test_undeclared_reads_are_caught(pipeline, tmp_path):
    """The check itself: a read of a stage that is not an upstream fails it."""
    cfg, _, recs, _ = pipeline
    rec = dict(recs["rtl"], events=[("open", (str(cfg.stage_dir("convert") / "vectors.npz"), "rb", 0))])
    with pytest.raises(AssertionError, match="without declaring it"):
        _check_declared(cfg, rec)
    rec = dict(recs["rtl"], events=[("os.symlink", (str(cfg.stage_dir("rtl")), str(ROOT / "x"), None))])
    with pytest.raises(AssertionError, match="wrote outside its directory"):
        _check_declared(cfg, rec)


def test_stage_modules_read_only_declared_upstreams():
    """Static version for every stage: ``ctx.upstream["x"]`` only for a declared upstream (or
    one the module verifies and records itself), ``stage_dir("x")`` of another stage only
    in bench hooks or for such a self-declared upstream."""
    for stage, st in STAGES.items():
        tree = ast.parse((FLOW / stage / "stage.py").read_text())
        self_declared = set()
        for node in ast.walk(tree):        # ctx.upstream["x"] = verify(...)
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    if isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant) \
                            and isinstance(t.value, ast.Attribute) and t.value.attr == "upstream":
                        self_declared.add(t.slice.value)
        allowed = set(st.upstream) | self_declared
        for fn in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
            for node in ast.walk(fn):
                key = None
                if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
                        and node.value.attr == "upstream" and isinstance(node.slice, ast.Constant):
                    key = node.slice.value
                elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                        and node.func.attr == "get" and isinstance(node.func.value, ast.Attribute) \
                        and node.func.value.attr == "upstream" and node.args \
                        and isinstance(node.args[0], ast.Constant):
                    key = node.args[0].value
                if key is not None:
                    assert key in allowed, f"{stage}.{fn.name} reads ctx.upstream[{key!r}], not declared"
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                        and node.func.attr == "stage_dir" and node.args \
                        and isinstance(node.args[0], ast.Constant):
                    other = node.args[0].value
                    assert other == stage or other in self_declared or "bench" in fn.name, \
                        f"{stage}.{fn.name} reaches into stage_dir({other!r}) instead of ctx.upstream"


def test_encoder_json_that_does_not_match_weights_bin_stops_the_next_stage(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, name="t")
    fake_stage(monkeypatch, "data", _fake_data)
    fake_stage(monkeypatch, "emd", lambda ctx: (ctx.out / "e.txt").write_text("e"))
    fake_stage(monkeypatch, "autoencoder", _fake_autoencoder(E.EncoderWeights.random(1), 9, tamper=True))
    for st in ("data", "emd", "autoencoder"):
        run_stage(cfg, st, **QUIET)
    with pytest.raises(StageInputError, match=r"weights\.bin does not match .*encoder\.json: expected "
                                              r"weights sha256 [0-9a-f]{64}, got [0-9a-f]{64}"):
        run_stage(cfg, "rtl", **QUIET)
    assert not cfg.stage_dir("rtl").exists()
