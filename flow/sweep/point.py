"""The hardware side of one co-design sweep point: RTL, bit-exact cosimulation, area, latency.

:func:`hardware` takes a point's trained encoder (its :class:`~flow.core.encoder.EncoderWeights`
carry the architecture) and a sample of TC words, and runs the flow's own generators and
testbench on it, exactly as the ``rtl`` and ``cosim`` stages do for the ECON-T's design:

1. the golden vectors of the sampled words (front end + integer encoder) under the given
   CALVALUEs and drop (:func:`flow.core.vectors.golden_vectors`);
2. the RTL of ``flavours`` (default the programmable ``prog``; ``prog_tmr`` for the TMR
   variant) with :func:`flow.hdl.build.build_rtl` (lint of the build and the test build);
3. the shipped cocotb testbench on Verilator for each flavour
   (:func:`flow.hdl.verify.simulate`): the sampled vectors, the corner set when
   ``cosim.corners``, bubbles, reset, defaults, read-back and (programmable) reprogramming
   with random weights of the same architecture; the latency and II it measures;
4. Yosys (pyosys) on each flavour for ``cosim.yosys`` (``generic``: gate count; ``sky130``:
   area of the SkyWater 130 nm cells, area only) with :func:`flow.hdl.verify.resources`.

It returns one record per point (``n_total``/``n_mismatch`` summed over the flavours, and per
flavour: cosim, latency, II, generic gates, sky130 area).  A mismatch is not raised here: the
sweep records it (a point with mismatches is a failed point, named in the sweep's report).

:func:`physics` gives the point's physics figures on the same events for every point: the
golden (bit-exact) latent codes of the data stage's train and test wafers, decoded by the
point's decoder times the decoded module sum, clustered, calibrated on train and measured on
test (:func:`flow.core.reco.evaluate_decoded`, the ``physics`` stage's chain): effective
electron resolution, matching efficiency and the median exact EMD of the decoded wafers.

:func:`csim` does the same for the HLS side: the point's QKeras encoder converted with hls4ml
(:func:`flow.core.hls.convert_backend`, the child checks the model against the register
image), the project's C++ harness compiled and run on the same vectors
(:func:`flow.core.csim.check_project`), integer codes compared.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from flow.core.encoder import EncoderWeights
from flow.core.vectors import golden_vectors, write_vectors


def hardware(out: str | Path, weights: EncoderWeights, latent_bits: int, words: np.ndarray,
             kind: np.ndarray, *, calvalues, drop: int, rtl_settings, cosim_settings,
             flavours=("prog",), seed: int = 0, echo=print) -> dict:
    """RTL, cosimulation and resources of one encoder (see the module docstring) below ``out``:
    ``vectors.npz``, ``rtl/``, ``cosim/<flavour>/``, ``logs/``.  ``rtl_settings`` /
    ``cosim_settings``: :class:`~flow.runner.config.RtlConfig` / ``CosimConfig`` (their
    ``flavours`` are replaced by ``flavours``)."""
    from flow.hdl.build import build_rtl, sources
    from flow.hdl.verify import resources, simulate, timing

    out = Path(out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    vec = out / "vectors.npz"
    write_vectors(vec, golden_vectors(words, kind, weights, drop=drop, calvalues=calvalues,
                                      latent_bits=latent_bits))
    rs = rtl_settings.model_copy(update={"flavours": list(flavours)})
    meta = build_rtl(out / "rtl", weights, rs, latent_bits=latent_bits, calvalues=list(calvalues),
                     drop=drop, seed=seed, echo=echo)
    rec: dict = {"arch": weights.arch.to_dict(), "latent_bits": latent_bits, "n_vectors": int(len(words)),
                 "flavours": {}, "rtl_s": round(time.perf_counter() - t0, 2)}
    report: dict = {"flavours": {}}
    itf = meta["interface"]
    for fl in flavours:
        t1 = time.perf_counter()
        res = timing(simulate(fl, out / "rtl", out / "cosim" / fl, out / "build" / fl, logs, weights=weights,
                              latent_bits=latent_bits, calvalues=calvalues, drop=drop,
                              default_calvalues=calvalues, default_drop=drop, vectors=vec,
                              settings=cosim_settings, seed=seed,
                              latency_cycles=int(itf["latency_cycles"]),
                              clock_ns=float(itf["clock_ns"]), echo=echo))
        report["flavours"][fl] = {}
        rec["flavours"][fl] = {
            "n_total": res["n_total"], "n_mismatch": res["n_mismatch"],
            "tests_passed": all(t.get("passed") for t in res.get("tests", {}).values()),
            "latency_cycles": res["latency_cycles"], "ii_cycles": res["ii_cycles"],
            "first_mismatches": [m for p in res["phases"].values()
                                 for m in p.get("first_mismatches", [])][:5],
            "cosim_s": round(time.perf_counter() - t1, 2),
            "verilog_lines": meta["flavours"][fl].get("verilog_lines")}
    if cosim_settings.yosys:
        t1 = time.perf_counter()
        designs = [(fl, sources(out / "rtl" / fl), meta["flavours"][fl]["top"]) for fl in flavours]
        resources(report, designs, cosim_settings, logs, out, echo=echo)
        for fl in flavours:
            y = report["flavours"][fl].get("yosys", {})
            r = rec["flavours"][fl]
            if "generic" in y:
                r.update(generic_gates=y["generic"]["gates"], generic_ff=y["generic"]["FF"],
                         logic_depth_gates=y["generic"].get("logic_depth_gates"))
            if "sky130" in y:
                r.update(area_um2_sky130=y["sky130"]["area_um2"],
                         sequential_area_um2_sky130=y["sky130"]["sequential_area_um2"])
            if "xilinx" in y:
                r.update(LUT=y["xilinx"]["LUT"], FF=y["xilinx"]["FF"])
        rec["yosys_s"] = round(time.perf_counter() - t1, 2)
        rec["yosys_version"] = report.get("yosys_version")
    rec["n_total"] = sum(r["n_total"] for r in rec["flavours"].values())
    rec["n_mismatch"] = sum(r["n_mismatch"] for r in rec["flavours"].values())
    rec["wall_s"] = round(time.perf_counter() - t0, 2)
    return rec


def csim(out: str | Path, model_h5: Path, weights: EncoderWeights, latent_bits: int, vectors: Path, *,
         convert_settings, csim_settings, backend: str = "Vitis") -> dict:
    """hls4ml project of one encoder (``out/hls/<backend>``) and its C simulation on the vector
    file ``vectors`` (``out/csim/report.json``); returns ``n_total``, ``n_mismatch``, first
    mismatches, conversion and compile times.  ``model_h5``: the QKeras encoder (as
    :func:`qkeras.utils.load_qmodel` reads it) whose quantized weights are ``weights``."""
    import hashlib

    from flow.core.csim import check_project
    from flow.core.hls import convert_backend, finish_project
    from flow.runner.atomic import atomic_write_bytes

    out = Path(out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    image = weights.to_image()
    atomic_write_bytes(out / "weights.bin", image)
    t0 = time.perf_counter()
    info = convert_backend(backend, model=Path(model_h5), weights_image=out / "weights.bin",
                           projects_dir=out / "hls", settings=convert_settings, latent_bits=latent_bits,
                           log=out / "logs" / f"convert_{backend}.log", arch=weights.arch)
    prj = out / "hls" / backend
    finish_project(prj, backend, info, convert_settings, latent_bits, hashlib.sha256(image).hexdigest(),
                   csim_settings.opt)
    convert_s = time.perf_counter() - t0
    rep = check_project(prj, {"vectors.npz": Path(vectors)}, out / "csim", csim_settings, backend)
    return {"backend": backend, "n_total": rep["n_total"], "n_mismatch": rep["n_mismatch"],
            "first_mismatches": rep["first_mismatches"][:5], "convert_s": round(convert_s, 2),
            "compile_s": rep["compile_s"], "hls4ml": info.get("hls4ml")}


def physics(weights: EncoderWeights, latent_bits: int, decoder, train: dict, test: dict, detector,
            settings, *, seed: int = 0, block: int = 20000) -> dict:
    """Electron resolution and median EMD of one encoder + decoder (see the module docstring).
    ``train``/``test``: split arrays (``aein``, ``sum_code``, ``calq`` and what
    :func:`flow.core.reco.cluster` needs); ``settings``: the ``physics`` config section
    (``emd_wafers``: test wafers of the EMD median)."""
    from flow.core.algorithms import decode_autoencoder
    from flow.core.encoder import golden_encode
    from flow.core.reco import evaluate_decoded

    t0 = time.perf_counter()
    decoded = {}
    for part, sp in (("train", train), ("test", test)):
        out = []
        for lo in range(0, len(sp["aein"]), block):
            sl = slice(lo, lo + block)
            lat = golden_encode(sp["aein"][sl], weights, latent_bits)
            out.append(decode_autoencoder(lat, sp["sum_code"][sl], decoder, None, latent_bits=latent_bits))
        decoded[part] = np.concatenate(out) if out else np.zeros((0, 48))
    calq_emd = test["calq"][:settings.emd_wafers].astype(np.int64)
    r = evaluate_decoded(decoded["train"], decoded["test"], train, test, detector, settings, seed=seed,
                         calq_emd=calq_emd)
    res = r["resolution"]
    return {"resolution": res["integrated"]["value"], "resolution_err": res["integrated"]["err"],
            "efficiency": res["efficiency"]["value"], "median_emd": r["median_emd"]["median"],
            "n_emd_wafers": r["median_emd"]["n"], "resolution_vs_eta": res.get("vs_eta"),
            "physics_s": round(time.perf_counter() - t0, 2)}
