"""The report stage: one self-contained HTML page and a Markdown summary built from
(fake) upstream artifacts, rendered in headless Chromium."""
import contextlib
import io
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from fakes import fake_stage

from flow.autoencoder import stage as autoencoder_stage
from flow.core.captions import write_captions
from flow.data import stage as data_stage
from flow.emd import evaluate as emd_eval
from flow.physics import stage as physics_stage
from flow.runner import config as C
from flow.runner import tools as tools
from flow.runner.manifest import sha256_file
from flow.runner.stages import run_stage

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
QUIET = dict(echo=lambda *a: None)
SECTIONS = ("summary", "provenance", "dataset", "emd", "losses", "kr-check", "physics", "quantization",
            "csim", "cosim", "seu", "sweep", "tools", "stages")
UPSTREAM = ("data", "emd", "autoencoder", "convert", "csim", "rtl", "cosim")


# ------------------------------------------------------------------ fake upstream artifacts
def _png(text: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2), dpi=40)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([0, 1, 2, 3], [0, 2, 1, 3])
    ax.set_title(text)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, bytes):
        path.write_bytes(obj)
    elif isinstance(obj, str):
        path.write_text(obj)
    else:
        path.write_text(json.dumps(obj, indent=1))


def _bins(edges, median, n=100):
    return [{"lo": a, "hi": b, "n": n if i < len(edges) - 2 else 0,
             "median": median + 0.01 * i if i < len(edges) - 2 else None,
             "q16": median - 0.2 if i < len(edges) - 2 else None,
             "q84": median + 0.3 if i < len(edges) - 2 else None}
            for i, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True))]


def _rel(mean, std, n):
    return {"n": n, "mean": mean, "std": std, "rms": std * 1.01, "median": mean * 0.8, "q16": -0.0167,
            "q84": 0.0225, "iqr68_half": 0.0196, "n_excluded": 0}


def fake_upstream(mp, *, yosys=True, eta_plot=True, kr=True, stats=True, grid=True,
                  csim_bad=0, cosim_bad=0, converged=True):
    """The seven upstream stages as fakes writing the real file formats (numbers from the
    default run), so the report reads exactly what the real stages leave behind."""
    png = _png("fake")

    def data(ctx):
        names = ["occupancy.png", "eta.png", "occupancy_map.png"]
        for n in names:
            _write(ctx.out / "plots" / n, png)
        write_captions(ctx.out / "plots", {n: data_stage.CAPTIONS[n] for n in names})  # as the stage does
        if stats:
            _write(ctx.out / "stats.json", {
                "source": "synthetic", "layout": "per_tc", "events_read": 15000, "plots": names,
                "reader": {"events": 15000, "files": [{"path": "root/synthetic_000.root"}]},
                "splits": {sp: {"wafers": w, "events": e, "occupancy_mean": 2.95, "occupancy_median": 2.0,
                                "calq_sum_median": 1272.0, "eta_mean": 2.2774, "shower_wafers": 59617}
                           for sp, w, e in (("train", 534865, 10581), ("val", 113159, 2220),
                                            ("test", 111591, 2199))}})
        ctx.metrics.update({"drops": {"below_min_occupancy": 351083, "below_min_sum": 0, "empty": 0,
                                      "not_in_layers": 0},
                            "events": {"test": 2199, "train": 10581, "val": 2220},
                            "generated_wafers": 1110698, "wafers_kept": 759615, "wafers_read": 1110698,
                            "wafers": {"test": 111591, "train": 534865, "val": 113159},
                            "occupancy_mean": 2.9512, "shower_containment": 0.9903955985130543})

    def emd(ctx):
        names = ["rel_diff.png", "pred_vs_true.png"]
        for n in names:
            _write(ctx.out / "plots" / n, png)
        write_captions(ctx.out / "plots", {n: emd_eval.CAPTIONS[n] for n in names})
        split = {"relative": _rel(0.0037637, 0.0308400, 30000), "true_emd": {"mean": 5.437, "median": 5.24},
                 "definition": "r = (pred - true) / true over pairs with true EMD >= min_emd",
                 "by_true_emd": [dict(_rel(0.0206, 0.0719, 581), lo=1.0, hi=2.0),
                                 {"lo": 2.0, "hi": 3.0, "n": 0}],
                 "by_occupancy": [dict(_rel(0.0046, 0.0332, 9102), lo=1.0, hi=2.0),
                                  {"lo": 16.0, "hi": 32.0, "n": 0}]}
        _write(ctx.out / "eval.json", {"model": "F32_k3_N4_D128", "test": split, "val": split})
        if grid:
            _write(ctx.out / "grid.json", {"best": "F32_k3_N4_D128", "select_on": "rel_rms", "trials": [
                {"tag": "F16_k3_N3_D128", "params": 39249, "rel_mean": 0.0228, "rel_std": 0.2044,
                 "rel_rms": 0.2056, "epochs": 5, "s_per_epoch": 2.657},
                {"tag": "F32_k3_N4_D128", "params": 96321, "rel_mean": 0.0124, "rel_std": 0.1514,
                 "rel_rms": 0.1519, "epochs": 5, "s_per_epoch": 7.26}]})
        _write(ctx.out / "emd_cnn.json", {"arch": {"dense": 128, "filters": 32, "kernel": 3, "n_conv": 4}})
        ctx.metrics.update({"grid": {"best": "F32_k3_N4_D128", "trials": 2}, "final": {"epochs": 30},
                            "pairs": {"test": 30000, "train": 238000, "val": 102000},
                            "test_rel_mean": 0.0037637, "test_rel_std": 0.0308400})

    medians = {"emd_cnn": 0.7622320659755909, "telescope_mse": 2.8190444594254678}

    def autoencoder(ctx):
        names = ["emd_vs_occupancy.png", "emd_distribution.png", "cnn_on_reconstructions_emd_cnn.png"]
        names += ["emd_vs_eta.png"] if eta_plot else []
        for n in names:
            _write(ctx.out / "plots" / n, png)
        write_captions(ctx.out / "plots", {n: autoencoder_stage.caption(n) for n in names})
        occ = [0, 2, 4, 48]
        eta = [1.6, 2.0, 2.4, 3.0]

        def agg(m):
            bins = lambda e: [dict(b, min=b["median"] and b["median"] - 0.02,  # noqa: E731
                                   max=b["median"] and b["median"] + 0.03, n_seeds=3,
                                   boot_std=b["median"] and 0.004) for b in _bins(e, m)]
            return {"median": m, "min": m - 0.02, "max": m + 0.03, "n_seeds": 3, "boot_std": 0.0041,
                    "seed_medians": [m - 0.02, m, m + 0.03], "vs_occupancy": bins(occ), "vs_eta": bins(eta)}

        aggs = {k: agg(m) for k, m in medians.items()}
        train = [{"seed_index": i, "epochs_run": 60 + i, "stopped_early": converged or k != "telescope_mse",
                  "converged": converged or k != "telescope_mse", "lr": 0.001} for i in range(3)
                 for k in ["_"]]
        ratio = {"ratio": 0.2704, "min": 0.2614, "max": 0.2788}
        rbins = lambda e: [dict(lo=b["lo"], hi=b["hi"], **(ratio if b["median"] else  # noqa: E731
                                                          {"ratio": None, "min": None, "max": None}))
                           for b in _bins(e, 1.0)]
        _write(ctx.out / "eval.json", {
            "models": {k: {"aggregate": a, "seeds": [], "training": train, "lr_rule": {"lr": 0.001}}
                       for k, a in aggs.items()},
            "ratios_emd_cnn_over": {"telescope_mse": {"overall": ratio, "vs_occupancy": rbins(occ),
                                                      "vs_eta": rbins(eta)}},
            "kr_dual_check": None})
        conv = "True" if converged else "False"
        _write(ctx.out / "comparison.csv",
               "model,median_emd,min,max,boot_std,n_seeds,converged,epochs_run,learning_rate\n"
               "emd_cnn,0.76223,0.74223,0.79223,0.00410,3,True,60 61 62,0.001\n"
               f"telescope_mse,2.81904,2.79904,2.84904,0.00410,3,{conv},60 61 62,0.001\n")
        _write(ctx.out / "cnn_check.json", {"min_emd": 0.05, "models": {"emd_cnn": [
            {"n": 111591, "rel_mean": -0.0123, "rel_std": 0.0412,
             "by_true_emd": [{"lo": 0.0, "hi": 0.5, "n": 100, "mean": 0.01, "std": 0.0611},
                             {"lo": 0.5, "hi": 14.0, "n": 0, "mean": None, "std": None}]}]}})
        gold = {"first_mismatches": [], "n_mismatch": 0, "n_total": 111591, "n_values": 1785456}
        _write(ctx.out / "golden_check.json", {k: [gold] * 3 for k in medians})
        _write(ctx.out / "weights.bin", b"\0" * 1608)
        krd = {"max_ratio": 0.9748, "median_ratio_kr_over_exact": 0.7447075, "n": 256, "pearson_r": 0.9118,
               "q16_ratio": 0.6084, "q84_ratio": 0.8828} if kr else None
        ctx.metrics.update({"median_emd": {k: {x: a[x] for x in ("median", "min", "max", "boot_std")}
                                           for k, a in aggs.items()},
                            "export_loss": "emd_cnn", "export_seed": 1, "n_seeds": 3,
                            "models": list(medians), "epoch_cap": 300,
                            "epochs_run": dict.fromkeys(medians, [60, 61, 62]),
                            "converged": {"emd_cnn": True, "telescope_mse": converged},
                            "emd_cnn_over_telescope_median": 0.2704, "emd_cnn_over_telescope_min": 0.2614,
                            "emd_cnn_over_telescope_max": 0.2788,
                            "emd_cnn_over_telescope_by_occupancy": [0.28, 0.31, None],
                            "cnn_on_ae_pairs_rel_std": {"emd_cnn": 0.0412},
                            "golden_mismatches": dict.fromkeys(medians, 0), "golden_n_total": 6 * 111591,
                            "kr_dual_check": krd, "n_test": 111591, "n_train": 200000,
                            "elinks": {"2": {"latent_bits": 3, "trained": True, "init": "finetune",
                                             "median_emd": 1.4321, "boot_std": 0.0042, "epochs_run": 23,
                                             "converged": True, "golden": {"n_total": 5, "n_mismatch": 0}},
                                       "5": {"latent_bits": 9, "trained": False, "init": "the compared model",
                                             "median_emd": 0.7622, "boot_std": 0.003, "epochs_run": 61,
                                             "converged": True}}})

    def convert(ctx):
        _write(ctx.out / "vectors_meta.json", {"formats": {
            "word": "uint7 (4-bit exponent, 3-bit mantissa)", "aein": "ap_ufixed<8,1,AP_RND_CONV,AP_SAT>",
            "weights": "ap_fixed<6,1,AP_RND_CONV,AP_SAT>", "latent": "ap_ufixed<9,1,AP_RND_CONV,AP_SAT>"},
            "latent_bits": 9})
        layers = [{"class": "Input", "name": "aein", "precisions": {"result": "ufixed<8,1,TRN,WRAP,0>"}},
                  {"class": "Dense", "name": "dense", "precisions": {
                      "accum": "fixed<21,9,TRN,WRAP,0>", "bias": "fixed<6,1,TRN,WRAP,0>",
                      "result": "fixed<21,9,TRN,WRAP,0>", "weight": "fixed<6,1,TRN,WRAP,0>"}}]
        _write(ctx.out / "projects.json", {"projects": {b: {"latent_bits": 9, "layers": layers}
                                                        for b in ("Vitis", "Catapult")}})
        ctx.metrics.update({"backends": ["Vitis", "Catapult"], "latent_bits": 9,
                            "counts": {"one_hot": 6096, "test_wafer": 111591},
                            "n_vectors": {"vectors.npz": 157815, "vectors_regs1.npz": 20000}})

    def csim(ctx):
        projects = {b: {"compile_s": 9.1, "csim_s": 10.9, "n_total": 177815,
                        "n_mismatch": csim_bad if b == "Vitis" else 0,
                        "fields": {"aein": 0, "latent": csim_bad if b == "Vitis" else 0, "sum_code": 0},
                        "vectors_per_s": 16242.5} for b in ("Catapult", "Vitis")}
        _write(ctx.out / "summary.json", projects)
        ctx.metrics.update({"n_mismatch": csim_bad, "projects": projects})

    def rtl(ctx):
        _write(ctx.out / "rtl.json", {
            "interface": {"clock_ns": 25.0, "latency_cycles": 2, "ii_cycles": 1, "latency_ns": 50.0},
            "latent_bits": 9,
            "flavours": {"const": {"top": "econt_ae_const", "verilog_lines": 3806, "da4ml_cost": 28005.0,
                                   "lint": "clean (verilator --lint-only -Wall)"},
                         "prog": {"top": "econt_ae_prog", "verilog_lines": 6402,
                                  "lint": "clean (verilator --lint-only -Wall)"}}})
        ctx.metrics.update({"latency_cycles": 2, "latency_ns": 50.0, "ii_cycles": 1, "latent_bits": 9})

    def cosim(ctx):
        rep = {"clock_ns": 25.0, "flavours": {}}
        for fl, lut in (("const", 41167), ("prog", 336959)):
            bad = cosim_bad if fl == "prog" else 0
            m = {"n_total": 188633, "n_mismatch": bad, "latency_cycles": 2, "latency_ns": 50.0,
                 "ii_cycles": 1, "sim_wafers_per_s": 20360.6, "build_s": 170.0}
            if yosys:
                m.update({"xilinx_LUT": lut, "xilinx_FF": 1126, "xilinx_CARRY4": 7192, "xilinx_DSP48": 0,
                          "generic_gates": 184282, "generic_transistors": 1384178,
                          "sky130_area_um2": 1.5e6 if fl == "prog" else 2.5e5})
            ctx.metrics[fl] = m
            rep["flavours"][fl] = {
                "n_total": 188633, "n_mismatch": bad,
                "tests": {t: {"passed": not (bad and t == "stream"), "message": ""}
                          for t in ("stream", "latency", "reset")},
                "phases": {"stream": {"n_total": 158569, "n_mismatch": bad, "n_field_mismatch": 2 * bad},
                           "bubbles": {"n_total": 2000, "n_mismatch": 0, "n_field_mismatch": 0}}}
        if yosys:
            rep["frontend"] = {"xilinx": {"LUT": 16264, "FF": 0, "CARRY4": 684, "DSP48": 0},
                               "generic": {"gates": 37415}, "sky130": {"area_um2": 61234.5}}
            # the cosim stage's derived sky130 figures (as flow.hdl.verify.tmr_figures), hand-made results
            from flow.hdl.area import econt_comparison, tmr_overhead

            rep["tmr_overhead"] = {"prog_tmr": {"plain": "prog", **tmr_overhead(
                {"area_um2": 1.5e6, "sequential_area_um2": 3.0e5, "FF": 13990},
                {"area_um2": 2.2e6, "sequential_area_um2": 8.4e5, "FF": 42018})}}
            rep["econt_comparison"] = {"const": econt_comparison(2.5e5), "prog": econt_comparison(1.5e6)}
        _write(ctx.out / "report.json", rep)

    for name, body in zip(UPSTREAM, (data, emd, autoencoder, convert, csim, rtl, cosim), strict=True):
        fake_stage(mp, name, body)


def build(tmp_path_factory, label: str, *, report_cfg=None, **kw):
    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp(label)
    cosim = {} if kw.get("yosys", True) else {"yosys": []}
    cfg = C.parse_config({"name": label, "workdir": str(tmp), "seed": 3, "cosim": cosim,
                          "report": report_cfg or {}})
    try:
        fake_upstream(mp, **kw)
        for st in UPSTREAM:
            run_stage(cfg, st, **QUIET)
    finally:
        mp.undo()
    man = run_stage(cfg, "report", **QUIET)   # the real report module
    d = cfg.stage_dir("report")
    return cfg, man, (d / "report.html").read_text(), (d / "report.md").read_text()


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    return build(tmp_path_factory, "full", report_cfg={"title": "Test report <&>", "notes": "fake run"})


@pytest.fixture(scope="module")
def sparse(tmp_path_factory):
    return build(tmp_path_factory, "sparse", yosys=False, eta_plot=False, kr=False, stats=False, grid=False)


@pytest.fixture(scope="module")
def failing(tmp_path_factory):
    return build(tmp_path_factory, "failing", csim_bad=3, cosim_bad=2, converged=False)


# ------------------------------------------------------------------ headless Chromium
def chromium() -> str:
    exe = tools.tool_exe("chromium")
    if exe is None:
        if CI:
            pytest.fail("Chromium is required in CI to check the rendered report (make sysdeps installs it)")
        pytest.skip("Chromium not installed on this workstation (make sysdeps); required in CI")
    return exe


def headless(html: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    # --host-resolver-rules makes every network host unresolvable: a report that needed
    # anything from the network would show broken images
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}",
           "--virtual-time-budget=5000", *args, html.as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def rendered_body(cfg, tmp_path) -> dict[str, str]:
    """The body attributes the report's inline script set after the page loaded."""
    r = headless(cfg.stage_dir("report") / "report.html", tmp_path / "profile", "--dump-dom")
    body = re.search(r"<body\b([^>]*)>", r.stdout)
    assert body, r.stdout[:500]
    return dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))


def _n_img(page: str) -> int:
    return len(re.findall(r"<img\b", page))


def test_chromium_renders_every_figure_and_table(full, tmp_path):
    cfg, man, page, _ = full
    attrs = rendered_body(cfg, tmp_path)
    assert attrs["data-render-check"] == "done"
    n_img = _n_img(page)
    assert n_img == man["metrics"]["n_figures"] == 3 + 2 + 4
    assert attrs["data-images-total"] == str(n_img)
    assert attrs["data-images-decoded"] == str(n_img), attrs.get("data-images-broken")
    n_tables = page.count('<table class="report-table"')
    assert attrs["data-tables"] == str(man["metrics"]["n_tables"]) == str(n_tables)
    assert attrs["data-sections"] == str(len(SECTIONS))
    assert attrs["data-verdict"] == "PASS"


def test_chromium_screenshot_is_not_blank(full, tmp_path):
    import numpy as np
    from PIL import Image

    cfg = full[0]
    shot = tmp_path / "shot.png"
    headless(cfg.stage_dir("report") / "report.html", tmp_path / "profile", "--window-size=1200,900",
             f"--screenshot={shot}")
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[:2] == (900, 1200)
    assert (img.min(axis=2) < 200).mean() > 0.02          # text and tables, not a white page
    green = (abs(img[..., 0] - 0x17) < 30) & (abs(img[..., 1] - 0x80) < 30) & (abs(img[..., 2] - 0x3d) < 30)
    assert green.sum() > 200                              # the PASS badge is drawn


def test_sparse_report_renders_in_chromium(sparse, tmp_path):
    cfg, man, page, _ = sparse
    attrs = rendered_body(cfg, tmp_path)
    assert attrs["data-images-decoded"] == attrs["data-images-total"] == str(_n_img(page))
    assert attrs["data-tables"] == str(man["metrics"]["n_tables"])


# ------------------------------------------------------------------ content
def test_outputs_and_manifest(full):
    cfg, man, page, md = full
    outs = set(man["outputs"])
    assert {"report.html", "report.md"} <= outs
    figs = sorted(o for o in outs if o.startswith("figures/"))
    assert len(figs) == man["metrics"]["n_figures"] == 9
    assert man["metrics"]["verdict"] == "PASS"
    assert man["metrics"]["n_checks"] == 2 + 2 + 2 + 2 * 2 and man["metrics"]["n_checks_failed"] == 0
    assert set(man["upstream"]) == set(UPSTREAM)
    # every figure is embedded exactly as its upstream bytes
    import base64

    for f in figs:
        data = (cfg.stage_dir("report") / f).read_bytes()
        assert base64.b64encode(data).decode() in page


def test_html_is_self_contained(full):
    page = full[2]
    refs = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]+)""", page)
    assert refs, "no src/href at all?"
    for ref in refs:
        assert ref.startswith(("data:image/png;base64,", "#")), ref[:80]
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", page, re.I), "network reference in the HTML"
    assert "@import" not in page and "url(" not in page
    assert "<link" not in page and not re.search(r"<script\b[^>]*\bsrc", page)
    for alt in re.findall(r"<img\b[^>]*\balt=\"([^\"]*)\"", page):
        assert alt.strip()
    assert _n_img(page) == len(re.findall(r"<img\b[^>]*\balt=\"[^\"]+\"", page))


def test_structure_and_key_numbers(full):
    cfg, man, page, _ = full
    for sec in SECTIONS:
        assert f'<section id="{sec}">' in page
        assert f'href="#{sec}"' in page
    for tid in ("checks", "key-results", "provenance", "dataset", "splits", "emd-model", "emd-grid",
                "emd-resolution", "emd-by-emd", "loss-comparison", "loss-vs-occupancy", "loss-vs-eta",
                "cnn-on-reconstructions", "elink-encoders", "kr-dual", "formats", "golden-qkeras", "csim",
                "rtl", "cosim", "cosim-phases", "resources", "tools", "stages"):
        assert f'<table class="report-table" id="tbl-{tid}">' in page, tid
    assert '<div id="verdict" class="verdict pass">PASS</div>' in page
    assert "Test report &lt;&amp;&gt;: run full" in page       # title escaped
    assert "fake run" in page
    for number in ("1,110,698", "759,615", "534,865", "F32_k3_N4_D128", "3.08 %", "+0.38 %", "0.7622",
                   "2.8190", "0.270 (seed envelope 0.261-0.279)", "0.7422-0.7922, 3 seeds", "4.12 %",
                   "yes vs telescope MSE (lower median EMD for every seed)", "6.11 %",
                   "0.745", "ap_ufixed&lt;9,1,AP_RND_CONV,AP_SAT&gt;", "177,815",
                   "188,633", "41,167", "336,959", "16,264", "25 ns", "fixed&lt;21,9,TRN,WRAP,0&gt;",
                   "sky130 area um^2 (area only, no timing)", "1.4321", "trained (finetune)"):
        assert number in page, number
    # TMR overhead and the ECON-T comparison (hand-made sky130 results in the fake cosim report):
    # (3.0e5 + 0.7e6) / 3.0e5 = 3.33x the protected registers; 2.2e6 / 1.5e6 = 1.47x the block
    tmr = page.split('id="tbl-tmr-overhead"')[1].split("</table>")[0]
    for number in ("2,200,000", "1,500,000", "1.47x", "1,000,000", "300,000", "3.33x", "2.80x", "42,018 FF"):
        assert number in tmr, number
    assert "TMR area overhead (area only, no timing (sky130_fd_sc_hd cell areas from LEF))" in page
    econt = page.split('id="tbl-econt-area"')[1].split("</table>")[0]
    # 3.6 mm^2 x (130/65)^2 = 14.4 mm^2; prog 1.5 mm^2 = 10 % of it
    assert "14.4 mm^2" in econt and "1.500 mm^2" in econt and "10 %" in econt
    assert "feature size^2" in page
    for st in UPSTREAM:           # every stage's manifest sha256 and config hash
        smf = cfg.stage_dir(st) / "manifest.json"
        assert sha256_file(smf) in page
        assert json.loads(smf.read_text())["config_hash"] in page
    summary = page.split('<section id="summary">')[1].split("</section>")[0]
    assert "not available" not in summary and 'class="status fail"' not in summary


def test_markdown_summary(full):
    cfg, man, _, md = full
    assert md.startswith("# Test report <&>: run full")
    assert "**Verdict: PASS**" in md
    assert "| check | compared on | compared | mismatches | verdict |" in md
    assert "| Catapult | 177,815 | 0 |" in md
    assert "| const | 188,633 | 0 | 3 / 3 | 2 | 50 | 1 |" in md
    for ref in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (cfg.stage_dir("report") / ref).is_file(), ref
    assert len(re.findall(r"!\[", md)) == man["metrics"]["n_figures"]
    for st in UPSTREAM:
        assert sha256_file(cfg.stage_dir(st) / "manifest.json") in md


def test_missing_optional_content_is_not_available(sparse):
    cfg, man, page, md = sparse
    assert man["metrics"]["verdict"] == "PASS"
    na = 'class="na">not available: '
    assert page.count(na) == man["metrics"]["n_not_available"] > 10
    # no Yosys run: explicit, never a number
    assert f'{na}not estimated (cosim.yosys = [])</td>' in page
    assert "41,167" not in page and "LUT" not in page.split('id="tbl-resources"')[1].split("</table>")[0]
    assert "not available: not estimated (cosim.yosys = [])" in md
    assert "not available: the KR-dual check was not run" in page
    assert "not available: the emd stage wrote no grid.json" in page
    assert f"{na}no stats.json</td>" in page
    assert f"{na}empty bin</td>" in page
    # the autoencoder saved no eta plot: the report drew one from eval.json
    assert 'id="fig-report-autoencoder-emd-vs-eta-report"' in page
    assert "figures/autoencoder_emd_vs_eta_report.png" in man["outputs"]
    assert "drawn by the report stage from autoencoder/eval.json" in md
    assert _n_img(page) == man["metrics"]["n_figures"] == 3 + 2 + 4


def test_mismatch_is_a_fail(failing):
    cfg, man, page, md = failing
    assert man["metrics"]["verdict"] == "FAIL"
    assert man["metrics"]["n_checks_failed"] == 3
    assert "training converged [telescope_mse]" in md
    assert "**FAIL (not converged: reached the epoch cap (300)" in md
    assert "not every model converged, so this comparison is not final" in md
    assert '<div id="verdict" class="verdict fail">FAIL</div>' in page
    assert 'data-verdict="FAIL"' in page
    assert "**Verdict: FAIL**" in md
    assert "**FAIL (latent 3)**" in md                       # csim Vitis, per-field count
    assert "**FAIL (testbench tests failed: stream)**" in md  # cosim prog
    assert "| Vitis | 177,815 | 3 | 0 | 3 | 0 |" in md
    assert "| prog | stream | 158,569 | 2 | 4 |" in md
    assert page.count('class="status fail"') >= 4          # checks table + csim + cosim tables


def test_report_needs_every_upstream(tmp_path):
    from flow.runner.errors import StageInputError

    cfg = C.parse_config({"name": "t", "workdir": str(tmp_path)})
    with pytest.raises(StageInputError, match="stage 'data' is missing"):
        run_stage(cfg, "report", **QUIET)
    assert not (tmp_path / "t" / "report").exists()


def test_rerun_is_byte_identical(sparse):
    """A rerun on the same artifacts writes the same page (no clock time in it); the sparse
    run also covers the figure the report draws itself."""
    cfg, man, page, md = sparse
    man2 = run_stage(cfg, "report", **QUIET)
    assert {k: v["sha256"] for k, v in man2["outputs"].items()} == \
        {k: v["sha256"] for k, v in man["outputs"].items()}


def _fake_physics(ctx):
    (ctx.out / "plots").mkdir()
    for e in (2, 5):
        (ctx.out / "plots" / f"resolution_vs_eta_{e}elinks.png").write_bytes(_png(f"res {e}"))
    write_captions(ctx.out / "plots", {n: physics_stage.caption(n) for n in
                                       ("resolution_vs_eta_2elinks.png", "resolution_vs_eta_5elinks.png")})
    res = {"uncompressed": {"2": {"value": 0.033, "err": 0.0007}, "5": {"value": 0.033, "err": 0.0007}},
           "best_choice": {"2": {"value": 0.0339, "err": 0.0008}, "5": {"value": 0.0327, "err": 0.0007}},
           "autoencoder_emd_cnn": {"2": None, "5": {"value": 0.041, "err": 0.001}}}
    ctx.metrics.update({
        "algorithms": list(res), "elinks": [2, 5], "resolution": res, "n_electrons": 1652,
        "resolution_vs_eta": {a: {e: [] for e in ("2", "5")} for a in res},
        "bits_per_bx": {"uncompressed": {"2": 1056, "5": 1056}, "best_choice": {"2": 64, "5": 158},
                        "autoencoder_emd_cnn": {"2": 61, "5": 157}},
        "efficiency": {a: {"2": 1.0, "5": 1.0} for a in res},
        "median_emd": {"uncompressed": {"2": 0.0, "5": 0.0}, "best_choice": {"2": 0.92, "5": 0.713},
                       "autoencoder_emd_cnn": {"2": None, "5": 0.66}},
        "unavailable": {"autoencoder_emd_cnn": {"2": "needs latent_bits=3"}},
        "resolution_over_uncompressed": {a: {"2": None if a == "autoencoder_emd_cnn" else
                                             {"value": 1.027, "err": 0.004}, "5": None}
                                         for a in res},
        "resolution_over_weighted_mse": {"autoencoder_emd_cnn": {"2": None,
                                                                 "5": {"value": 0.912, "err": 0.011}}},
        "min_gen_pt": 10.0})


@contextlib.contextmanager
def _report_with(tmp_path, stage: str, fake):
    """The report built with the optional input ``stage`` (faked by ``fake``) on the fake
    upstreams: yields ``(cfg, manifest, report.html, report.md)``."""
    mp = pytest.MonkeyPatch()
    cfg = C.parse_config({"name": stage, "workdir": str(tmp_path), "seed": 3})
    try:
        fake_upstream(mp)
        fake_stage(mp, stage, fake)
        for st in (*UPSTREAM, stage):
            run_stage(cfg, st, **QUIET)
        man = run_stage(cfg, "report", **QUIET)
        d = cfg.stage_dir("report")
        yield cfg, man, (d / "report.html").read_text(), (d / "report.md").read_text()
    finally:
        mp.undo()


def test_physics_section_when_the_physics_stage_ran(tmp_path):
    """The physics artifact is an optional input: shown (and recorded, so a rebuild makes the
    report stale) when present, an explicit 'not available' paragraph otherwise (above)."""
    from flow.runner.errors import StageInputError
    from flow.runner.manifest import verify

    with _report_with(tmp_path, "physics", _fake_physics) as (cfg, man, page, md):
        assert set(man["upstream"]) == {*UPSTREAM, "physics"}
        assert 'id="tbl-physics-summary"' in page
        assert "| best_choice | 2 | 64 | 3.39 % | 0.08 % | 1.027 +- 0.004 |  | 100.0 % | 0.920 |" in md
        assert "| best_choice | 5 | 158 | 3.27 % | 0.07 % | *not available: not recorded* |  |" in md
        assert "| autoencoder_emd_cnn | 5 | 157 | 4.10 % | 0.10 % | *not available: not recorded* | " \
               "0.912 +- 0.011 |" in md
        assert "not available: needs latent_bits=3" in md and "not available: not available" not in md
        assert "figures/physics_resolution_vs_eta_2elinks.png" in man["outputs"]
        assert _n_img(page) == man["metrics"]["n_figures"]
        assert sorted(o for o in man["outputs"] if o.startswith("figures/physics_")) == [
            "figures/physics_resolution_vs_eta_2elinks.png",
            "figures/physics_resolution_vs_eta_5elinks.png"]
        run_stage(cfg, "physics", **QUIET)
        with pytest.raises(StageInputError, match="stage 'report' is stale: stage 'physics'"):
            verify(cfg, "report")


def test_physics_section_is_not_available_without_the_stage(sparse):
    cfg, man, page, md = sparse
    assert "not available: the physics stage has not run" in md
    assert "physics" not in man["upstream"]


def _fake_sweep(ctx):
    (ctx.out / "plots").mkdir()
    (ctx.out / "plots" / "pareto.png").write_bytes(_png("pareto"))
    write_captions(ctx.out / "plots", {"pareto.png": "co-design map"})
    ok = {"id": "f8_w6_a8_l9", "econt": True, "filters": 8, "weight_bits": 6, "act_bits": 8, "latent_bits": 9,
          "status": "ok", "converged": True, "median_emd": 0.712,
          "resolution": 0.0412, "resolution_err": 0.0009,
          "area_um2_sky130": 4123456.0, "generic_gates": 812345, "latency_cycles": 2,
          "n_mismatch_qkeras": 0, "n_mismatch_csim": 0, "n_mismatch_cosim": 0,
          "n_total_qkeras": 2000, "n_total_csim": 2400, "n_total_cosim": 6700}
    bad = {"id": "f4_w6_a8_l3", "econt": False, "filters": 4, "weight_bits": 6, "act_bits": 8,
           "latent_bits": 3, "status": "failed", "error": "RuntimeError: synthesis exploded"}
    ctx.metrics.update({"n_points": 2, "n_failed": 1, "n_mismatch": 0, "pareto": ["f8_w6_a8_l9"],
                        "points": [ok, bad]})


def test_sweep_section_when_the_sweep_stage_ran(tmp_path):
    """The sweep artifact is an optional input like physics: its table (the ECON-T point
    labelled, a failed point named with its error, the front marked) and its plot."""
    with _report_with(tmp_path, "sweep", _fake_sweep) as (cfg, man, page, md):
        assert set(man["upstream"]) == {*UPSTREAM, "sweep"}
        assert ("| f8_w6_a8_l9 (ECON-T) | 8 | 6 | 8 | 9 | converged | 0.712 | 4.12 % | 0.09 % | 4,123,456 "
                "| 812,345 | 2 | 0 | yes |") in md
        assert "| `f4_w6_a8_l3` | 4 | 6 | 8 | 3 | FAIL: RuntimeError: synthesis exploded |" in md
        assert "figures/sweep_pareto.png" in man["outputs"]
        # its checks join the verdict: counts summed over the points that ran; a failed point fails it
        assert ("| co-design sweep: RTL cosimulation == golden [1 point run] | every point: sampled test "
                "wafers + corners | 6,700 | 0 | **PASS** |") in md
        assert ("| co-design sweep: golden model == QKeras [1 point run] | every point: sampled test "
                "wafers | 2,000 | 0 | **PASS** |") in md and "| 2,400 | 0 | **PASS** |" in md
        assert ("| co-design sweep: every point ran and converged | sweep metrics.points | 2 points | "
                "1 failed, 0 not converged | **FAIL (f4_w6_a8_l3 failed: RuntimeError: synthesis "
                "exploded)** |") in md
        assert man["metrics"]["verdict"] == "FAIL"


def test_sweep_section_is_not_available_without_the_stage(sparse):
    cfg, man, page, md = sparse
    assert "not available: the sweep stage has not run" in md and "sweep" not in man["upstream"]
