"""``handoff`` stage: the archive ASIC/FPGA engineers receive.

Packs the verified RTL of every flavour, the register images, test vectors
with expected outputs (integer codes) and a standalone cocotb testbench into
one deterministic ``econt_ae_handoff_<run>.tar.gz`` (sorted members, fixed
mtime/owner/mode, gzip mtime 0: rerunning gives the same bytes).  Layout and
use: ``docs/handoff.md``; the archive's own ``README.md`` and ``INTERFACE.md``
are written here from ``rtl/rtl.json``, the Verilog port declarations and
``convert/vectors_meta.json``.

Nothing in the archive imports ``flow``: the testbench (``flow/resources/handoff``)
compares the DUT with the expected codes in ``vectors/``, which this stage
takes from the ``convert`` stage's golden vectors (and, for the programmable
flavour's second weight set, computes with the golden model) and re-checks
against the golden model before writing them.

Self-check (``handoff.self_check``): the archive is unpacked in a temporary
directory outside the repository and ``tb/run.py`` runs there in a child
process in which ``import flow`` fails; any mismatch or failed test fails
the stage (the runner keeps its report in ``<run>/handoff.failed/self_check/``).

Outputs::

    handoff/econt_ae_handoff_<run>.tar.gz   the archive
    handoff/handoff.json                    archive sha256/size/members, vector sets, self-check summary
    handoff/self_check/                     the self-check's report.json/.md and simulator logs
    handoff/self_check/elinks_<n>/          the same for each other eLink budget's root (elinks/<n>/)
"""
from __future__ import annotations

import time

from flow.handoff.archive import build_archive, sha256_bytes
from flow.handoff.check import run_archive_tb, self_check_error
from flow.runner.atomic import atomic_write_json


def run(ctx) -> None:
    s = ctx.settings
    t0 = time.perf_counter()
    top, data, record = build_archive(ctx)
    archive = ctx.out / f"{top}.tar.gz"
    archive.write_bytes(data)
    build_s = time.perf_counter() - t0
    asha = sha256_bytes(data)
    ctx.metrics.update({"archive": archive.name, "archive_bytes": len(data), "archive_sha256": asha,
                        "n_files": record["n_files"], "vector_sets": record["sets"],
                        "flavours": record["flavours"], "build_s": round(build_s, 2)})
    ctx.add_summary("archive", f"{archive.name} ({len(data) / 1e6:.2f} MB, {record['n_files']} files)")
    ctx.add_summary("flavours", ", ".join(record["flavours"]))
    ctx.add_summary("vector sets", ", ".join(f"{k} {v}" for k, v in record["sets"].items()))
    if record["elinks"]:
        ctx.metrics["elinks"] = record["elinks"]
    for n, b in record["elinks"].items():
        ctx.add_summary(f"{n} eLinks ({b['latent_bits']}-bit latents)",
                        f"{b['dir']}/: RTL of {', '.join(b['cosim'])}, weight image {b['weights']}, "
                        f"{b['n_vectors']} vectors")
    summary = {**record, "archive": archive.name, "archive_sha256": asha, "archive_bytes": len(data),
               "self_check": None}
    if s.self_check:
        ctx.external_tools.append("verilator")
        keep = ctx.out / "self_check"
        rep = run_archive_tb(archive, jobs=s.self_check_jobs, timeout_s=s.self_check_timeout_s, keep=keep)
        if rep["returncode"] != 0 or not rep.get("passed"):  # the runner keeps ctx.out (handoff.failed/)
            if not (keep / "report.json").is_file():
                atomic_write_json(keep / "report.json", rep)
            raise self_check_error(rep, keep / "report.json")
        sc = {"passed": True, "n_total": rep["n_total"], "n_mismatch": rep["n_mismatch"],
              "wall_s": rep["wall_s"], "warnings": rep.get("warnings", []),
              "flavours": {fl: {k: r.get(k) for k in ("n_total", "n_mismatch", "build_s", "sim_s")}
                           for fl, r in rep["flavours"].items()}}
        # the root of every other eLink budget's encoder (elinks/<n>/), by the same testbench
        for n, b in record["elinks"].items():
            sub = keep / f"elinks_{n}"
            rb = run_archive_tb(archive, jobs=s.self_check_jobs, timeout_s=s.self_check_timeout_s, keep=sub,
                                extra_args=("--root", b["dir"]))
            if rb["returncode"] != 0 or not rb.get("passed"):
                if not (sub / "report.json").is_file():
                    atomic_write_json(sub / "report.json", rb)
                raise self_check_error(rb, sub / "report.json")
            sc.setdefault("elinks", {})[n] = {"latent_bits": b["latent_bits"], "n_total": rb["n_total"],
                                              "n_mismatch": rb["n_mismatch"], "wall_s": rb["wall_s"]}
        ctx.metrics["self_check"] = sc
        summary["self_check"] = sc
        ctx.add_summary("self-check (unpacked, flow not importable)",
                        f"{rep['n_total']} wafers, {rep['n_mismatch']} mismatching, "
                        f"{rep['wall_s']:.0f} s")
        for n, r in sc.get("elinks", {}).items():
            ctx.add_summary(f"self-check, {n} eLinks ({r['latent_bits']}-bit latents, --root elinks/{n})",
                            f"{r['n_total']} wafers, {r['n_mismatch']} mismatching, {r['wall_s']:.0f} s")
    else:
        ctx.add_summary("self-check", "skipped (handoff.self_check: false)")
    atomic_write_json(ctx.out / "handoff.json", summary)


