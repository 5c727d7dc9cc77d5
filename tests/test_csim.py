"""csim stage: hls4ml C++ (+ our front end) compiled with g++ vs the golden model, on integer codes."""
import json
import shutil

import numpy as np
import pytest
from test_convert import converted  # noqa: F401  (session fixture shared with test_convert)

from flow.core import encoder as E
from flow.core.csim import RESULT_DTYPE, compare, read_result_bin, write_vector_bin
from flow.core.vectors import KIND_NAMES, golden_vectors
from flow.runner.atomic import atomic_write_json
from flow.runner.errors import FlowError, MismatchError, StageInputError
from flow.runner.manifest import MANIFEST, hash_outputs
from flow.runner.stages import run_stage


@pytest.fixture(scope="session")
def simulated(converted):  # noqa: F811
    cfg, _ = converted
    return cfg, run_stage(cfg, "csim", echo=lambda *a: None)


# ------------------------------------------------------------------ units
def _vectors(n=5):
    rng = np.random.default_rng(0)
    words = rng.integers(0, 128, (n, 48)).astype(np.uint8)
    return golden_vectors(words, np.full(n, 4, np.uint8), E.EncoderWeights.random(1), drop=3,
                          calvalues=np.arange(48) * 80, latent_bits=9)


def test_vector_file_format(tmp_path):
    v = _vectors()
    p = tmp_path / "v.bin"
    assert write_vector_bin(v, p, 3) == 3
    raw = p.read_bytes()
    assert raw[:8] == b"ECONTVEC" and len(raw) == 128 + 3 * 48
    assert int.from_bytes(raw[12:16], "little") == 3 and int.from_bytes(raw[16:20], "little") == 3
    assert np.array_equal(np.frombuffer(raw[24:120], "<u2"), v["calvalues"])
    assert raw[128:128 + 48] == v["words"][0].tobytes()
    bad = tmp_path / "r.bin"
    bad.write_bytes(b"ECONTOUT" + (1).to_bytes(4, "little") + (2).to_bytes(4, "little") + bytes(20))
    with pytest.raises(FlowError, match="expected version 1, 3 records"):
        read_result_bin(bad, 3, 9)


def test_compare_reports_integer_mismatches():
    v = _vectors()
    res = np.zeros(5, dtype=RESULT_DTYPE)
    for f in ("aein", "latent", "sum_code"):
        res[f] = v[f]
    assert compare(v, res, file="f", limit=10)["n_mismatch"] == 0
    res["latent"][2, 7] += 1
    res["sum_code"][4] ^= 1
    c = compare(v, res, file="f", limit=10)
    assert c["n_mismatch"] == 2 and c["fields"] == {"latent": 1, "sum_code": 1, "aein": 0}
    assert c["first_mismatches"][0] == {"file": "f", "index": 2, "kind": KIND_NAMES[4], "field": "latent",
                                        "position": 7, "expected": int(v["latent"][2, 7]),
                                        "got": int(v["latent"][2, 7]) + 1}
    assert c["first_mismatches"][1]["field"] == "sum_code" and c["first_mismatches"][1]["position"] is None
    assert c["per_kind"] == {KIND_NAMES[4]: {"n": 5, "n_mismatch": 2}}


# ------------------------------------------------------------------ stage
def test_csim_matches_golden_for_both_backends(simulated):
    cfg, man = simulated
    assert man["metrics"]["n_mismatch"] == 0
    conv = json.loads((cfg.stage_dir("convert") / "vectors_meta.json").read_text())
    n_all = sum(f["n"] for f in conv["files"].values())
    assert n_all > 3000
    for b in ("Vitis", "Catapult"):
        r = json.loads((cfg.stage_dir("csim") / b / "report.json").read_text())
        assert r["n_total"] == n_all and r["n_mismatch"] == 0 and r["first_mismatches"] == []
        assert r["fields"] == {"latent": 0, "sum_code": 0, "aein": 0}
        assert set(r["per_kind"]) == set(KIND_NAMES)
        assert r["vectors_per_s"] > 100 and r["compile_s"] > 0
        assert {f["drop"] for f in r["per_file"].values()} == {1, 3}
        assert (cfg.stage_dir("csim") / b / "compile_myproject.log").is_file()
    # the vectors exercise the encoder: latent codes at 0, in between and saturated
    v = np.load(cfg.stage_dir("convert") / "vectors.npz")
    lat = v["latent"]
    assert (lat == 0).mean() > 0.05 and (lat == 511).mean() > 0.01 and ((lat > 0) & (lat < 511)).mean() > 0.1


def test_corrupted_weight_in_project_is_caught(simulated, tmp_path):
    """Edit one weight of the generated C++ (the header synthesis reads) and rerun csim."""
    cfg, _ = simulated
    work = tmp_path / "w"
    shutil.copytree(cfg.run_dir, work / cfg.name, symlinks=True)
    cfg2 = cfg.model_copy(update={"workdir": str(work),
                                  "csim": cfg.csim.model_copy(update={"backends": ["Catapult"]})})
    conv = cfg2.stage_dir("convert")
    before = (cfg2.stage_dir("csim") / MANIFEST).read_bytes()
    header = conv / "hls_projects" / "Catapult" / "firmware" / "weights" / "w3.h"
    text = header.read_text()
    head, body = text.split("= {", 1)
    first, rest = body.split(",", 1)
    new = "0.50000" if float(first) != 0.5 else "-0.50000"
    header.write_text(f"{head}= {{{new},{rest}")

    # an edited artifact is refused as such ...
    with pytest.raises(StageInputError, match="modified after the stage ran"):
        run_stage(cfg2, "csim", echo=lambda *a: None)
    # ... and, re-sealed as if convert had written it, csim finds the wrong latents
    man = json.loads((conv / MANIFEST).read_text())
    man["outputs"] = hash_outputs(conv)
    atomic_write_json(conv / MANIFEST, man)
    with pytest.raises(MismatchError) as err:
        run_stage(cfg2, "csim", echo=lambda *a: None)
    msg = str(err.value)
    assert "Catapult:" in msg and "csim.failed" in msg
    rep = json.loads((cfg2.run_dir / "csim.failed" / "Catapult" / "report.json").read_text())
    assert rep["n_mismatch"] > 0 and rep["fields"]["latent"] == rep["n_mismatch"]
    assert rep["fields"]["aein"] == 0 and rep["fields"]["sum_code"] == 0
    m = rep["first_mismatches"][0]
    assert m["field"] == "latent" and m["expected"] != m["got"] and m["kind"] in KIND_NAMES
    # the failed run replaced nothing: the previous csim artifact is untouched
    assert (cfg2.stage_dir("csim") / MANIFEST).read_bytes() == before


def test_compile_failure_is_a_clear_flow_error(converted, tmp_path):  # noqa: F811
    from flow.core.csim import compile_harness

    cfg, _ = converted
    prj = tmp_path / "prj"
    shutil.copytree(cfg.stage_dir("convert") / "hls_projects" / "Catapult", prj)
    src = prj / "firmware" / "myproject.cpp"
    src.write_text("#error deliberately broken\n" + src.read_text())
    with pytest.raises(FlowError) as err:
        compile_harness(prj, "Catapult", tmp_path / "build", cfg.csim)
    msg = str(err.value)
    assert "compiling firmware/myproject.cpp of the Catapult project failed" in msg
    assert "deliberately broken" in msg and str(tmp_path / "build" / "compile_myproject.log") in msg
