"""``csim`` stage: compile each hls4ml project's C++ with g++ and compare with the golden model (issue #7).

For every project the convert stage wrote, the harness (hls4ml's
``firmware/myproject.cpp`` + our ``firmware/econt_top.cpp`` front end and
wrapper + ``econt_csim_tb.cpp``) is compiled into one binary.  Each golden
vector file (``vectors.npz``, ``vectors_regs<k>.npz``) is written in the
binary format of ``econt_csim_tb.cpp``, streamed through ``econt_top`` in one
run, and the outputs (latent codes, module sum, and the front end's AEin
codes) are compared with the expected integer codes, never floats.

Writes ``build/<run>/csim/<backend>/``: ``report.json`` (``n_total``,
``n_mismatch``, per field / file / kind counts, the first mismatches, compile
time, throughput), ``compile_<source>.log``, ``link.log``, ``run_<file>.log`` and the ``econt_csim``
binary; ``build/<run>/csim/elinks/<n>/<backend>/`` the same for the encoder of every
other eLink budget (convert's ``elinks.json``; summary keys ``<backend>@<n>elinks``).
Any mismatch fails the stage with :class:`~flow.runner.errors.MismatchError`;
the runner keeps the reports in ``build/<run>/csim.failed/``.
"""
from __future__ import annotations

import json
from pathlib import Path

from flow.core.csim import check_project, mismatch_message
from flow.core.encoder_file import budget_table
from flow.runner.atomic import atomic_write_json
from flow.runner.errors import FlowError, MismatchError, StageInputError


def _vector_files(conv) -> dict[str, Path]:
    meta = json.loads(conv.path("vectors_meta.json").read_text())
    return {name: conv.path(name) for name in meta["files"]}


def run(ctx) -> None:
    s = ctx.settings
    conv = ctx.upstream["convert"]
    projects = json.loads(conv.path("projects.json").read_text())["projects"]
    wanted = list(dict.fromkeys(s.backends)) if s.backends else list(projects)
    absent = [b for b in wanted if b not in projects]
    if absent:
        raise FlowError(f"csim.backends: {absent} were not converted (the convert stage wrote "
                        f"{sorted(projects)}); add them to convert.backends and rerun `make convert`")
    files = _vector_files(conv)
    ctx.external_tools.append(s.cxx)
    reports = {}
    for b in wanted:  # on failure the runner keeps the logs and reports in build/<run>/csim.failed/
        prj = conv.dir / projects[b]["path"]
        reports[b] = check_project(prj, files, ctx.out / b, s, backend=b)
    # the encoder of every other eLink budget (convert's elinks.json): its projects on its vectors
    for n, b in budget_table(conv).items():
        for backend in wanted:
            if backend not in b["projects"]:
                raise StageInputError(f"convert/{b['dir']}: no {backend} project for the {n}-eLink encoder "
                                      f"(it has {sorted(b['projects'])}); rerun `make convert`")
            vec = {f"{b['dir']}/vectors.npz": conv.path(b["vectors"])}
            reports[f"{backend}@{n}elinks"] = check_project(conv.dir / b["projects"][backend]["path"], vec,
                                                            ctx.out / b["dir"] / backend, s, backend=backend)
    summary = {b: {k: r[k] for k in ("n_total", "n_mismatch", "fields", "compile_s", "csim_s",
                                      "vectors_per_s", "latent_bits")} for b, r in reports.items()}
    atomic_write_json(ctx.out / "summary.json", summary)
    ctx.metrics.update({"projects": summary,
                        "n_mismatch": sum(r["n_mismatch"] for r in reports.values())})
    for b, r in reports.items():
        ctx.add_summary(f"{b}: mismatches", f"{r['n_mismatch']} of {r['n_total']} vectors "
                                            f"({r['latent_bits']}-bit latents)")
        ctx.add_summary(f"{b}: g++ compile", f"{r['compile_s']:.1f} s")
        ctx.add_summary(f"{b}: csim throughput", f"{r['vectors_per_s'] or 0:,.0f} vectors/s")
    if any(r["n_mismatch"] for r in reports.values()):
        raise MismatchError(mismatch_message(reports, ctx.out))


# -------------------------------------------------------------------- bench
def bench(cfg, workdir) -> dict[str, float]:
    """g++ compile time and csim throughput (vectors/s through econt_top) per backend."""
    from flow.runner.manifest import verify

    conv = verify(cfg, "convert")
    projects = json.loads(conv.path("projects.json").read_text())["projects"]
    files = {"vectors.npz": conv.path("vectors.npz")}
    res = {}
    for b, p in projects.items():
        r = check_project(conv.dir / p["path"], files, Path(workdir) / b, cfg.csim, backend=b)
        res[f"compile_{b}_s"] = r["compile_s"]
        res[f"csim_{b}_vectors_per_s"] = r["vectors_per_s"]
        res[f"csim_{b}_n_mismatch"] = float(r["n_mismatch"])
    return res
