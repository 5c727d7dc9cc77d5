"""``physics`` stage: electron trigger resolution per ECON-T output algorithm and eLink budget.

For every algorithm of ``physics.algorithms`` (:mod:`flow.core.algorithms`) and every
budget of ``physics.elinks``, the stage encodes the data stage's wafers into the
algorithm's bit frames, decodes them back to TC charges, clusters each event's TCs,
calibrates on the training split and measures on the test split
(:mod:`flow.core.reco`): the effective pT resolution (integrated over |eta| for
generated pT >= ``min_gen_pt``, per |eta| bin of 0.1 and per pT bin, with bootstrap
errors), the matching efficiency and the median exact EMD between each test wafer's
CALQ and its decoded charges.  Every autoencoder model of the ``autoencoder`` stage is
evaluated the same way at the budget its latent width belongs to (9 bits: 5 eLinks; the
other budgets of that model are reported as not available).  The row ``autoencoder`` is the
exported encoder at every budget of ``autoencoder.elinks``: the exported model at its own
budget and the model trained for each other budget's width (``elinks.json``), which get no
row of their own.  With
``physics.autoencoder: false`` the stage needs only the data stage (the autoencoder
stage is then not an input and is not recorded as one).

Outputs (``build/<run>/physics/``): ``results.json`` (every number), ``calibration.json``
(layer weights, per-|eta| response and threshold-sum thresholds), ``summary.csv`` (one
row per algorithm and budget), ``budget.json`` (bit accounting), ``plots/*.png`` (captions
in ``plots/captions.json``).
"""
from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import numpy as np

from flow.core import algorithms as A
from flow.core import reco as R
from flow.core.ae_model import conditions
from flow.core.captions import write_captions
from flow.core.dataset import read_split, split_file
from flow.runner.atomic import atomic_write_bytes, atomic_write_json
from flow.runner.errors import StageInputError

#: wafers per encode/decode block (bounds memory: the frames are bit arrays)
BLOCK = 20000


def _decode_blocks(fn, calq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run ``fn(block) -> (decoded, nbits)`` over blocks of wafers."""
    dec, bits = [], []
    for lo in range(0, len(calq), BLOCK):
        d, b = fn(calq[lo:lo + BLOCK], lo)
        dec.append(d)
        bits.append(b)
    if not dec:
        return np.zeros((0, calq.shape[1])), np.zeros(0, np.int64)
    return np.concatenate(dec), np.concatenate(bits)


def _evaluate(name, e, dec_train, dec_test, train, test, det, s, seed, calq_emd, log) -> dict:
    r = R.evaluate_decoded(dec_train, dec_test, train, test, det, s, seed=seed, calq_emd=calq_emd)
    res, emd = r["resolution"]["integrated"], r["median_emd"]
    log(f"physics: {name:>24s} {e} eLinks: resolution "
        f"{res['value'] if res['value'] is None else round(res['value'], 4)} "
        f"+- {res['err'] if res['err'] is None else round(res['err'], 4)}, efficiency "
        f"{r['resolution']['efficiency']['value']}, median EMD {emd['median']}")
    return r


def _paired(r: dict, ref: dict, n_boot: int, seed: int) -> dict:
    """Resolution of ``r`` over ``ref`` on the same test electrons, integrated and per
    |eta| bin (``R.ETA_EDGES``), each with its paired-bootstrap error."""
    a, b, abseta = r["_ratio"], ref["_ratio"], r["_abseta"]
    rows = []
    for lo, hi in zip(R.ETA_EDGES[:-1], R.ETA_EDGES[1:], strict=True):
        inside = (abseta >= lo) & (abseta < hi)
        q = R.paired_resolution_ratio(np.where(inside, a, np.nan), b, n_boot=n_boot, seed=seed)
        rows.append({"lo": round(float(lo), 3), "hi": round(float(hi), 3), **q})
    return {**R.paired_resolution_ratio(a, b, n_boot=n_boot, seed=seed), "vs_eta": rows}


def _reference_model(name: str, names: list[str], loss: str) -> str | None:
    """The autoencoder model trained with ``loss`` to compare ``name`` with: the same seed
    suffix when the models are per seed (``autoencoder_<loss>_seed<i>``), else the plain one."""
    seed = name.rsplit("_seed", 1)[1] if "_seed" in name else None
    want = f"autoencoder_{loss}" + (f"_seed{seed}" if seed is not None else "")
    return want if want in names else None


#: the row of the exported encoder at every eLink budget (one model per latent width)
EXPORTED = "autoencoder"


def _budget_models(ae, export_loss: str, names: list[str]) -> dict[int, tuple[str, bool]]:
    """``{eLinks: (model name, trained for that budget)}`` of the exported encoder at every
    budget the autoencoder stage produced (its ``elinks.json``): the exported compared model
    for the budget of ``latent_bits``, the model trained for the budget's width
    (``<loss>_<n>elinks``) for the others; empty without ``elinks.json`` (older artifacts:
    then there is no ``autoencoder`` row)."""
    table = (json.loads(ae.path("elinks.json").read_text())
             if "elinks.json" in ae.manifest["outputs"] else {})
    out = {}
    for n, r in table.items():
        base = f"autoencoder_{export_loss}" + (f"_{n}elinks" if r.get("trained") else "")
        cands = [f"{base}_seed{r.get('seed_index', 0)}", base]
        name = next((c for c in cands if c in names), None)
        if name is None:
            raise StageInputError(f"physics: the autoencoder stage's elinks.json lists the "
                                  f"{n}-eLink encoder, but none of the models {cands} is among its "
                                  f"outputs (got {sorted(names)}); rerun stage 'autoencoder'")
        out[int(n)] = (name, bool(r.get("trained")))
    return out


def _autoencoder_models(ctx) -> dict[str, tuple[Path, Path]]:
    """Trained models of the autoencoder stage, which becomes an upstream of this run (its
    manifest is verified here and recorded in this stage's manifest like the runner's).

    Layouts understood: ``models/<loss>/{encoder,decoder}.h5`` (name ``<loss>``) and
    ``models/<model>/seed<i>/{encoder,decoder}.h5`` (name ``<model>_seed<i>``)."""
    from flow.runner.manifest import verify

    ae = ctx.upstream.get("autoencoder") or verify(ctx.cfg, "autoencoder")
    ctx.upstream["autoencoder"] = ae
    models = {}
    for rel in sorted(ae.manifest["outputs"]):
        parts = rel.split("/")
        if parts[0] != "models" or parts[-1] != "encoder.h5" or len(parts) not in (3, 4):
            continue
        name = parts[1] if len(parts) == 3 else f"{parts[1]}_{parts[2]}"
        models[name] = (ae.path(rel), ae.path("/".join(parts[:-1] + ["decoder.h5"])))
    return models


def _ae_decoder(enc_path: Path, dec_path: Path):
    """(encoder weight codes, latent bits, Keras decoder) of one trained model."""
    from qkeras.utils import load_qmodel
    from tensorflow import keras

    from flow.core import encoder as E

    enc = load_qmodel(str(enc_path), compile=False)
    bits = int(enc.get_layer("latent").quantizer.bits)
    w = E.EncoderWeights.from_keras(enc)
    dec = keras.models.load_model(str(dec_path), compile=False)
    return w, bits, dec


def run(ctx) -> None:
    t0 = time.perf_counter()
    s = ctx.settings
    cfg = ctx.cfg
    log = print
    if cfg.data.source != "synthetic":
        raise StageInputError("physics: TC positions come from the synthetic generator's geometry; "
                              f"data.source is {cfg.data.source!r} and the split files carry no "
                              "per-TC positions (docs/physics.md, 'Limits'); expected "
                              "data.source: synthetic")
    from flow.core.generator import detector_from

    det = detector_from(cfg.data)
    drop = cfg.data.drop
    data = ctx.upstream["data"]
    train = R.events_subset(read_split(data.path(split_file("train"))), s.max_train_events)
    test = R.events_subset(read_split(data.path(split_file("test"))), s.max_test_events)
    for name, sp in (("train", train), ("test", test)):
        if "gen_phi" not in sp:
            raise StageInputError(f"physics: the data stage's {name}.npz has no gen_phi (written "
                                  "before the data stage recorded it); rerun `make data`")
        if len(sp["event"]) == 0:
            raise StageInputError(f"physics: the {name} split has no wafers; expected some")
    calq_tr = train["calq"].astype(np.int64)
    calq_te = test["calq"].astype(np.int64)
    calq_emd = calq_te[:s.emd_wafers] if s.emd_wafers else calq_te[:0]
    elinks = sorted(set(s.elinks))
    seed = ctx.seed
    results: dict[str, dict] = {}
    bits: dict[str, dict] = {}
    thresholds: dict[str, float] = {}
    unavailable: dict[str, dict] = {}

    for alg in s.algorithms:
        results[alg], bits[alg] = {}, {}
        for e in elinks:
            thr = None
            if alg == "threshold_sum":
                t_mipt = A.choose_threshold(calq_tr, e, train["eta"], max_truncated=s.ts_max_truncated)
                thresholds[str(e)] = t_mipt
                thr = {"train": A.threshold_counts(t_mipt, train["eta"]),
                       "test": A.threshold_counts(t_mipt, test["eta"])}
            if alg == "uncompressed" and e != elinks[0]:     # budget-independent: reuse
                results[alg][str(e)] = results[alg][str(elinks[0])]
                bits[alg][str(e)] = bits[alg][str(elinks[0])]
                continue
            decoded, used = {}, {}
            for part, c in (("train", calq_tr), ("test", calq_te)):
                def fn(block, lo, part=part, e=e, alg=alg, thr=thr):
                    th = thr[part][lo:lo + len(block)] if alg == "threshold_sum" else None
                    fr = A.encode(alg, block, e, drop=drop, threshold=th)
                    return A.decode(alg, fr, e, drop=drop), fr.nbits
                decoded[part], used[part] = _decode_blocks(fn, c)
            worst = int(max(used["train"].max(initial=0), used["test"].max(initial=0)))
            if alg != "uncompressed" and worst > A.budget_bits(e):
                raise AssertionError(f"{alg} used {worst} bits at {e} eLinks (a bug)")
            bits[alg][str(e)] = A.frame_bits(alg, e)
            r = _evaluate(alg, e, decoded["train"], decoded["test"], train, test, det, s, seed,
                          calq_emd, log)
            r["bits_used"] = {"max": worst, "mean": round(float(used["test"].mean()), 2)}
            if alg == "threshold_sum":
                n_sent = (calq_te >= thr["test"][:, None]).sum(1)
                r["threshold_mipt"] = thresholds[str(e)]
                r["truncated_fraction_test"] = float(np.mean(n_sent > A.ts_max_tcs(e)))
            results[alg][str(e)] = r

    ae_names = []
    if s.autoencoder:
        inv = {b: e for e, b in A.AE_LATENT_BITS.items()}
        for loss, (enc_p, dec_p) in _autoencoder_models(ctx).items():
            from flow.core import encoder as E

            name = f"autoencoder_{loss}"
            ae_names.append(name)
            w, lbits, dec = _ae_decoder(enc_p, dec_p)
            e_model = inv.get(lbits)
            n_side = int(dec.input_shape[-1]) - A.AE_N_LATENT
            cond_fn = conditions if n_side > 0 else None
            results[name], bits[name], unavailable[name] = {}, {}, {}
            for e in elinks:
                bits[name][str(e)] = A.ae_frame_bits(e)
                if e != e_model:
                    unavailable[name][str(e)] = (
                        f"the {loss} model has {lbits}-bit latents; {e} eLinks need "
                        f"a model trained with autoencoder.latent_bits={A.AE_LATENT_BITS[e]}")
                    results[name][str(e)] = None
                    continue
                decoded = {}
                for part, sp in (("train", train), ("test", test)):
                    def fn(block, lo, sp=sp, e=e, w=w, lbits=lbits, dec=dec, cond_fn=cond_fn):
                        sl = slice(lo, lo + len(block))
                        lat = E.golden_encode(sp["aein"][sl], w, lbits)
                        fr = A.encode_ae_frame(lat, sp["sum_code"][sl], e)
                        lat2, s2 = A.decode_ae_frame(fr, e)
                        cond = (None if cond_fn is None
                                else cond_fn({k: v[sl] for k, v in sp.items()}))
                        return A.decode_autoencoder(lat2, s2, dec, e, conditions=cond), fr.nbits
                    decoded[part], _ = _decode_blocks(fn, sp["calq"])
                results[name][str(e)] = _evaluate(name, e, decoded["train"], decoded["test"],
                                                  train, test, det, s, seed, calq_emd, log)
                results[name][str(e)]["latent_bits"] = lbits
                results[name][str(e)]["bits_used"] = {"max": A.ae_frame_bits(e),
                                                      "mean": float(A.ae_frame_bits(e))}
            if e_model is None:
                log(f"physics: {name}: {lbits}-bit latents fit no eLink budget of "
                    f"{A.AE_LATENT_BITS}; reported as not available")

    budget = (_budget_models(ctx.upstream["autoencoder"], ctx.cfg.autoencoder.export_loss, ae_names)
              if s.autoencoder and ae_names else {})
    composite = {e: n for e, (n, _) in budget.items()}
    if composite:
        hidden = {n for n, trained in budget.values() if trained}
        results[EXPORTED] = {str(e): results[composite[e]][str(e)] if e in composite else None
                             for e in elinks}
        bits[EXPORTED] = {str(e): A.ae_frame_bits(e) for e in elinks}
        unavailable[EXPORTED] = {
            str(e): f"no encoder for {e} eLinks: add {e} to autoencoder.elinks"
            for e in elinks if e not in composite}
        for h in hidden:          # a narrower budget's model: shown as the exported encoder's row
            for d in (results, bits, unavailable):
                d.pop(h, None)
        ae_names = [EXPORTED] + [n for n in ae_names if n not in hidden]
    algorithms = list(s.algorithms) + ae_names
    over_unc, over_unc_eta, over_wmse = {}, {}, {}
    for a in algorithms:
        over_unc[a], over_unc_eta[a] = {}, {}
        wm = _reference_model(a, ae_names, "weighted_mse") if a in ae_names else None
        if wm is not None and wm != a:
            over_wmse[a] = {}
        for e in elinks:
            r, u = results[a][str(e)], (results.get("uncompressed") or {}).get(str(e))
            q = None if r is None or u is None else _paired(r, u, s.n_boot, seed)
            over_unc[a][str(e)] = None if q is None else {k: q[k] for k in ("value", "err", "n")}
            over_unc_eta[a][str(e)] = None if q is None else q["vs_eta"]
            if r is not None:
                r["resolution_over_uncompressed"] = q
            if a in over_wmse:
                w = results[wm][str(e)]
                over_wmse[a][str(e)] = None if r is None or w is None else _paired(r, w, s.n_boot, seed)
                if r is not None:
                    r["resolution_over_weighted_mse"] = over_wmse[a][str(e)]
    for a in algorithms:
        for e in elinks:
            if results[a][str(e)] is not None:
                results[a][str(e)].pop("_ratio", None)
                results[a][str(e)].pop("_abseta", None)
    resolution = {a: {str(e): (None if results[a][str(e)] is None else
                               {k: results[a][str(e)]["resolution"]["integrated"][k]
                                for k in ("value", "err")})
                      for e in elinks} for a in algorithms}
    vs_eta = {a: {str(e): (None if results[a][str(e)] is None else
                           [{k: row[k] for k in ("lo", "hi", "value", "err", "n")}
                            for row in results[a][str(e)]["resolution"]["vs_eta"]])
                  for e in elinks} for a in algorithms}
    med_emd = {a: {str(e): (None if results[a][str(e)] is None
                            else results[a][str(e)]["median_emd"]["median"]) for e in elinks}
               for a in algorithms}
    eff = {a: {str(e): (None if results[a][str(e)] is None
                        else results[a][str(e)]["resolution"]["efficiency"]["value"])
               for e in elinks} for a in algorithms}
    ref = results[s.algorithms[0]][str(elinks[0])]
    n_electrons = ref["resolution"]["efficiency"]["electrons"] if ref else 0

    out = Path(ctx.out)
    atomic_write_json(out / "results.json", {"results": results, "unavailable": unavailable,
                                             "algorithms": algorithms, "elinks": elinks})
    atomic_write_json(out / "calibration.json", {
        "threshold_sum_mipt": thresholds,
        "calibration": {a: {e: (r["calibration"] if r else None) for e, r in v.items()}
                        for a, v in results.items()}})
    atomic_write_json(out / "budget.json", {"bits_per_elink": A.BITS_PER_ELINK,
                                            "table": A.budget_table()})
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(["algorithm", "elinks", "bits_per_bx", "resolution", "resolution_err",
                 "over_uncompressed", "over_uncompressed_err", "efficiency", "median_emd", "note"])
    for a in algorithms:
        for e in elinks:
            r = resolution[a][str(e)]
            q = over_unc[a][str(e)]
            wr.writerow([a, e, bits[a][str(e)], None if r is None else r["value"],
                         None if r is None else r["err"], None if q is None else q["value"],
                         None if q is None else q["err"], eff[a][str(e)], med_emd[a][str(e)],
                         unavailable.get(a, {}).get(str(e), "")])
    atomic_write_bytes(out / "summary.csv", buf.getvalue().encode())
    plots = make_plots(out / "plots", algorithms, elinks, results)

    ctx.metrics.update({
        "algorithms": algorithms, "elinks": elinks, "resolution": resolution,
        "resolution_vs_eta": vs_eta, "bits_per_bx": bits, "n_electrons": n_electrons,
        "median_emd": med_emd, "efficiency": eff, "unavailable": unavailable,
        "resolution_over_uncompressed": over_unc,
        "resolution_over_uncompressed_vs_eta": over_unc_eta,
        "resolution_over_weighted_mse": over_wmse,
        "threshold_sum_mipt": thresholds, "min_gen_pt": s.min_gen_pt,
        "autoencoder_models": {str(e): n for e, n in sorted(composite.items())},
        "train_events": int(np.unique(train["event"]).size),
        "test_events": int(np.unique(test["event"]).size),
        "emd_wafers": int(len(calq_emd)), "plots": plots,
    })
    ctx.add_summary(f"test electrons (gen pT >= {s.min_gen_pt:g} GeV)", n_electrons)
    for a in algorithms:
        cells = []
        for e in elinks:
            r = resolution[a][str(e)]
            cells.append(f"{e}:" + ("n/a" if r is None or r["value"] is None
                                    else f"{100 * r['value']:.2f}%"))
        ctx.add_summary(f"resolution {a}", " ".join(cells))
    ctx.add_summary("wall", f"{time.perf_counter() - t0:.1f} s")


# ------------------------------------------------------------------ plots
def caption(name: str) -> str:
    """The caption of one of this stage's plots (written to ``plots/captions.json``)."""
    if name == "resolution_emd_vs_elinks.png":
        return ("Electron resolution (integrated, generated pT above the cut) and median exact EMD vs "
                "eLink budget")
    if name == "resolution_over_weighted_mse_vs_eta.png":
        return ("Electron resolution of each autoencoder relative to the weighted-MSE autoencoder "
                "(same seed) vs |eta|, on the same test electrons with a paired bootstrap error "
                "(the paper's Fig. 7 comparison)")
    e = name.removeprefix("resolution_vs_eta_").removesuffix("elinks.png")
    return (f"Electron effective resolution vs |eta| at {e} eLinks, and its ratio to uncompressed "
            "CALQ on the same electrons (paired bootstrap errors)")


def _duplicate(results: dict, a: str, e: int) -> bool:
    """Whether ``a`` is the exported encoder's row and its result at ``e`` eLinks is another
    row's (the compared model's budget): drawn once, under the model's own name."""
    r = results[a][str(e)]
    return a == EXPORTED and r is not None and any(b != a and results[b][str(e)] is r for b in results)


def make_plots(plot_dir: Path, algorithms: list[str], elinks: list[int], results: dict) -> list[str]:
    """Resolution vs |eta| per budget (the paper's Fig. 7, plus the ratio to the
    uncompressed reference), and integrated resolution and median EMD vs budget;
    their captions in ``plots/captions.json``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    plot_dir.mkdir(parents=True, exist_ok=True)
    written = []
    ref = results.get("uncompressed")
    colors = {a: f"C{i % 10}" for i, a in enumerate(algorithms)}
    ratio_lim = (0.8, 1.8)
    for e in elinks:
        fig = Figure(figsize=(8, 8))
        FigureCanvasAgg(fig)
        ax, axr = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
        off_scale = []
        for a in algorithms:
            r = results[a][str(e)]
            if r is None or _duplicate(results, a, e):
                continue
            rows = r["resolution"]["vs_eta"]
            x = np.asarray([(q["lo"] + q["hi"]) / 2 for q in rows])
            y = np.asarray([np.nan if q["value"] is None else q["value"] for q in rows])
            dy = np.asarray([np.nan if q["err"] is None else q["err"] for q in rows])
            ax.errorbar(x, y, yerr=dy, marker="o", ms=4, capsize=2, label=a, color=colors[a])
            q = r.get("resolution_over_uncompressed")
            if ref is not None and a != "uncompressed" and q is not None:
                qy = np.asarray([np.nan if p["value"] is None else p["value"] for p in q["vs_eta"]])
                qe = np.asarray([np.nan if p["err"] is None else p["err"] for p in q["vs_eta"]])
                if np.nanmax(qy, initial=0) > ratio_lim[1]:
                    off_scale.append(f"{a} (up to {np.nanmax(qy):.1f})")
                axr.errorbar(x, np.clip(qy, *ratio_lim), yerr=np.where(qy > ratio_lim[1], np.nan, qe),
                             marker="o", ms=4, capsize=2, color=colors[a])
        ax.set_yscale("log")
        ax.set_ylabel("effective resolution (68 % half-width / mean)")
        ax.set_title(f"{e} eLinks ({A.budget_bits(e)} bits per BX)", fontsize="medium")
        ax.legend(fontsize="small", frameon=False)
        axr.axhline(1.0, color="k", lw=0.8)
        axr.set_ylim(*ratio_lim)
        axr.set_ylabel("ratio to uncompressed\n(same electrons)")
        axr.set_xlabel(r"generated electron $|\eta|$")
        if off_scale:
            axr.text(0.01, 0.95, "clipped: " + ", ".join(off_scale), transform=axr.transAxes,
                     va="top", fontsize="small")
        name = f"resolution_vs_eta_{e}elinks.png"
        fig.savefig(plot_dir / name, dpi=80, metadata={"Software": None})
        written.append(name)
    fig = Figure(figsize=(12, 5))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    for a in algorithms:
        xs, ys, es, ms = [], [], [], []
        for e in elinks:
            r = results[a][str(e)]
            if r is None or r["resolution"]["integrated"]["value"] is None:
                continue
            xs.append(e)
            ys.append(r["resolution"]["integrated"]["value"])
            es.append(r["resolution"]["integrated"]["err"] or 0.0)
            ms.append(np.nan if r["median_emd"]["median"] is None else r["median_emd"]["median"])
        if xs:
            ax1.errorbar(xs, ys, yerr=es, marker="o", capsize=2, label=a, color=colors[a])
            ax2.plot(xs, ms, marker="o", label=a, color=colors[a])
    ax1.set_yscale("log")
    for ax in (ax1, ax2):
        ax.set_xticks(elinks)
    ax1.set_xlabel("eLinks")
    ax1.set_ylabel("effective resolution")
    ax2.set_xlabel("eLinks")
    ax2.set_ylabel("median exact EMD (decoded vs CALQ)")
    ax1.legend(fontsize="small", frameon=False)
    name = "resolution_emd_vs_elinks.png"
    fig.savefig(plot_dir / name, dpi=80, metadata={"Software": None})
    written.append(name)
    pairs = [(a, e) for a in algorithms for e in elinks
             if (results[a][str(e)] or {}).get("resolution_over_weighted_mse")
             and not _duplicate(results, a, e)]
    if pairs:
        fig = Figure(figsize=(8, 5))
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        for a, e in pairs:
            q = results[a][str(e)]["resolution_over_weighted_mse"]["vs_eta"]
            x = np.asarray([(p["lo"] + p["hi"]) / 2 for p in q])
            y = np.asarray([np.nan if p["value"] is None else p["value"] for p in q])
            dy = np.asarray([np.nan if p["err"] is None else p["err"] for p in q])
            ax.errorbar(x, y, yerr=dy, marker="o", ms=4, capsize=2, color=colors[a],
                        label=f"{a.removeprefix('autoencoder_')} ({e} eLinks)")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xlabel(r"generated electron $|\eta|$")
        ax.set_ylabel("resolution / weighted-MSE autoencoder's (same electrons)")
        ax.legend(fontsize="small", frameon=False)
        name = "resolution_over_weighted_mse_vs_eta.png"
        fig.savefig(plot_dir / name, dpi=80, metadata={"Software": None})
        written.append(name)
    write_captions(plot_dir, {n: caption(n) for n in written})
    return written


def summary_table(man: dict) -> list[list]:
    """Rows (algorithm, eLinks, bits, resolution +- err, efficiency, median EMD) from a
    physics manifest's metrics (for reports)."""
    m = man["metrics"]
    rows = []
    for a in m["algorithms"]:
        for e in m["elinks"]:
            r = m["resolution"][a][str(e)]
            rows.append([a, e, m["bits_per_bx"][a][str(e)],
                         "n/a" if r is None or r["value"] is None
                         else f"{100 * r['value']:.2f} +- {100 * (r['err'] or 0):.2f} %",
                         m["efficiency"][a][str(e)], m["median_emd"][a][str(e)]])
    return rows


def load_results(path: Path) -> dict:
    return json.loads(Path(path).read_text())
