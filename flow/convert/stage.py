"""``convert`` stage: hls4ml projects of the encoder and the golden test vectors (issue #7).

``run(ctx)`` writes into ``build/<run>/convert/`` (see ``docs/convert_csim.md``):

* ``vectors.npz``: golden vectors, the contract shared with csim, cosim and
  handoff (:mod:`flow.core.vectors`: arrays, dtypes, the one writer and reader, and
  :func:`flow.core.vectors.golden`, front end then encoder, for every expected
  value).  Corner vectors come first, then the test-set wafers.
* ``vectors_regs<k>.npz`` (``convert.n_alt_registers``): the same layout with
  random CALVALUE registers and the other ``drop``;
* ``vectors_meta.json``: files, counts per kind, formats, registers, weight
  image sha256, test wafers skipped (no words);
* ``hls_projects/<backend>/``: one hls4ml project per backend, with our front
  end, ``econt_top`` wrapper, csim testbench and a README;
* ``projects.json``: per backend the project path, layer precisions, timings;
* ``logs/convert_<backend>.log``: the hls4ml child process output;
* per other eLink budget ``n`` the autoencoder exported (``autoencoder.elinks``):
  ``elinks/<n>/vectors.npz`` and ``elinks/<n>/hls_projects/<backend>/`` for that
  budget's encoder and latent width, listed in ``elinks.json``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from flow.core import encoder as E
from flow.core.dataset import read_split, split_file
from flow.core.encoder_file import ELINK_DIR, ELINKS_JSON, budget_encoders, load_encoder
from flow.core.frontend import CAL_BITS, CAL_UNITY, CALQ_BITS, FrontEnd
from flow.core.geometry import N_TC, to_8x8
from flow.core.hls import BACKENDS, convert_backend, finish_project
from flow.core.vectors import KIND, KIND_NAMES, MAX_WORD, VECTOR_DTYPES, golden_vectors, write_vectors
from flow.runner.atomic import atomic_write_json
from flow.runner.errors import FlowError, MismatchError, StageInputError

#: at most this fraction of cells is hit in a random sparse wafer
SPARSE_MAX_OCCUPANCY = 0.3
#: CALQ sums the ``sum_boundary`` vectors aim at: around 2^22, where the converter's
#: normalisation shift saturates at 21 (docs/reference.md section 4)
BOUNDARY_SUMS = ((1 << CALQ_BITS) - 1, 1 << CALQ_BITS, (1 << CALQ_BITS) + 1)
#: cells the boundary search tunes exactly (two pairs of 128 x 128 word combinations)
_TUNE_CELLS = 4


# ------------------------------------------------------------------ vectors
def corner_words(rng: np.random.Generator, *, n_random: int, n_sparse: int,
                 onehot_words=None) -> tuple[np.ndarray, np.ndarray]:
    """The corner set: ``(words uint8 (M, 48), kind uint8 (M,))``.

    all zero (1); one hot cell at each of the 48 positions for each word value
    (``onehot_words``, default 1..127); all cells at 127 (1); all cells at the
    same word 1..126 (``uniform``, 126); ``n_random`` wafers of uniform words
    0..127; ``n_sparse`` sparse wafers (occupancy uniform in [0, 30 %), hit
    cells uniform 1..127).
    """
    ow = np.arange(1, MAX_WORD + 1) if onehot_words is None else np.asarray(onehot_words, dtype=np.int64)
    if ow.size and (ow.min() < 1 or ow.max() > MAX_WORD):
        raise FlowError(f"convert.onehot_words: expected word values in 1..{MAX_WORD}, got {ow.tolist()}")
    parts: list[tuple[str, np.ndarray]] = [("all_zero", np.zeros((1, N_TC), dtype=np.int64))]
    onehot = np.zeros((ow.size, N_TC, N_TC), dtype=np.int64)
    onehot[:, np.arange(N_TC), np.arange(N_TC)] = ow[:, None]
    parts.append(("one_hot", onehot.reshape(-1, N_TC)))
    parts.append(("all_max", np.full((1, N_TC), MAX_WORD, dtype=np.int64)))
    parts.append(("uniform", np.repeat(np.arange(1, MAX_WORD)[:, None], N_TC, axis=1)))
    parts.append(("random_full", rng.integers(0, MAX_WORD + 1, size=(n_random, N_TC))))
    occ = rng.random((n_sparse, 1)) * SPARSE_MAX_OCCUPANCY
    hit = rng.random((n_sparse, N_TC)) < occ
    parts.append(("random_sparse", rng.integers(1, MAX_WORD + 1, size=(n_sparse, N_TC)) * hit))
    words = np.concatenate([p for _, p in parts]).astype(np.uint8)
    kind = np.concatenate([np.full(len(p), KIND[k], dtype=np.uint8) for k, p in parts])
    return words, kind


def _calq_table(fe: FrontEnd) -> np.ndarray:
    """CALQ of every word value in every cell under ``fe``'s registers: ``(48, 128)``,
    non-decreasing along the word axis (decode and calibration are monotone)."""
    every_word = np.repeat(np.arange(MAX_WORD + 1)[:, None], N_TC, axis=1)   # row w: all cells at w
    return fe.calq(every_word).T


def _greedy(table: np.ndarray, goal: int) -> tuple[np.ndarray, int]:
    """Words for the cells of ``table`` with the largest CALQ sum <= ``goal`` a cell-by-cell
    greedy finds (each cell as high as the rest at word 0 allows)."""
    n = len(table)
    rest_min = np.concatenate([np.cumsum(table[::-1, 0])[::-1], [0]])
    words = np.zeros(n, dtype=np.int64)
    acc = 0
    for t in range(n):
        room = goal - acc - rest_min[t + 1]
        w = int(np.searchsorted(table[t], room, side="right")) - 1
        words[t] = max(w, 0)
        acc += int(table[t, words[t]])
    return words, acc


def _closest_pair_sums(a: np.ndarray, b: np.ndarray, r: int) -> tuple[int, int, int, int]:
    """Among all ``a[i] + b[j]``: (i, j) of the largest sum <= r and (i, j) of the smallest
    sum >= r (-1 where none exists)."""
    order = np.argsort(b, kind="stable")
    bs = b[order]
    j_lo = np.searchsorted(bs, r - a, side="right") - 1          # largest b <= r - a
    j_hi = np.searchsorted(bs, r - a, side="left")               # smallest b >= r - a
    lo = np.where(j_lo >= 0, a + bs[np.maximum(j_lo, 0)], -1)
    hi = np.where(j_hi < len(bs), a + bs[np.minimum(j_hi, len(bs) - 1)], np.iinfo(np.int64).max)
    il, ih = int(np.argmax(lo)), int(np.argmin(hi))
    below = (il, int(order[j_lo[il]])) if lo[il] >= 0 else (-1, -1)
    above = (ih, int(order[j_hi[ih]])) if hi[ih] < np.iinfo(np.int64).max else (-1, -1)
    return (*below, *above)


def boundary_words(fe: FrontEnd, targets=BOUNDARY_SUMS) -> np.ndarray:
    """Wafers whose CALQ sum under ``fe``'s registers is as close to each target as the
    registers allow: for every target the largest reachable sum <= it and the smallest
    >= it (one wafer when the target itself is reachable), distinct rows, ``(M, 48)``.

    44 cells are filled greedily up to the target minus a margin; the last four cells
    then hit the remainder by a meet-in-the-middle search over two pairs of cells
    (128^2 word pairs each).  With the default registers (drop 3, unity calibration)
    every CALQ is a multiple of 4, so 2^22 - 1 and 2^22 + 1 are not reachable and the
    nearest sums on either side are used instead.
    """
    table = _calq_table(fe)
    head, tail = table[:-_TUNE_CELLS], table[-_TUNE_CELLS:]
    pair_a = (tail[0][:, None] + tail[1][None, :]).ravel()
    pair_b = (tail[2][:, None] + tail[3][None, :]).ravel()
    tail_min, tail_max = int(tail[:, 0].sum()), int(tail[:, -1].sum())
    rows: list[np.ndarray] = []
    for target in targets:
        best_lo, best_hi = None, None          # (sum, words)
        for margin in (tail_min + 2_000, tail_min + 20_000, tail_min + 200_000, tail_max):
            hw, hs = _greedy(head, int(target) - margin)
            ia, ja, ib, jb = _closest_pair_sums(pair_a, pair_b, int(target) - hs)
            for i, j, side in ((ia, ja, "lo"), (ib, jb, "hi")):
                if i < 0:
                    continue
                tw = np.array([i // (MAX_WORD + 1), i % (MAX_WORD + 1), j // (MAX_WORD + 1),
                               j % (MAX_WORD + 1)])
                total = hs + int(pair_a[i] + pair_b[j])
                cand = (total, np.concatenate([hw, tw]))
                if side == "lo" and total <= target and (best_lo is None or total > best_lo[0]):
                    best_lo = cand
                if side == "hi" and total >= target and (best_hi is None or total < best_hi[0]):
                    best_hi = cand
            if best_lo is not None and best_lo[0] == target:
                break
        rows += [c[1] for c in (best_lo, best_hi) if c is not None]
    if not rows:
        return np.zeros((0, N_TC), dtype=np.uint8)
    return np.unique(np.stack(rows), axis=0).astype(np.uint8)


def _counts(kind: np.ndarray) -> dict[str, int]:
    return {name: int(np.sum(kind == i)) for i, name in enumerate(KIND_NAMES)}


def _data_registers(data_manifest: dict) -> tuple[int, np.ndarray]:
    d = (data_manifest.get("config") or {}).get("data") or {}
    drop = int(d.get("drop", 3))
    cal = int(d.get("calvalue", CAL_UNITY))
    return drop, np.full(N_TC, cal, dtype=np.uint16)


def test_set_words(test: dict[str, np.ndarray], fe: FrontEnd, cap: int) -> tuple[np.ndarray, dict]:
    """Words of the test-set wafers usable as vectors, with a consistency check against the
    data stage's own ``aein`` / ``sum_code`` (computed by the same front end)."""
    words = test["words"]
    ok = np.all(words <= MAX_WORD, axis=1)        # 255: the ntuple had no word for the cell
    idx = np.flatnonzero(ok)
    if cap:
        idx = idx[:cap]
    w = words[idx]
    info = {"test_wafers": int(len(words)), "used": int(len(idx)),
            "skipped_no_words": int((~ok).sum()), "capped": int(ok.sum() - len(idx))}
    if len(idx):
        aein, s = fe(w)
        bad = np.flatnonzero(np.any(aein != test["aein"][idx], axis=1) | (s != test["sum_code"][idx]))
        if len(bad):
            raise MismatchError(f"the data stage's aein/sum_code differ from flow.core.frontend.FrontEnd on "
                                f"{len(bad)} of {len(idx)} test wafers (first rows {idx[bad[:5]].tolist()}): "
                                "the data artifact and the front end model disagree; rerun `make data`")
    return w, info


def build_vector_sets(settings, weights: E.EncoderWeights, latent_bits: int, test: dict | None,
                      drop: int, calvalues: np.ndarray, seed: int) -> tuple[dict, dict]:
    """All vector files: ``{file name: arrays}`` and the meta information."""
    rng = np.random.default_rng(seed)
    fe = FrontEnd(drop=drop, calvalues=tuple(int(c) for c in calvalues))
    cw, ck = corner_words(rng, n_random=settings.n_random, n_sparse=settings.n_sparse,
                          onehot_words=settings.onehot_words)
    bw = boundary_words(fe)
    cw = np.concatenate([cw, bw])
    ck = np.concatenate([ck, np.full(len(bw), KIND["sum_boundary"], dtype=np.uint8)])
    if test is not None:
        tw, tinfo = test_set_words(test, fe, settings.max_test_wafers)
    else:
        tw, tinfo = np.zeros((0, N_TC), dtype=np.uint8), {"test_wafers": 0, "used": 0}
    words = np.concatenate([cw, tw])
    kind = np.concatenate([ck, np.full(len(tw), KIND["test_wafer"], dtype=np.uint8)])
    sets = {"vectors.npz": golden_vectors(words, kind, weights, drop=drop, calvalues=calvalues,
                                          latent_bits=latent_bits)}
    meta_files = {"vectors.npz": {"n": int(len(words)), "drop": drop, "calvalues": calvalues.tolist(),
                                  "counts": _counts(kind)}}
    other_drop = 1 if drop == 3 else 3
    for k in range(1, settings.n_alt_registers + 1):
        r = np.random.default_rng([seed, k])
        cal = r.integers(0, 1 << CAL_BITS, size=N_TC).astype(np.uint16)
        cal[:3] = (0, (1 << CAL_BITS) - 1, CAL_UNITY)     # extremes always present
        d = other_drop if k % 2 else drop
        base = ck != KIND["random_full"]
        base &= ck != KIND["random_sparse"]
        base &= ck != KIND["sum_boundary"]            # recomputed for these registers
        abw = boundary_words(FrontEnd(drop=d, calvalues=tuple(int(c) for c in cal)))
        fixed_w = np.concatenate([cw[base], abw])
        fixed_k = np.concatenate([ck[base], np.full(len(abw), KIND["sum_boundary"], dtype=np.uint8)])
        budget = max(settings.alt_max_vectors - len(fixed_w), 0)
        pick = []
        pools = ((KIND["random_full"], cw[ck == KIND["random_full"]]),
                 (KIND["random_sparse"], cw[ck == KIND["random_sparse"]]), (KIND["test_wafer"], tw))
        for j, (kk, pool) in enumerate(pools):     # the rest of the budget, shared fairly
            m = min(len(pool), budget // (len(pools) - j))
            budget -= m
            pick.append((np.full(m, kk, dtype=np.uint8), pool[:m]))
        aw = np.concatenate([fixed_w, *[p for _, p in pick]])[:settings.alt_max_vectors]
        ak = np.concatenate([fixed_k, *[q for q, _ in pick]])[:settings.alt_max_vectors]
        name = f"vectors_regs{k}.npz"
        sets[name] = golden_vectors(aw, ak, weights, drop=d, calvalues=cal, latent_bits=latent_bits)
        meta_files[name] = {"n": int(len(aw)), "drop": d, "calvalues": cal.tolist(), "counts": _counts(ak)}
    meta = {"files": meta_files, "test_set": tinfo, "kind_names": list(KIND_NAMES)}
    return sets, meta


def _formats(latent_bits: int, arch: E.EncoderArch = E.ECONT_ARCH) -> dict[str, str]:
    return {"word": "uint7 (4-bit exponent, 3-bit mantissa)",
            "calvalue": "uint12 (11 fractional bits, 2048 = 1.0)",
            "aein": E.INPUT_FMT.to_ap_string(), "weights": arch.weight_fmt.to_ap_string(),
            "conv_act": arch.conv_act_fmt.to_ap_string(),
            "latent": E.latent_format(latent_bits).to_ap_string(),
            "sum_code": "uint9 (5-bit exponent, 4-bit mantissa)"}


# ----------------------------------------------------------------- inputs
def load_weights(ae) -> tuple[E.EncoderWeights, int, str]:
    """The exported encoder of the autoencoder stage (:func:`flow.core.encoder_file.load_encoder`:
    weight codes and their architecture, latent width, image sha256), cross-checked with
    ``weights.npz``."""
    enc = load_encoder(ae)
    w = enc.weights
    if "weights.npz" in ae.manifest["outputs"]:
        with np.load(ae.path("weights.npz")) as z:
            other = E.EncoderWeights(**{k: z[k] for k in ("conv_w", "conv_b", "dense_w", "dense_b")},
                                     arch=w.arch)
        if np.any(other.to_vector() != w.to_vector()):
            raise MismatchError(f"{ae.path('weights.npz')} and {enc.weights_path} hold different weight "
                                "codes; rerun `make autoencoder`")
    return w, enc.latent_bits, enc.weights_sha256


def _tb_arrays(v: dict[str, np.ndarray], n: int, latent_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """hls4ml tb_data: AEin values as 8x8x1 images and latent values, for the first n vectors."""
    x = to_8x8(v["aein"][:n].astype(np.int64)).astype(np.float64) * E.INPUT_FMT.lsb
    y = v["latent"][:n].astype(np.float64) * E.latent_format(latent_bits).lsb
    return x[..., None], y


def _convert_all(ctx, ae, tb, latent_bits: int, weights_sha: str,
                 arch: E.EncoderArch) -> tuple[dict, dict]:
    """One hls4ml project per configured backend; returns (projects info, times)."""
    s, out = ctx.settings, ctx.out
    projects, times = {}, {}
    for backend in dict.fromkeys(s.backends):
        info = convert_backend(backend, model=ae.path("encoder.h5"), weights_image=ae.path("weights.bin"),
                               projects_dir=out / "hls_projects", settings=s, latent_bits=latent_bits,
                               log=out / "logs" / f"convert_{backend}.log", tb=tb, arch=arch)
        prj = out / "hls_projects" / backend
        finish_project(prj, backend, info, s, latent_bits, weights_sha, "-O2")
        times[backend] = info["wall_s"]
        projects[backend] = {"path": f"hls_projects/{backend}", "latent_bits": latent_bits,
                             "layers": info["layers"], "hls4ml": info["hls4ml"],
                             "convert_s": info["wall_s"]}
    return projects, times


# -------------------------------------------------------------------- stage
def run(ctx) -> None:
    s = ctx.settings
    out: Path = ctx.out
    ae, data = ctx.upstream["autoencoder"], ctx.upstream["data"]
    weights, latent_bits, weights_sha = load_weights(ae)
    drop, calvalues = _data_registers(data.manifest)

    t0 = time.perf_counter()
    test = read_split(data.path(split_file("test")))
    sets, meta = build_vector_sets(s, weights, latent_bits, test, drop, calvalues, ctx.seed)
    for name, arrays in sets.items():
        write_vectors(out / name, arrays)
    t_vec = time.perf_counter() - t0
    n_vec = {k: int(len(v["words"])) for k, v in sets.items()}
    meta.update({"formats": _formats(latent_bits, weights.arch), "latent_bits": latent_bits,
                 "weights_sha256": weights_sha, "weights_file": "autoencoder/weights.bin",
                 "contract": {k: np.dtype(t).name for k, t in VECTOR_DTYPES.items()},
                 "order": "corner vectors first (kinds 1..7), then test-set wafers (kind 0) in file order",
                 "golden": "flow.core.frontend.FrontEnd then flow.core.encoder.golden_encode"})
    atomic_write_json(out / "vectors_meta.json", meta)

    main = sets["vectors.npz"]
    tb = _tb_arrays(main, s.tb_vectors, latent_bits) if s.tb_vectors else None
    # on failure the runner keeps logs/ in build/<run>/convert.failed/
    projects, times = _convert_all(ctx, ae, tb, latent_bits, weights_sha, weights.arch)
    atomic_write_json(out / "projects.json", {"projects": projects, "weights_sha256": weights_sha})
    budgets = _convert_budgets(ctx, ae, main, drop, calvalues)

    ctx.metrics.update({"n_vectors": n_vec, "counts": meta["files"]["vectors.npz"]["counts"],
                        "test_set": meta["test_set"], "vectors_s": round(t_vec, 3),
                        "convert_s": times, "latent_bits": latent_bits, "backends": list(projects)})
    if budgets:
        ctx.metrics["elinks"] = budgets
    ctx.add_summary("golden vectors", ", ".join(f"{k}: {v}" for k, v in n_vec.items()))
    ctx.add_summary("test-set wafers", f"{meta['test_set']['used']} of {meta['test_set']['test_wafers']}")
    ctx.add_summary("vector generation", f"{t_vec:.1f} s")
    for backend, t in times.items():
        ctx.add_summary(f"hls4ml {backend}", f"{t:.1f} s -> hls_projects/{backend}")
    for n, b in budgets.items():
        ctx.add_summary(f"{n} eLinks ({b['latent_bits']}-bit latents)",
                        f"{b['n_vectors']} golden vectors, hls4ml {', '.join(b['projects'])} -> {b['dir']}/")


def _convert_budgets(ctx, ae, main: dict, drop: int, calvalues) -> dict:
    """The same for the encoder of every other eLink budget the autoencoder exported
    (:func:`flow.core.encoder_file.budget_encoders`): ``elinks/<n>/vectors.npz`` (the words
    and kinds of ``vectors.npz``, expectations from that budget's encoder and latent width),
    ``elinks/<n>/hls_projects/<backend>/`` from ``autoencoder/elinks/<n>/encoder.h5``, and
    ``elinks.json`` (= the ``elinks`` metric): ``{n: latent_bits, weights_sha256, dir,
    n_vectors, projects}``.  No register variants: those test the front end and the
    configuration port, which do not depend on the latent width."""
    s, out = ctx.settings, ctx.out
    table = {}
    for n, enc in budget_encoders(ae).items():
        d = ELINK_DIR.format(n=n)
        sub = out / d
        sub.mkdir(parents=True, exist_ok=True)
        v = golden_vectors(main["words"], main["kind"], enc.weights, drop=drop, calvalues=calvalues,
                           latent_bits=enc.latent_bits)
        write_vectors(sub / "vectors.npz", v)
        projects = {}
        for backend in dict.fromkeys(s.backends):
            info = convert_backend(backend, model=ae.path(f"{d}/encoder.h5"), weights_image=enc.weights_path,
                                   projects_dir=sub / "hls_projects", settings=s, latent_bits=enc.latent_bits,
                                   log=out / "logs" / f"convert_{backend}_{n}elinks.log",
                                   arch=enc.weights.arch)
            if info["latent_bits"] != enc.latent_bits:
                raise StageInputError(f"autoencoder/{d}/encoder.h5 has {info['latent_bits']}-bit latents, "
                                      f"its encoder.json {enc.latent_bits}; rerun `make autoencoder`")
            finish_project(sub / "hls_projects" / backend, backend, info, s, enc.latent_bits,
                           enc.weights_sha256, "-O2")
            projects[backend] = {"path": f"{d}/hls_projects/{backend}", "convert_s": info["wall_s"]}
        table[str(n)] = {"latent_bits": enc.latent_bits, "weights_sha256": enc.weights_sha256, "dir": d,
                         "vectors": f"{d}/vectors.npz", "n_vectors": int(len(v["words"])),
                         "projects": projects}
    if table:
        atomic_write_json(out / ELINKS_JSON, table)
    return table


# -------------------------------------------------------------------- bench
def bench(cfg, workdir) -> dict[str, float]:
    """Convert time per backend (child process incl. imports) and golden-vector throughput."""
    from flow.runner.manifest import verify

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ae = verify(cfg, "autoencoder")
    weights, lb, _ = load_weights(ae)
    rng = np.random.default_rng(0)
    words = rng.integers(0, 128, size=(100_000, N_TC))
    t0 = time.perf_counter()
    golden_vectors(words, np.zeros(len(words), np.uint8), weights, drop=3,
                   calvalues=np.full(N_TC, CAL_UNITY), latent_bits=lb)
    res = {"golden_vectors_per_s": len(words) / (time.perf_counter() - t0)}
    for backend in dict.fromkeys(cfg.convert.backends):
        info = convert_backend(backend, model=ae.path("encoder.h5"), weights_image=ae.path("weights.bin"),
                               projects_dir=workdir / "hls_projects", settings=cfg.convert,
                               latent_bits=lb, log=workdir / f"convert_{backend}.log", arch=weights.arch)
        res[f"convert_{backend}_s"] = info["wall_s"]
        res[f"convert_{backend}_hls4ml_s"] = info["convert_s"]
    return res


__all__ = ["BACKENDS", "BOUNDARY_SUMS", "boundary_words", "build_vector_sets", "corner_words", "run",
           "bench"]
