"""``report`` stage: one self-contained HTML report and a Markdown summary of a run.

Every number in the report is read from the verified upstream artifacts (their
manifests' ``metrics`` and the files the manifests list); the stage computes
no physics.  It writes::

    report/report.html   self-contained: CSS inline, figures as base64 data URIs,
                         no external URL, script or font (nothing is fetched)
    report/report.md     the same tables in Markdown, figures linked from figures/
    report/figures/      the upstream PNGs (and any figure the report had to draw)

Content (``docs/report.md``): PASS/FAIL headline of the bit-exactness chain
(golden == QKeras, hls4ml csim, RTL cosim), provenance, dataset, EMD CNN,
loss comparison, KR-dual check, number formats, csim, RTL and cosim
(latency, II, resources), tool versions and every stage's manifest.  Content
an upstream stage did not produce is rendered as an explicit
"not available: <reason>" cell, never as a made-up number.

The stage is split by concern: :mod:`flow.report.doc` (document model and
number formatting), :mod:`flow.report.inputs` (the verified upstream artifacts
and their figures), :mod:`flow.report.sections` (one builder per section),
:mod:`flow.report.render` (HTML and Markdown, the only reader of
``flow/resources/report/``); :func:`run` here puts the sections in page order.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from flow.report import sections as S
from flow.report.doc import Para, Section, Table
from flow.report.inputs import UPSTREAM, Figures, Upstream
from flow.report.render import count_blocks, count_na, render_html, render_md
from flow.runner.manifest import git_revision


# ------------------------------------------------------------------ stage
def run(ctx) -> None:
    s = ctx.settings
    up = Upstream(ctx)
    out = Path(ctx.out)
    figs = Figures(out)
    # deterministic: the newest upstream artifact's time, not the clock (a rerun on the
    # same artifacts gives the same page; the report's own manifest has its build time)
    date = max(str(up.man(st).get("finished_utc") or "") for st in UPSTREAM) or "unknown"
    hashes = {st: up.man(st).get("config_hash") for st in UPSTREAM}
    hashes["report"] = ctx.cfg.section_hash("report")
    run_hash = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()

    sweep_sec = S.sweep(ctx, up, figs)      # verifies the optional sweep input, whose checks join
    checks, statuses = S.checks(up)
    n_fail = sum(not st.ok for st in statuses)
    verdict = "PASS" if statuses and n_fail == 0 else "FAIL"
    summary = Section("summary", "Verdict").add(
        Para(f"{verdict}: {len(statuses) - n_fail} of {len(statuses)} checks passed"
             + (f"; {n_fail} failed or not available." if n_fail else "."), na=False),
        checks, S.headline(up))
    loss_sec, kr_sec = S.losses(up, figs, out)
    sections = [summary, S.provenance(up, ctx, date, run_hash), S.dataset(up, figs), S.emd(up, figs),
                loss_sec, kr_sec, S.physics(ctx, up, figs), S.quantization(up), S.csim(up),
                S.rtl_cosim(up), S.seu(up, figs), sweep_sec, S.tools(up), S.stages(up)]

    title = f"{s.title}: run {ctx.cfg.name}"
    lead = (f"Run '{ctx.cfg.name}', config hash {run_hash[:16]}, git {git_revision() or 'unknown'}, "
            f"last stage built {date}.")
    page = render_html(title, verdict, lead, s.notes, date, ctx.cfg.name, sections)
    (out / "report.html").write_text(page)
    (out / "report.md").write_text(render_md(title, verdict, lead, s.notes, sections))

    n_tables, n_figs = count_blocks(sections, Table), len(figs.items)
    n_na = count_na(sections)
    ctx.metrics.update({"verdict": verdict, "n_checks": len(statuses), "n_checks_failed": n_fail,
                        "n_tables": n_tables, "n_figures": n_figs, "n_sections": len(sections),
                        "n_not_available": n_na, "html_bytes": len(page.encode()),
                        "run_config_hash": run_hash})
    ctx.add_summary("verdict", f"{verdict} ({len(statuses) - n_fail}/{len(statuses)} checks)")
    ctx.add_summary("report", f"{ctx.cfg.stage_dir('report') / 'report.html'} "
                              f"({len(page.encode()) / 1e6:.2f} MB)")
    ctx.add_summary("content", f"{len(sections)} sections, {n_tables} tables, {n_figs} figures, "
                               f"{n_na} 'not available' entries")

