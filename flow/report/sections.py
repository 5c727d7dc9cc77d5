"""The report's sections, one builder per part of the run: the verdict checks and
headline, provenance, dataset, EMD CNN, loss comparison and KR check, physics,
number formats, csim, RTL/cosim, tools and stage manifests.  Each builder reads
the upstream artifacts through :class:`flow.report.inputs.Upstream` and returns
:class:`flow.report.doc.Section` objects; :func:`flow.report.stage.run` lists them in
page order."""
from __future__ import annotations

import json
from pathlib import Path

from flow.report.doc import NA, Cell, Code, Para, Section, Status, Table, bin_label, dig, is_num, num, pct
from flow.report.inputs import UPSTREAM, Figures, Upstream, to_float
from flow.runner.host import host_summary
from flow.runner.manifest import git_revision


def _eta_figure(evals: dict, out_png: Path) -> bool:
    """Median EMD vs |eta| per loss, drawn from the autoencoder's eval.json
    (used only when the autoencoder stage saved no such plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    series = {}
    for loss, r in evals.items():
        rows = [b for b in (r.get("vs_eta") or []) if b.get("median") is not None]
        if rows:
            series[loss] = rows
    if not series:
        return False
    with plt.style.context(mplhep.style.CMS):
        fig, ax = plt.subplots(figsize=(9, 7))
        for i, (loss, rows) in enumerate(series.items()):
            width = rows[0]["hi"] - rows[0]["lo"]
            x = [(b["lo"] + b["hi"]) / 2 + (i - len(series) / 2) * 0.04 * width for b in rows]
            med = [b["median"] for b in rows]
            err = [[b["median"] - (b.get("min") if b.get("min") is not None else b["median"]) for b in rows],
                   [(b.get("max") if b.get("max") is not None else b["median"]) - b["median"] for b in rows]]
            ax.errorbar(x, med, yerr=err, marker="o", capsize=3, label=loss)
        ax.set_xlabel(r"wafer |$\eta$|")
        ax.set_ylabel("median EMD (min-max over seeds)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_png, dpi=80, metadata={"Software": None})
        plt.close(fig)
    return True


# ------------------------------------------------------------------ sections
def checks(up: Upstream) -> tuple[Table, list[Status]]:
    """The bit-exactness chain and the testbench checks, one row each."""
    rows, statuses = [], []

    def row(name, what, n_total, n_mismatch, extra_ok=True, extra_detail=""):
        if not is_num(n_total) or not is_num(n_mismatch):
            st = Status(False, "not available")
            cells = [name, what, NA("not recorded") if not is_num(n_total) else f"{n_total:,}",
                     NA("not recorded") if not is_num(n_mismatch) else f"{n_mismatch:,}", st]
        else:
            ok = n_mismatch == 0 and n_total > 0 and extra_ok
            detail = extra_detail or ("nothing compared" if n_total == 0 else "")
            st = Status(ok, "" if ok else detail)
            cells = [name, what, f"{n_total:,}", f"{n_mismatch:,}", st]
        rows.append(cells)
        statuses.append(st)

    # golden == QKeras
    ae = up.metrics("autoencoder")
    gc = up.json("autoencoder", "golden_check.json")
    golden = dig(ae, "golden_mismatches") or {}
    if isinstance(gc, dict) and gc:
        for loss, r in gc.items():
            seeds = r if isinstance(r, list) else [r]
            tot = [x.get("n_total") for x in seeds]
            bad = [x.get("n_mismatch") for x in seeds]
            row(f"golden model == QKeras [{loss}]",
                f"test wafers, integer latent codes ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})",
                sum(tot) if all(is_num(x) for x in tot) else None,
                sum(bad) if all(is_num(x) for x in bad) else None)
    elif golden:
        for loss, n_bad in golden.items():
            row(f"golden model == QKeras [{loss}]", "test wafers, integer latent codes",
                ae.get("golden_n_total"), n_bad)
    else:
        row("golden model == QKeras", "autoencoder golden_check.json", None, None)

    # every compared model trained to convergence (early stopping before the epoch cap)
    conv, eps, cap = ae.get("converged"), ae.get("epochs_run") or {}, ae.get("epoch_cap")
    if isinstance(conv, dict) and conv:
        for name, ok in conv.items():
            runs = eps.get(name) or []
            st = Status(bool(ok), "" if ok else "not converged: reached the epoch cap "
                        f"({cap}) before the validation loss stopped improving")
            rows.append([f"training converged [{name}]", f"early stopping before the cap of {cap} epochs",
                         f"{len(runs)} seed{'s' if len(runs) != 1 else ''}",
                         "epochs run " + "/".join(str(x) for x in runs), st])
            statuses.append(st)
    else:
        st = Status(False, "not available")
        rows.append(["training converged", "autoencoder metrics.converged", NA("not recorded"),
                     NA("not recorded"), st])
        statuses.append(st)

    # hls4ml csim
    projects = dig(up.metrics("csim"), "projects") or {}
    if not projects:
        row("hls4ml C simulation == golden", "csim metrics.projects", None, None)
    for b, r in projects.items():
        fields = r.get("fields") or {}
        bad_fields = ", ".join(f"{k} {v}" for k, v in fields.items() if v)
        row(f"hls4ml C simulation [{b}] == golden", "golden vectors (test set + corners)",
            r.get("n_total"), r.get("n_mismatch"), extra_detail=bad_fields)

    # RTL cosim
    cos = up.metrics("cosim")
    rep = up.json("cosim", "report.json")
    flavours = [k for k, v in cos.items() if isinstance(v, dict) and "n_total" in v]
    rtl_lat = up.metrics("rtl").get("latency_cycles")
    if not flavours:
        row("RTL cosimulation == golden", "cosim metrics", None, None)
    for fl in flavours:
        r = cos[fl]
        tests = _cosim_tests(rep, fl)
        failed = [t for t, v in (tests or {}).items() if not v.get("passed")]
        detail = f"testbench tests failed: {', '.join(failed)}" if failed else ""
        row(f"RTL cosimulation [{fl}] == golden", "golden vectors + testbench corners",
            r.get("n_total"), r.get("n_mismatch"), extra_ok=not failed, extra_detail=detail)
        lat, ii = r.get("latency_cycles"), r.get("ii_cycles")
        if is_num(lat) and is_num(rtl_lat):
            ok = lat == rtl_lat and ii == 1
            st = Status(ok, "" if ok else
                        f"measured {lat} clk / II {ii}, rtl.json documents {rtl_lat} clk / II 1")
            rows.append([f"RTL latency/II [{fl}] == rtl.json", "measured in cosimulation",
                         f"{lat} clk, II {ii}", f"documented {rtl_lat} clk, II 1", st])
            statuses.append(st)
    # the co-design sweep, when its artifact was verified (an optional input; verify it first)
    if "sweep" in up.v:
        sw = up.metrics("sweep")
        pts = [p for p in sw.get("points") or [] if isinstance(p, dict)]
        done = [p for p in pts if p.get("status") == "ok"]
        for name, label in (("qkeras", "golden model == QKeras"), ("csim", "hls4ml C simulation == golden"),
                            ("cosim", "RTL cosimulation == golden")):
            if name == "csim" and done and all(p.get("n_total_csim") is None for p in done):
                continue                                        # sweep.csim off
            tot = [p.get(f"n_total_{name}") for p in done]
            bad = [p.get(f"n_mismatch_{name}") for p in done]
            row(f"co-design sweep: {label} [{len(done)} point{'s' if len(done) != 1 else ''} run]",
                "every point: sampled test wafers" + (" + corners" if name != "qkeras" else ""),
                sum(tot) if done and all(is_num(x) for x in tot) else None,
                sum(bad) if done and all(is_num(x) for x in bad) else None)
        failed = [p for p in pts if p.get("status") != "ok"]
        not_conv = list(sw.get("not_converged") or [])
        ok = bool(pts) and not failed and not not_conv
        detail = "; ".join([*(f"{p.get('id')} failed: {p.get('error') or 'no error recorded'}"
                              for p in failed),
                            *(f"{i} not converged (reached sweep.epochs)" for i in not_conv)])
        st = Status(ok, "" if ok else (detail or "no points recorded"))
        rows.append(["co-design sweep: every point ran and converged", "sweep metrics.points",
                     f"{len(pts)} points", f"{len(failed)} failed, {len(not_conv)} not converged", st])
        statuses.append(st)

    t = Table("checks", "Bit-exactness chain, testbench and training-convergence checks",
              ["check", "compared on", "compared", "mismatches", "verdict"], rows,
              note="Every comparison is on integer codes against the golden model "
                   "(flow/core/encoder.py + flow/core/frontend.py); a check without a recorded count "
                   "is a FAIL.")
    return t, statuses


def _spread(d, ae: dict | None = None) -> Cell | str:
    """``median (min-max over N seeds) +- bootstrap`` of an aggregated median; a bare
    number (older runs) as it is."""
    if is_num(d):
        return f"{d:.4f}"
    if not isinstance(d, dict) or not is_num(d.get("median")):
        return NA("not recorded")
    n = (ae or {}).get("n_seeds")
    txt = f"{d['median']:.4f} (seeds {d['min']:.4f}-{d['max']:.4f}"
    txt += f", {n} seeds)" if is_num(n) else ")"
    if is_num(d.get("boot_std")):
        txt += f" +- {d['boot_std']:.4f} (bootstrap)"
    return txt


def _ratio(ae: dict, key: str) -> Cell | str:
    r, lo, hi = (ae.get(f"{key}_{k}") for k in ("median", "min", "max"))
    if not is_num(r):
        return NA("needs both losses in autoencoder.losses")
    return f"{r:.3f}" + (f" (seed envelope {lo:.3f}-{hi:.3f})" if is_num(lo) and is_num(hi) else "")


def _verdict(ae: dict) -> Cell | str:
    """Plain words on the measured comparison, whatever it says."""
    parts = []
    for key, other in (("emd_cnn_over_telescope", "telescope MSE"), ("emd_cnn_over_weighted_mse",
                                                                      "weighted MSE")):
        r, lo, hi = (ae.get(f"{key}_{k}") for k in ("median", "min", "max"))
        if not is_num(r):
            continue
        if is_num(hi) and hi < 1:
            parts.append(f"yes vs {other} (lower median EMD for every seed)")
        elif is_num(lo) and lo > 1:
            parts.append(f"no: worse than {other} for every seed")
        else:
            parts.append(f"not resolved vs {other}: the seed spreads overlap (ratio {r:.3f})")
    conv = ae.get("converged") or {}
    if conv and not all(conv.values()):
        parts.append("not every model converged, so this comparison is not final")
    return "; ".join(parts) if parts else NA("needs emd_cnn and a baseline loss")


def headline(up: Upstream) -> Table:
    ae, emd, cos = up.metrics("autoencoder"), up.metrics("emd"), up.metrics("cosim")
    exp = ae.get("export_loss")
    rows = [
        ["exported encoder trained with", exp or NA("not recorded")],
        ["median EMD(input, reconstruction), exported loss", _spread(dig(ae, "median_emd", exp), ae)
         if exp else NA("not recorded")],
        ["EMD-CNN / telescope-MSE median EMD", _ratio(ae, "emd_cnn_over_telescope")],
        *([["EMD-CNN / weighted-MSE median EMD", _ratio(ae, "emd_cnn_over_weighted_mse")]]
          if "weighted_mse" in (ae.get("median_emd") or {}) else []),
        ["is the EMD-CNN loss better?", _verdict(ae)],
        ["EMD CNN on the EMD-CNN autoencoder's own reconstructions (std of relative difference)",
         pct(dig(ae, "cnn_on_ae_pairs_rel_std", "emd_cnn"), signed=False,
             reason="not checked (autoencoder.cnn_check)")],
        ["EMD CNN chosen by the grid", dig(emd, "grid", "best") or NA("not recorded")],
        ["EMD CNN test resolution (std of relative difference)", pct(emd.get("test_rel_std"), signed=False)],
    ]
    for fl, r in cos.items():
        if isinstance(r, dict) and "n_total" in r:
            rows.append([f"RTL [{fl}] latency", num(r.get("latency_ns"), "g", "not measured", unit=" ns")])
            lut = r.get("xilinx_LUT")
            rows.append([f"RTL [{fl}] LUTs (Yosys synth_xilinx)", f"{lut:,}" if is_num(lut)
                         else NA(f"not estimated (cosim.yosys = {up.config('cosim').get('yosys', '?')})")])
    return Table("key-results", "Key results", ["quantity", "value"], rows)


def provenance(up: Upstream, ctx, date: str, run_hash: str) -> Section:
    sec = Section("provenance", "Run and provenance")
    gits = {}
    for s in UPSTREAM:
        gits.setdefault(up.man(s).get("git") or "unknown", []).append(s)
    rows = [["run name", ctx.cfg.name],
            ["run directory", Code(str(ctx.cfg.run_dir))],
            ["run completed (UTC, newest stage artifact)", date],
            ["run config hash", Code(run_hash)],
            ["seed", str(ctx.cfg.seed)],
            ["git revision (report)", Code(git_revision() or "unknown")]]
    for g, stages in gits.items():
        rows.append([f"git revision ({', '.join(stages)})", Code(g)])
    hosts: dict[str, list[str]] = {}  # trained weights depend on the CPU and its settings
    for s in UPSTREAM:
        hosts.setdefault(host_summary(up.man(s).get("host")), []).append(s)
    for h, stages in hosts.items():
        rows.append([f"host ({', '.join(stages)})", NA(h) if h == "not recorded" else h])
    rows.append(["last upstream stage finished (UTC)",
                 max((up.man(s).get("finished_utc") or "") for s in UPSTREAM) or NA("not recorded")])
    sec.add(Table("provenance", "Run", ["item", "value"], rows,
                  note="run config hash = sha256 of the per-stage config hashes (data ... cosim, report) "
                       "in the table 'Stage manifests'; a '-dirty' revision had uncommitted changes; "
                       "host = CPU and TensorFlow/oneDNN settings of the stage's manifest (trained "
                       "weights depend on them, docs/emd.md 'Reproducibility')."))
    return sec


def dataset(up: Upstream, figs: Figures) -> Section:
    sec = Section("dataset", "Dataset (data stage)")
    m, c = up.metrics("data"), up.config("data")
    st = up.json("data", "stats.json")
    stj = st if isinstance(st, dict) else {}
    source = stj.get("source") or c.get("source")
    if source == "synthetic":
        # the page still names the generator's old module (now flow.core.generator): kept so that
        # the issue #15 refactoring leaves the report's bytes unchanged; update with the next page change
        src = (f"synthetic generator (flow.synth: electron showers + pileup), "
               f"{c.get('n_events', '?')} events in {c.get('n_files', '?')} ROOT files")
    elif source == "root":
        files = dig(stj, "reader", "files") or []
        src = f"user ROOT ntuples: {len(files)} files ({', '.join(str(f.get('path')) for f in files[:5])}" \
              f"{', ...' if len(files) > 5 else ''})"
    else:
        src = NA("source not recorded")
    gen = m.get("generated_wafers")
    rows = [["source", src],
            ["layout of the ntuples", stj.get("layout") or NA("stats.json not written")],
            ["events read", num(stj.get("events_read") or dig(stj, "reader", "events"))],
            ["wafers generated", num(gen) if gen is not None
             else NA("not a synthetic run" if source == "root" else "not recorded")],
            ["wafers read", num(m.get("wafers_read"))],
            ["wafers kept (selected)", num(m.get("wafers_kept"))],
            ["mean occupancy (TCs above 1 MIP_T)", num(m.get("occupancy_mean"), ".3f")],
            ["shower containment (generator)", num(m.get("shower_containment"), ".4f",
                                                   "not a synthetic run" if source == "root"
                                                   else "not recorded")]]
    for k, v in (m.get("drops") or {}).items():
        rows.append([f"dropped: {k.replace('_', ' ')}", num(v)])
    sec.add(Table("dataset", "Dataset", ["quantity", "value"], rows))
    sel = [["ECON-T drop setting", num(c.get("drop"), "d")],
           ["layers", ", ".join(str(x) for x in c["layers"]) if c.get("layers") else NA("not recorded")],
           ["min occupancy (TCs above 1 MIP_T)", num(c.get("min_occupancy"), "g")],
           ["min wafer sum (MIP_T)", num(c.get("min_sum_mipt"), "g")],
           ["CALVALUE", num(c.get("calvalue"), "d")],
           ["split fractions train/val/test", " / ".join(f"{x:g}" for x in c["split"])
            if c.get("split") else NA("not recorded")]]
    sec.add(Table("selection", "Selection (data config)", ["setting", "value"], sel))
    splits = stj.get("splits") or {}
    rows = []
    for name in ("train", "val", "test"):
        sp = splits.get(name, {})
        rows.append([name, num(dig(m, "events", name), reason="not recorded"),
                     num(dig(m, "wafers", name)), num(sp.get("shower_wafers"), reason="no stats.json"),
                     num(sp.get("occupancy_mean"), ".3f", "no stats.json"),
                     num(sp.get("occupancy_median"), "g", "no stats.json"),
                     num(sp.get("calq_sum_median"), "g", "no stats.json"),
                     num(sp.get("eta_mean"), ".3f", "no stats.json")])
    sec.add(Table("splits", "Splits", ["split", "events", "wafers", "shower wafers", "occupancy mean",
                                       "occupancy median", "CALQ sum median", "|eta| mean"], rows))
    order = stj.get("plots") if isinstance(stj.get("plots"), list) else None
    plots = figs.stage_plots(up, "data", order)
    sec.add(plots if plots else Para(str(NA("the data stage saved no plots")), na=True))
    return sec


def _binned_table(tid: str, caption: str, rows: list, first: str) -> Table:
    out = []
    for b in rows or []:
        n = b.get("n", 0)
        empty = NA("empty bin")
        vals = [pct(b.get(k), signed=k not in ("std", "rms")) if n else empty
                for k in ("mean", "std", "rms", "median", "q16", "q84")]
        out.append([bin_label(b), num(n)] + vals)
    return Table(tid, caption, [first, "pairs", "mean", "std", "rms", "median", "q16", "q84"], out,
                 note="relative difference (EMD CNN - exact EMD) / exact EMD")


def emd(up: Upstream, figs: Figures) -> Section:
    sec = Section("emd", "EMD CNN (emd stage)")
    m = up.metrics("emd")
    grid = up.json("emd", "grid.json")
    info = up.json("emd", "emd_cnn.json")
    ev = up.json("emd", "eval.json")
    arch = dig(info, "arch") if isinstance(info, dict) else None
    best = dig(m, "grid", "best") or (grid.get("best") if isinstance(grid, dict) else None)
    rows = [["chosen architecture", best or NA("not recorded")]]
    if arch:
        rows += [["conv filters", num(arch.get("filters"), "d")], ["kernel", num(arch.get("kernel"), "d")],
                 ["conv layers", num(arch.get("n_conv"), "d")], ["dense units", num(arch.get("dense"), "d")]]
    else:
        rows.append(["architecture details", NA("emd_cnn.json not written")])
    sel_on = grid.get("select_on") if isinstance(grid, dict) else None
    rows += [["grid trials", num(dig(m, "grid", "trials"), "d")],
             ["selected on (validation)", sel_on or NA("not recorded")],
             ["training pairs train/val/test", " / ".join(f"{dig(m, 'pairs', k):,}" for k in
                                                           ("train", "val", "test"))
              if all(is_num(dig(m, "pairs", k)) for k in ("train", "val", "test")) else NA("not recorded")],
             ["final training epochs", num(dig(m, "final", "epochs"), "d")]]
    sec.add(Table("emd-model", "EMD CNN", ["item", "value"], rows))
    if isinstance(grid, dict) and grid.get("trials"):
        trows = []
        for t in grid["trials"]:
            trows.append([t.get("tag", "?") + (" (chosen)" if t.get("tag") == best else ""),
                          num(t.get("params")), pct(t.get("rel_mean")), pct(t.get("rel_std"), signed=False),
                          pct(t.get("rel_rms"), signed=False), num(t.get("epochs"), "d"),
                          num(t.get("s_per_epoch"), ".2f")])
        sec.add(Table("emd-grid", "Architecture grid (validation, short training)",
                      ["architecture", "parameters", "rel. mean", "rel. std", "rel. rms", "epochs",
                       "s/epoch"],
                      trows))
    else:
        sec.add(Para(str(NA("the emd stage wrote no grid.json")), na=True))
    if isinstance(ev, dict):
        rrows = []
        for split in ("test", "val"):
            r = dig(ev, split, "relative") or {}
            rrows.append([split, num(r.get("n")), pct(r.get("mean")), pct(r.get("std"), signed=False),
                          pct(r.get("rms"), signed=False),
                          pct(r.get("median")), pct(r.get("q16")), pct(r.get("q84")),
                          num(dig(ev, split, "true_emd", "mean"), ".3f")])
        sec.add(Table("emd-resolution", "Resolution: relative difference (EMD CNN - exact EMD) / exact EMD",
                      ["split", "pairs", "mean", "std", "rms", "median", "q16", "q84", "mean exact EMD"],
                      rrows, note=dig(ev, "test", "definition") or ""))
        sec.add(_binned_table("emd-by-emd", "Test resolution vs exact EMD",
                              dig(ev, "test", "by_true_emd"), "exact EMD"))
        sec.add(_binned_table("emd-by-occupancy", "Test resolution vs pair occupancy",
                              dig(ev, "test", "by_occupancy"), "pair occupancy"))
    else:
        sec.add(Para(str(ev), na=True))
    plots = figs.stage_plots(up, "emd", ["rel_diff.png", "pred_vs_true.png", "resolution_vs_emd.png",
                                         "resolution_vs_occupancy.png"])
    sec.add(plots if plots else Para(str(NA("the emd stage saved no plots")), na=True))
    return sec


def losses(up: Upstream, figs: Figures, out: Path) -> tuple[Section, Section]:
    sec = Section("losses", "Loss comparison (autoencoder stage)")
    m = up.metrics("autoencoder")
    ev = up.json("autoencoder", "eval.json")
    evm = dig(ev, "models") if isinstance(ev, dict) else None
    agg = {name: v.get("aggregate") or {} for name, v in evm.items()} if isinstance(evm, dict) else None
    comp = up.csv("autoencoder", "comparison.csv")
    golden = m.get("golden_mismatches") or {}
    exp = m.get("export_loss")
    if isinstance(comp, list) and comp:
        rows = []
        for r in comp:
            name = r.get("model", "?")
            conv = r.get("converged")
            rows.append([name + (f" (exported, seed {m.get('export_seed', '?')})" if name == exp else ""),
                         num(to_float(r.get("median_emd")), ".4f"),
                         f"{to_float(r.get('min')):.4f} - {to_float(r.get('max')):.4f}"
                         if is_num(to_float(r.get("min"))) else NA("not recorded"),
                         num(to_float(r.get("boot_std")), ".4f", "no bootstrap"),
                         num(to_float(r.get("n_seeds")), "g"),
                         Status(conv == "True", "" if conv == "True" else "reached the epoch cap"),
                         r.get("epochs_run") or NA("not recorded"),
                         r.get("learning_rate") or NA("not recorded"),
                         num(golden.get(name), "d")])
        sec.add(Table("loss-comparison", "Median EMD(input, reconstruction) on the test wafers per model",
                      ["model", "median EMD (median over seeds)", "min - max over seeds",
                       "bootstrap std of the median", "seeds", "converged", "epochs run per seed",
                       "learning rate", "golden != QKeras"], rows,
                      note=f"from autoencoder/comparison.csv on {m.get('n_test', '?')} test wafers "
                           f"({m.get('n_train', '?')} training wafers); EMD in ground-distance units "
                           "(2.0 = neighbouring cells); every model trains until early stopping (epoch cap "
                           f"{m.get('epoch_cap', '?')}); '+cond': conditional decoder (module sum, layer, "
                           "|eta|); training.csv has the per-seed details"))
    else:
        sec.add(Para(str(comp if isinstance(comp, NA) else NA("comparison.csv is empty")), na=True))
    ratios = dig(ev, "ratios_emd_cnn_over") if isinstance(ev, dict) else None
    if agg:
        names = list(agg)
        for key, label, tid in (("vs_occupancy", "occupancy (TCs > 1 MIP_T)", "loss-vs-occupancy"),
                                ("vs_eta", "|eta|", "loss-vs-eta")):
            base = next((agg[n].get(key) for n in names if agg[n].get(key)), None)
            if not base:
                sec.add(Para(str(NA(f"eval.json has no {key} bins")), na=True))
                continue
            rows = []
            for i, b in enumerate(base):
                cells = [bin_label(b), num(b.get("n"))]
                for n in names:
                    cells.append(_spread(dig(agg, n, key, i)) if dig(agg, n, key, i, "median") is not None
                                 else NA("empty bin"))
                for other in ("telescope_mse", "weighted_mse"):
                    if isinstance(ratios, dict) and other in ratios:
                        rb = dig(ratios, other, key, i) or {}
                        cells.append(f"{rb['ratio']:.3f} ({rb['min']:.3f}-{rb['max']:.3f})"
                                     if is_num(rb.get("ratio")) else NA("empty bin"))
                rows.append(cells)
            header = [label, "wafers"] + [f"median EMD [{n}]" for n in names]
            header += [f"EMD-CNN / {o}" for o in ("telescope_mse", "weighted_mse")
                       if isinstance(ratios, dict) and o in ratios]
            sec.add(Table(tid, f"Median EMD vs {label}: median over seeds (min-max) +- bootstrap", header,
                          rows))
    else:
        sec.add(Para(str(ev if isinstance(ev, NA) else NA("eval.json has no 'models'")), na=True))
    plots = figs.stage_plots(up, "autoencoder", ["emd_vs_occupancy.png", "emd_vs_eta.png",
                                                 "emd_distribution.png"])
    if not up.has("autoencoder", "plots/emd_vs_eta.png"):
        png = out / "figures" / "autoencoder_emd_vs_eta_report.png"
        if agg and _eta_figure(agg, png):
            plots.append(figs.add_drawn(png, "Median EMD(input, reconstruction) per model vs |eta| (median "
                                        "over seeds, min-max), drawn by the report stage from "
                                        "autoencoder/eval.json", "autoencoder/eval.json (vs_eta)"))
        else:
            plots.append(Para(str(NA("no eta plot: the autoencoder stage saved none and its eval.json "
                                     "has no vs_eta bins")), na=True))
    sec.add(plots if plots else Para(str(NA("the autoencoder stage saved no plots")), na=True))
    sec.add(*_cnn_check(up))
    sec.add(*_elinks(m))

    kr_sec = Section("kr-check", "KR-dual (NEEMo-style) cross-check of exact EMD")
    kr = m.get("kr_dual_check") or (ev.get("kr_dual_check") if isinstance(ev, dict) else None)
    if kr:
        mx = kr.get("max_ratio")
        bound = (Status(mx <= 1.0, "" if mx <= 1.0 else "estimate exceeds exact EMD")
                 if is_num(mx) else NA("not recorded"))
        rows = [["test wafers", num(kr.get("n"))],
                ["median KR estimate / exact EMD", num(kr.get("median_ratio_kr_over_exact"), ".3f")],
                ["16-84 % of the ratio", f"{kr['q16_ratio']:.3f} - {kr['q84_ratio']:.3f}"
                 if is_num(kr.get("q16_ratio")) and is_num(kr.get("q84_ratio")) else NA("not recorded")],
                ["max ratio", num(mx, ".3f")],
                ["lower bound holds (max ratio <= 1)", bound],
                ["Pearson r (estimate, exact)", num(kr.get("pearson_r"), ".3f")]]
        kr_sec.add(Table("kr-dual", "KR-dual estimate vs exact EMD on the exported model's reconstructions",
                         ["quantity", "value"], rows,
                         note="any 1-Lipschitz critic gives a lower bound of the EMD: the ratio must stay "
                              "<= 1; the median says how tight the estimate is (docs/autoencoder.md)"))
    else:
        kr_sec.add(Para(str(NA("the KR-dual check was not run (autoencoder.kr_check_pairs = 0)")), na=True))
    return sec, kr_sec


def _elinks(m: dict) -> list:
    """The exported loss's encoder per eLink budget (``elinks`` metric of the autoencoder)."""
    el = m.get("elinks")
    if not isinstance(el, dict) or not el:
        return []
    rows = []
    for n in sorted(el, key=int):
        r = el[n]
        conv = r.get("converged")
        g = r.get("golden") or {}
        rows.append([num(int(n), "d"), num(r.get("latent_bits"), "d"),
                     "the compared model" if not r.get("trained") else f"trained ({r.get('init')})",
                     num(r.get("median_emd"), ".4f"), num(r.get("boot_std"), ".4f", "no bootstrap"),
                     num(r.get("epochs_run"), "d"),
                     Status(conv is True, "" if conv is True else "reached the epoch cap"),
                     num(g.get("n_mismatch"), "d") if r.get("trained") else "see above"])
    return [Table("elink-encoders", f"Exported-loss ({m.get('export_loss')}) encoder per eLink budget",
                  ["eLinks", "latent bits", "model", "median EMD", "bootstrap std", "epochs run",
                   "converged", "golden != QKeras"], rows,
                  note="16 latents x latent bits + 9-bit module sum + 4-bit header within 32 bits per "
                       "eLink per BX; the other budgets train under the same rule as the compared models "
                       "(autoencoder.elinks, elinks_init); exported to autoencoder/elinks/<n>/")]


def _cnn_check(up: Upstream) -> list:
    """The EMD CNN on every model's own (input, reconstruction) test pairs."""
    cc = up.json("autoencoder", "cnn_check.json")
    if not isinstance(cc, dict) or not cc.get("models"):
        return [Para(str(NA("the EMD CNN was not checked on reconstructions (autoencoder.cnn_check "
                            "off or an older run)")), na=True)]
    rows = []
    for name, seeds in cc["models"].items():
        means = [x.get("rel_mean") for x in seeds if is_num(x.get("rel_mean"))]
        stds = [x.get("rel_std") for x in seeds if is_num(x.get("rel_std"))]
        by = {(b["lo"], b["hi"]): b for b in seeds[0].get("by_true_emd") or []}
        cells = [name, num(seeds[0].get("n")), pct(max(means, key=abs) if means else None),
                 pct(max(stds) if stds else None, signed=False)]
        cells += [pct(b.get("std"), signed=False, reason="empty bin") for b in by.values()]
        rows.append(cells)
    edges = [(b["lo"], b["hi"]) for b in next(iter(cc["models"].values()))[0].get("by_true_emd") or []]
    header = ["model", "pairs (seed 0)", "rel. mean (largest |.| over seeds)",
              "rel. std (largest over seeds)"]
    header += [f"std, true EMD {lo:g}-{hi:g} (seed 0)" for lo, hi in edges]
    return [Table("cnn-on-reconstructions", "EMD CNN vs exact EMD on each model's own (input, "
                  "reconstruction) test pairs", header, rows,
                  note="relative difference (CNN - exact) / exact over pairs with exact EMD >= "
                       f"{cc.get('min_emd')}; this is the regime the EMD-CNN loss is optimised in (the "
                       "random-pair resolution of the emd stage says little about it); per-occupancy bins in "
                       "autoencoder/cnn_check.json; scatter plots with the loss comparison's figures")]


def quantization(up: Upstream) -> Section:
    sec = Section("quantization", "Quantization and number formats")
    ae_c, cv = up.config("autoencoder"), up.metrics("convert")
    meta = up.json("convert", "vectors_meta.json")
    fmts = dig(meta, "formats") if isinstance(meta, dict) else None
    names = {"word": "TC word (ECON-T input)", "calvalue": "CALVALUE", "aein": "AEin (encoder input)",
             "weights": "weights and biases", "conv_act": "conv activation", "latent": "latent output",
             "sum_code": "module sum"}
    if fmts:
        rows = [[names.get(k, k), Code(v)] for k, v in fmts.items()]
    else:
        rows = [["formats", meta if isinstance(meta, NA) else NA("vectors_meta.json has no formats")]]
    rows += [["latent bits (autoencoder config)", num(ae_c.get("latent_bits"), "d")],
             ["latent bits (convert)", num(cv.get("latent_bits"), "d")],
             ["latent bits (rtl)", num(up.metrics("rtl").get("latent_bits"), "d")]]
    sec.add(Table("formats", "Number formats (golden model = QKeras = hls4ml = RTL)", ["quantity", "format"],
                  rows, note="from convert/vectors_meta.json and the stages' latent_bits"))
    proj = up.json("convert", "projects.json")
    projects = dig(proj, "projects") if isinstance(proj, dict) else None
    if projects:
        layer_sets = {b: json.dumps(p.get("layers"), sort_keys=True) for b, p in projects.items()}
        groups: dict[str, list[str]] = {}
        for b, key in layer_sets.items():
            groups.setdefault(key, []).append(b)
        for key, backends in groups.items():
            layers = json.loads(key) or []
            rows = [[ly.get("name", "?"), ly.get("class", "?")]
                    + [Code(dig(ly, "precisions", k)) if dig(ly, "precisions", k) else "-"
                       for k in ("result", "weight", "bias", "accum")] for ly in layers]
            sec.add(Table(f"hls4ml-precisions-{'-'.join(backends).lower()}",
                          f"hls4ml layer precisions ({', '.join(backends)})",
                          ["layer", "class", "result", "weight", "bias", "accumulator"], rows))
    else:
        sec.add(Para(str(proj if isinstance(proj, NA) else NA("projects.json has no projects")), na=True))
    # golden == QKeras and the golden vectors
    ae = up.metrics("autoencoder")
    rows = [[loss, num(ae.get("golden_n_total")), num(n, "d")] for loss, n in
            (ae.get("golden_mismatches") or {}).items()]
    sec.add(Table("golden-qkeras", "Golden integer model vs QKeras encoder (every test wafer)",
                  ["loss", "wafers", "mismatching wafers"],
                  rows or [[NA("autoencoder metrics have no golden_mismatches"), "", ""]]))
    counts = cv.get("counts") or {}
    rows = [[k.replace("_", " "), num(v)] for k, v in counts.items()]
    rows += [[f"total in {f}", num(n)] for f, n in (cv.get("n_vectors") or {}).items()]
    sec.add(Table("golden-vectors", "Golden test vectors (convert stage)", ["kind", "vectors"],
                  rows or [[NA("convert metrics have no vector counts"), ""]]))
    return sec


def csim(up: Upstream) -> Section:
    sec = Section("csim", "hls4ml C simulation (csim stage)")
    projects = dig(up.metrics("csim"), "projects") or {}
    fields = sorted({f for r in projects.values() for f in (r.get("fields") or {})})
    rows = []
    for b, r in projects.items():
        ok = r.get("n_mismatch") == 0 and (r.get("n_total") or 0) > 0
        rows.append([b, num(r.get("n_total")), num(r.get("n_mismatch"))]
                    + [num(dig(r, "fields", f)) for f in fields]
                    + [num(r.get("compile_s"), ".1f"), num(r.get("csim_s"), ".2f"),
                       num(r.get("vectors_per_s"), ",.0f"), Status(ok)])
    if not rows:
        rows = [[NA("the csim stage recorded no projects")] + [""] * (6 + len(fields))]
    sec.add(Table("csim", "C simulation of the hls4ml projects vs the golden model",
                  ["backend", "vectors", "mismatching vectors"] + [f"{f} mismatches" for f in fields]
                  + ["g++ compile s", "csim s", "vectors/s", "verdict"], rows))
    return sec


def _cosim_tests(rep, key: str) -> dict | None:
    """The testbench tests of one cosim result: a flavour, or ``<flavour>@<n>elinks`` (the
    encoder of another eLink budget, ``report.json`` ``elinks``)."""
    if not isinstance(rep, dict):
        return None
    if "@" in key:
        fl, n = key.split("@", 1)
        return dig(rep, "elinks", n.removesuffix("elinks"), "flavours", fl, "tests")
    return dig(rep, "flavours", key, "tests")


def rtl_cosim(up: Upstream) -> Section:
    sec = Section("cosim", "RTL and cosimulation (rtl and cosim stages)")
    rtl = up.json("rtl", "rtl.json")
    rm = up.metrics("rtl")
    iface = dig(rtl, "interface") if isinstance(rtl, dict) else {}
    rows = [["clock period", num(dig(iface, "clock_ns"), "g", unit=" ns")],
            ["latency (documented)", num(rm.get("latency_cycles"), "d", unit=" clk")],
            ["latency (documented)", num(rm.get("latency_ns"), "g", unit=" ns")],
            ["initiation interval", num(rm.get("ii_cycles"), "d", unit=" clk")],
            ["latent bits", num(rm.get("latent_bits"), "d")]]
    for fl, f in (dig(rtl, "flavours") or {}).items():
        rows.append([f"{fl}: top / Verilog lines", f"{f.get('top', '?')} / {f.get('verilog_lines', '?')}"])
        rows.append([f"{fl}: lint", f.get("lint") or NA("not recorded")])
        if "da4ml_cost" in f:
            rows.append([f"{fl}: da4ml adder cost", num(f.get("da4ml_cost"), ",.0f")])
    for n, b in (rm.get("elinks") or {}).items():
        rows.append([f"{n} eLinks: {b.get('latent_bits')}-bit latents",
                     f"{', '.join(b.get('flavours') or {})} in rtl/{b.get('dir')}/ "
                     f"(cosim rows <flavour>@{n}elinks)"])
    sec.add(Table("rtl", "RTL of the ECON-T block (rtl stage)", ["item", "value"], rows))

    cm, cc = up.metrics("cosim"), up.config("cosim")
    rep = up.json("cosim", "report.json")
    repd = rep if isinstance(rep, dict) else {}
    flavours = [k for k, v in cm.items() if isinstance(v, dict) and "n_total" in v]
    rows = []
    for fl in flavours:
        r = cm[fl]
        tests = _cosim_tests(repd, fl) or {}
        n_pass = sum(1 for t in tests.values() if t.get("passed"))
        ok = r.get("n_mismatch") == 0 and (r.get("n_total") or 0) > 0 and n_pass == len(tests)
        rows.append([fl, num(r.get("n_total")), num(r.get("n_mismatch")),
                     f"{n_pass} / {len(tests)}" if tests else NA("cosim report.json not written"),
                     num(r.get("latency_cycles"), "d", "not measured"),
                     num(r.get("latency_ns"), "g", "not measured"),
                     num(r.get("ii_cycles"), "d", "not measured"),
                     num(r.get("sim_wafers_per_s"), ",.0f"), num(r.get("build_s"), ".1f"), Status(ok)])
    if not rows:
        rows = [[NA("the cosim stage recorded no flavours")] + [""] * 9]
    sec.add(Table("cosim", "Cosimulation (cocotb + Verilator) vs the golden model",
                  ["flavour", "wafers", "mismatching wafers", "testbench tests passed", "latency clk",
                   "latency ns", "II clk", "sim wafers/s", "Verilator build s", "verdict"], rows))

    # per phase
    prow = []
    for fl in flavours:
        for ph, p in (dig(repd, "flavours", fl, "phases") or {}).items():
            prow.append([fl, ph, num(p.get("n_total")), num(p.get("n_mismatch")),
                         num(p.get("n_field_mismatch"), reason="not recorded")])
    if prow:
        sec.add(Table("cosim-phases", "Cosimulation phases",
                      ["flavour", "phase", "wafers", "mismatching wafers", "mismatching fields"], prow))
    # resources
    kinds = cc.get("yosys")
    none_reason = f"not estimated (cosim.yosys = {json.dumps(kinds) if kinds is not None else '?'})"
    xcols = [("xilinx", "LUT"), ("xilinx", "FF"), ("xilinx", "CARRY4"), ("xilinx", "DSP48"),
             ("xilinx", "MUXF7"), ("xilinx", "MUXF8"), ("xilinx", "BRAM"),
             ("generic", "gates"), ("generic", "transistors"), ("generic", "logic_depth_gates"),
             ("sky130", "area_um2")]
    rows = []

    skip = cc.get("yosys_skip") or {}

    def res_row(label, getter, design=None):
        cells = [label]
        for kind, k in xcols:
            v = getter(kind, k)
            cells.append(num(v) if v is not None else
                         NA(none_reason if not kinds or kind not in kinds else
                            f"not run for {design} (cosim.yosys_skip)" if kind in skip.get(design, ()) else
                            f"no {kind} {k} figure"))
        return cells

    if not kinds:   # no Yosys run at all: one explicit cell per design instead of a row of blanks
        sec.add(Table("resources", "Resources (Yosys)", ["design", "resources"],
                      [[fl, NA(none_reason)] for fl in flavours if "@" not in fl] or [["-", NA(none_reason)]],
                      note="enable with cosim.yosys: [xilinx, generic] (takes minutes)"))
        return sec
    for fl in flavours:
        if "@" not in fl:        # the other eLink budgets' designs are not synthesized
            rows.append(res_row(fl, lambda kind, k, fl=fl: cm[fl].get(f"{kind}_{k}"), fl))
    fe = repd.get("frontend")
    if fe:
        rows.append(res_row("front end alone", lambda kind, k: dig(fe, kind, k)))
    if rows:
        dsp = "with DSP48" if cc.get("yosys_dsp") else "-nodsp"
        head = {"xilinx": "{k}", "generic": "{k} (generic)",
                "sky130": "sky130 area um^2 (area only, no timing)"}
        sec.add(Table("resources", f"Resources (Yosys: synth_xilinx {dsp}, generic gates, sky130 area)",
                      ["design"] + [head[kind].format(k=k.replace("_", " ")) for kind, k in xcols], rows,
                      note="estimates from Yosys, no place and route; generic gates = yosys 'synth' "
                           "cells without a cell library; sky130 = SkyWater 130 nm sky130_fd_sc_hd cells "
                           "mapped with an area-only Liberty (cell area from LEF, no timing, no buffering, "
                           "clock tree or routing)"))
    _area_tables(sec, repd)
    return sec


#: the label of every sky130 figure (flow.hdl.area.AREA_LABEL; not imported: the report
#: stage's code would then include the area model's)
AREA_LABEL = "area only, no timing (sky130_fd_sc_hd cell areas from LEF)"


def _area_tables(sec: Section, repd: dict) -> None:
    """The TMR overhead and the ECON-T comparison of the cosim stage's sky130 areas."""
    rows = []
    for t, o in (repd.get("tmr_overhead") or {}).items():
        rows += [[f"{t} vs {o.get('plain')}: whole block", num(o.get("area_tmr_um2"), ",.0f"),
                  num(o.get("area_plain_um2"), ",.0f"), num(o.get("total_ratio"), ".2f", unit="x")],
                 [f"{t} vs {o.get('plain')}: protected registers (flip-flops + voters, refresh, seu_count)",
                  num(o.get("registers_tmr_um2"), ",.0f"), num(o.get("registers_plain_um2"), ",.0f"),
                  num(o.get("protected_ratio"), ".2f", unit="x")],
                 [f"{t} vs {o.get('plain')}: flip-flop cells alone", num(o.get("ff_tmr"), ",d", unit=" FF"),
                  num(o.get("ff_plain"), ",d", unit=" FF"), num(o.get("sequential_ratio"), ".2f", unit="x")]]
    if rows:
        sec.add(Table("tmr-overhead", f"TMR area overhead ({AREA_LABEL})",
                      ["comparison", "with TMR (um^2)", "without (um^2)", "ratio"], rows,
                      note="the two flavours differ only in their registers, so the whole area difference "
                           "is the TMR's (three copies, majority voters, refresh multiplexers, error flag, "
                           "seu_count); the protected-register ratio is (plain flip-flop area + difference) "
                           "/ plain flip-flop area (the plain registers' load logic, which both flavours "
                           "have, is not in the denominator: with it, the weight image alone measured 2.93x, "
                           "docs/rtl_cosim.md); separate ABC runs on the identical datapath add some noise "
                           "to the difference"))
    cmp = repd.get("econt_comparison") or {}
    if cmp:
        c0 = next(iter(cmp.values()))
        rows = [[fl, num(c.get("block_mm2"), ".3f", unit=" mm^2"),
                 num(c.get("fraction_of_scaled"), ".0f", scale=100.0, unit=" %")] for fl, c in cmp.items()]
        sec.add(Table("econt-area", f"Block area ({AREA_LABEL}) against the published ECON-T",
                      ["flavour", "sky130 cell area",
                       f"of the published ECON-T scaled to 130 nm ({c0.get('published_scaled_mm2')} mm^2)"],
                      rows,
                      note=f"published ECON-T: {c0.get('published_mm2')} mm^2 in {c0.get('published_nm')} nm "
                           f"LP CMOS, the whole ASIC (IEEE TNS 2021); scaling: {c0.get('assumption')}. "
                           "This block is the front end and autoencoder only, as cell area before "
                           "placement (a placed block is about the cell area / 0.5-0.7)."))


def physics(ctx, up: Upstream, figs: Figures) -> Section:
    """The physics stage's results, if its artifact exists and is fresh (an optional input:
    it is verified here and then recorded in the report's manifest like the others)."""
    from flow.runner.errors import StageInputError
    from flow.runner.manifest import load_manifest, verify

    sec = Section("physics", "Electron trigger resolution (physics stage)")
    if load_manifest(ctx.cfg.stage_dir("physics")) is None:
        return sec.add(Para(str(NA("the physics stage has not run (`make physics`)")), na=True))
    try:
        ctx.upstream["physics"] = verify(ctx.cfg, "physics")
    except StageInputError as err:
        return sec.add(Para(str(NA(f"the physics artifact is not usable: {err}")), na=True))
    m = up.metrics("physics")
    unavailable = m.get("unavailable") or {}
    rows = []
    for a in m.get("algorithms", []):
        for e in m.get("elinks", []):
            r = dig(m, "resolution", a, str(e))
            why = dig(unavailable, a, str(e))
            q = dig(m, "resolution_over_uncompressed", a, str(e))
            ratio = (f"{q['value']:.3f} +- {q['err']:.3f}"
                     if isinstance(q, dict) and is_num(q.get("value")) and is_num(q.get("err"))
                     else NA("not recorded"))
            w = dig(m, "resolution_over_weighted_mse", a, str(e))
            over_w = (f"{w['value']:.3f} +- {w['err']:.3f}"
                      if isinstance(w, dict) and is_num(w.get("value")) and is_num(w.get("err")) else "")
            rows.append([a, num(e, "d"), num(dig(m, "bits_per_bx", a, str(e)), "d"),
                         NA(why or "not measured") if r is None else pct(r.get("value"), signed=False),
                         "" if r is None else pct(r.get("err"), signed=False),
                         "" if r is None else ratio,
                         "" if r is None else over_w,
                         "" if r is None else pct(dig(m, "efficiency", a, str(e)), 1, signed=False),
                         "" if r is None else num(dig(m, "median_emd", a, str(e)), ".3f")])
    sec.add(Table("physics-summary", "Effective pT resolution of matched L1 electron clusters per "
                  "output algorithm and eLink budget (test split)",
                  ["algorithm", "eLinks", "bits per BX", "resolution", "bootstrap err.",
                   "/ uncompressed (paired)", "/ weighted-MSE AE (paired)", "efficiency",
                   "median EMD"], rows,
                  note=f"generated pT >= {m.get('min_gen_pt')} GeV, {m.get('n_electrons')} electrons; "
                       "bits per BX: worst-case frame (uncompressed: 48 x 22-bit CALQ, the lossless "
                       "reference, exempt from the budget); `autoencoder`: the exported encoder at "
                       "every budget of autoencoder.elinks (one model per latent width, the handoff's "
                       "weight images); ratios on the same electrons with a "
                       "paired bootstrap error, autoencoders against the weighted-MSE autoencoder of "
                       "the same seed; docs/physics.md"))
    order = ([f"resolution_vs_eta_{e}elinks.png" for e in (2, 3, 4, 5)]
             + ["resolution_emd_vs_elinks.png", "resolution_over_weighted_mse_vs_eta.png"])
    plots = figs.stage_plots(up, "physics", order)
    sec.add(plots if plots else Para(str(NA("the physics stage saved no plots")), na=True))
    return sec


def sweep(ctx, up: Upstream, figs: Figures) -> Section:
    """The co-design sweep's map, if its artifact exists and is fresh (an optional input, like
    the physics stage's): one row per point, the Pareto front marked, failed points named."""
    from flow.runner.errors import StageInputError
    from flow.runner.manifest import load_manifest, verify

    sec = Section("sweep", "Co-design sweep (sweep stage)")
    if load_manifest(ctx.cfg.stage_dir("sweep")) is None:
        return sec.add(Para(str(NA("the sweep stage has not run (`make sweep`, about 72 min for the "
                                   "default grid on 2 cores: docs/sweep.md)")), na=True))
    try:
        ctx.upstream["sweep"] = verify(ctx.cfg, "sweep")
    except StageInputError as err:
        return sec.add(Para(str(NA(f"the sweep artifact is not usable: {err}")), na=True))
    m = up.metrics("sweep")
    front = set(m.get("pareto") or [])
    rows = []
    for r in m.get("points") or []:
        failed = r.get("status") != "ok"
        rows.append([Code(r.get("id")) if not r.get("econt") else f"{r.get('id')} (ECON-T)",
                     num(r.get("filters"), "d"), num(r.get("weight_bits"), "d"), num(r.get("act_bits"), "d"),
                     num(r.get("latent_bits"), "d"),
                     f"FAIL: {r.get('error') or r.get('status')}" if failed else
                     ("converged" if r.get("converged") else "NOT converged"),
                     num(r.get("median_emd"), ".3f"), pct(r.get("resolution"), signed=False),
                     pct(r.get("resolution_err"), signed=False),
                     num(r.get("area_um2_sky130"), ",.0f"), num(r.get("generic_gates"), ",d"),
                     num(r.get("latency_cycles"), "d"),
                     num(sum(int(r.get(k) or 0) for k in ("n_mismatch_qkeras", "n_mismatch_csim",
                                                          "n_mismatch_cosim")), "d"),
                     "yes" if r.get("id") in front else ""])
    sec.add(Table("sweep-points", "Every encoder design of the sweep: physics quality against area "
                  "and latency", ["point", "filters", "weight bits", "act. bits", "latent bits", "status",
                                  "median EMD", "resolution", "bootstrap err.", "sky130 area (um2)",
                                  "generic gates",
                                  "latency (clk)", "mismatches", "Pareto"], rows,
                  note=f"{m.get('n_points')} points, {m.get('n_failed')} failed; mismatches: golden vs "
                       "QKeras + csim + cosim on the sampled vectors and the corner set; Pareto: on the "
                       "front of median EMD, resolution and area (all minimised); area only, no timing; "
                       "docs/sweep.md"))
    plots = figs.stage_plots(up, "sweep", ["pareto.png"])
    sec.add(plots if plots else Para(str(NA("the sweep stage saved no plots")), na=True))
    return sec


def _seu_campaign(up: Upstream, sec: Section) -> None:
    """The RTL SEU campaign (``cosim/seu.json``, :mod:`flow.cosim.seu`): a row per flavour
    and upset class."""
    rel = "seu.json"
    res = up.json("cosim", rel) if up.has("cosim", rel) else NA(
        "RTL SEU campaign not run (cosim.seu_upsets: 0, no programmable flavour, or a run older than it)")
    if not isinstance(res, dict):
        sec.add(Para(str(res if isinstance(res, NA) else NA(f"RTL SEU campaign: {rel} is not a JSON object")),
                     na=True))
        return
    fls = res.get("flavours") or {}

    def tmr(r):                   # seu.json before the pipeline hook of prog: only TMR used the hook
        return r.get("tmr", r.get("method") == "hook")

    def how(r):
        port = (f"configuration word rewritten with one bit inverted, restored {r.get('hold_clocks')} "
                "clocks later")
        hook = ("injection hook, one bit of one TMR copy" if tmr(r)
                else "injection hook, one pipeline-register bit")
        return {"hook": hook, "port": port}.get(r.get("method"), f"{port}; pipeline: {hook}")

    def lasts(r, c):
        m = c.get("method") or r.get("method")
        return ("persists until reload" if m == "port" else
                "0 (corrected)" if tmr(r) else "one wafer (next load)")
    sec.add(Para("RTL SEU campaign: random single upsets while the golden vectors stream back to back; "
                 "every output compared with its golden code. "
                 + "; ".join(f"{fl}: {r.get('injected')} upsets ({how(r)}), {r.get('corrupted_wafers')} "
                             f"corrupted wafers, seu_count {r.get('corrected')}" for fl, r in fls.items())
                 + ". Classes and method: docs/seu.md.", na=False))
    rows = []
    for fl, r in fls.items():
        for name, c in (r.get("classes") or {}).items():
            held = c.get("corrupted_fraction_while_held")
            rows.append([fl, name, num(c.get("n_bits")), num(c.get("n_upsets")),
                         num(c.get("upsets_corrupting")), num(c.get("corrupted_wafers")),
                         num(c.get("corrupted_per_upset"), ".3g"),
                         pct(held, 1, signed=False) if is_num(held) else "",
                         lasts(r, c),
                         num(c.get("corrupted_after_restore")) if c.get("corrupted_after_restore") is not None
                         else "", num(c.get("seu_count_increments"))])
    sec.add(Table("seu-campaign", "RTL SEU campaign per flavour and upset class",
                  ["flavour", "class", "bits", "upsets", "upsets corrupting output", "corrupted wafers",
                   "corrupted wafers per upset", "corrupted while held", "duration",
                   "corrupted after reload", "seu_count increments"], rows,
                  note="prog: each configuration upset is held 16 clocks (16 wafers), then its word is "
                       "rewritten; in a chip it persists until the configuration is reloaded. A pipeline "
                       "upset (test-build hook) lasts until the register loads the next wafer. "
                       "prog_tmr: pass = 0 corrupted wafers and seu_count = upsets injected."))


def seu(up: Upstream, figs: Figures) -> Section:
    """The cosim stage's RTL SEU campaign (``cosim/seu.json``, :mod:`flow.cosim.seu`), SEU
    sensitivity of the weight bits and its selective-TMR proposal
    (``cosim/seu/seu_sensitivity.json``, :mod:`flow.cosim.sensitivity`)."""
    from flow.core.captions import FILE as CAPTIONS_FILE
    from flow.core.captions import read_captions

    sec = Section("seu", "Single-event upsets: RTL campaign, weight-bit sensitivity and selective TMR "
                         "(cosim stage)")
    _seu_campaign(up, sec)
    rel = "seu/seu_sensitivity.json"
    res = up.json("cosim", rel)
    if not isinstance(res, dict):
        reason = ("not run (cosim.seu_sensitivity.enabled: false)"
                  if dig(up.config("cosim"), "seu_sensitivity", "enabled") is False
                  else res.reason if isinstance(res, NA) else f"{rel} is not a JSON object")
        return sec.add(Para(str(NA(f"weight-bit sensitivity: {reason}")), na=True))
    ref, cost = res.get("reference") or {}, res.get("cost") or {}
    med, wall = ref.get("median_emd"), cost.get("wall_s")
    sec.add(Para(f"Single upsets of the 12864-bit weight image, one bit at a time, on "
                 f"{res.get('n_wafers')} test wafers (golden encoder + decoder, exact EMD; no RTL): "
                 f"reference median EMD {f'{med:.4f}' if is_num(med) else '?'}; {cost.get('n_flips')} flips "
                 f"in {f'{wall:.0f}' if is_num(wall) else '?'} s. Method and assumptions: docs/seu.md.",
                 na=False))
    rows = []
    for c in sorted(res.get("classes", []), key=lambda c: -dig(c, "delta_median_emd", "mean")):
        d = c.get("delta_median_emd") or {}
        rows.append([c.get("label"), f"{c.get('n_measured')} / {c.get('n_bits')}",
                     num(d.get("mean"), "+.3g"), num(d.get("sem"), ".2g"),
                     f"{num(d.get('min'), '+.3g')} .. {num(d.get('max'), '+.3g')}",
                     pct(c.get("frac_latent_changed"), 1, signed=False), num(c.get("damage"), ".3g")])
    sec.add(Table("seu-classes", "Change of the median exact EMD per single upset, by bit class "
                  "(most damaging first)",
                  ["class", "bits measured / total", "mean", "std. error", "min .. max",
                   "wafers with changed latents", "damage (>= 0)"], rows))
    tmr = res.get("tmr") or {}
    no_tmr = tmr.get("damage_no_tmr")

    def cls_frac(b):
        r = dig(b, "class_level", "residual_damage")
        return r / no_tmr if is_num(r) and is_num(no_tmr) and no_tmr > 0 else None

    rows = [[pct(b.get("budget"), 0, signed=False), num(b.get("n_protected")),
             num(b.get("flop_equivalents"), ",.0f"), num(b.get("residual_damage"), ".3g"),
             pct(b.get("residual_fraction"), 1, signed=False), pct(cls_frac(b), 1, signed=False)]
            for b in tmr.get("budgets", [])]
    sec.add(Table("seu-tmr", "Selective TMR proposal: expected damage of one random upset in the weight "
                  "register left unprotected",
                  ["weight bits triplicated", "bits protected", "extra flip-flop equivalents",
                   "residual damage", "residual / no TMR (per bit)",
                   "residual / no TMR (whole classes)"], rows,
                  note=f"no TMR: {num(no_tmr, '.3g')}, full TMR: 0; a protected bit costs "
                       f"{dig(tmr, 'cost_model', 'per_protected_bit') or 'not recorded'}"))
    crel = f"seu/{CAPTIONS_FILE}"
    caps = read_captions(up.path("cosim", crel)) if up.has("cosim", crel) else {}
    plots = [figs.add_file("cosim", up.path("cosim", f"seu/{name}"), f"seu/{name}", caps.get(name))
             for name in ("seu_sensitivity_map.png", "seu_tmr_curve.png") if up.has("cosim", f"seu/{name}")]
    if plots:
        sec.add(plots)            # a list of figures is one block (a row of plots)
    return sec


def tools(up: Upstream) -> Section:
    sec = Section("tools", "Tool versions")
    seen: dict[str, dict[str, list[str]]] = {}
    for s in UPSTREAM:
        for tool, ver in (up.man(s).get("tools") or {}).items():
            seen.setdefault(tool, {}).setdefault(str(ver) if ver is not None else "", []).append(s)
    rows = []
    for tool in sorted(seen, key=str.lower):
        for ver, stages in seen[tool].items():
            where = "all stages" if len(stages) == len(UPSTREAM) else ", ".join(stages)
            rows.append([tool, Code(ver) if ver else NA("no version recorded (not found when the stage ran)"),
                         where])
    sec.add(Table("tools", "Tool versions recorded in the stage manifests", ["tool", "version", "stages"],
                  rows))
    return sec


def stages(up: Upstream) -> Section:
    sec = Section("stages", "Stage manifests")
    rows = []
    for s in [*UPSTREAM, *(x for x in ("physics", "sweep") if x in up.v)]:   # optional inputs
        man = up.man(s)
        rows.append([s, Code(up.v[s].manifest_sha256), Code(man.get("config_hash") or "?"),
                     Code(man.get("git") or "unknown"), num(man.get("wall_s"), ",.1f"),
                     man.get("started_utc") or NA("not recorded"),
                     man.get("finished_utc") or NA("not recorded"),
                     num(len(man.get("outputs") or {}))])
    sec.add(Table("stages", "Every upstream stage's manifest", ["stage", "manifest sha256", "config hash",
                                                                 "git revision", "wall s", "started (UTC)",
                                                                 "finished (UTC)", "outputs"], rows,
                  note="the report verified every manifest and output hash before reading them"))
    return sec

