"""The handoff archive: its members (the verified RTL of every flavour, register
images, vector sets with expected outputs, the shipped testbench, the documents
of :mod:`flow.handoff.docs`, ``manifest.json`` and ``MANIFEST.sha256``) and the
deterministic ``.tar.gz`` that holds them (:func:`build_archive`)."""
from __future__ import annotations

import gzip
import importlib.util
import io
import json
import re
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from flow.core import encoder as E
from flow.core.encoder import EncoderArch, EncoderWeights
from flow.core.encoder_file import ELINK_DIR, budget_encoders, budget_table, load_encoder
from flow.core.frontend import TC_WORD_BITS
from flow.core.tb_vectors import FORMAT, check_address_map, injection_map, sha256_bytes, vectors_json
from flow.core.tb_vectors import cal_from_hex as _cal_from_hex
from flow.core.tb_vectors import pack_rows as _pack_rows
from flow.core.tb_vectors import weight_files as _weight_files
from flow.core.tb_vectors import write_set_files as _write_set_files
from flow.core.testbench import DIR as TB_DIR
from flow.core.vectors import golden, read_vectors
from flow.core.vectors import select_spread as select
from flow.handoff.docs import interface_md, readme_md, registers_readme, vectors_readme
from flow.hdl import flavours as RF
from flow.runner.errors import FlowError, MismatchError, StageInputError
from flow.runner.manifest import git_revision, sha256_file

#: fixed member mtime (2000-01-01 00:00 UTC): the archive bytes depend on content only
ARCHIVE_MTIME = 946684800
#: the shipped testbench (``tb/``), files of :data:`flow.core.testbench.DIR`
TB_FILES = ("run.py", "test_econt_handoff.py", "econt_vectors.py", "requirements.txt")
EXECUTABLE = ("tb/run.py",)
#: settings that shape the archive (the self-check ones do not)
ARCHIVE_SETTINGS = ("max_vectors", "alt_max_vectors", "alt_vectors", "reprogram_vectors")


def archive_name(run: str) -> str:
    return f"econt_ae_handoff_{run}"


# ================================================================ helpers
def tar_gz(top: str, files: dict[str, bytes], executable=EXECUTABLE) -> bytes:
    """Deterministic ``.tar.gz``: every member under ``top/``, sorted, directories
    included, mtime ``ARCHIVE_MTIME``, uid/gid 0, no user names, mode 0644/0755,
    gzip header without name and with mtime 0."""
    dirs = {top}
    for rel in files:
        parts = rel.split("/")
        for i in range(1, len(parts)):
            dirs.add("/".join([top, *parts[:i]]))
    entries = sorted([(d, None) for d in dirs] + [(f"{top}/{rel}", rel) for rel in files])
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, rel in entries:
                info = tarfile.TarInfo(name)
                info.mtime = ARCHIVE_MTIME
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if rel is None:
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
                else:
                    data = files[rel]
                    info.size = len(data)
                    info.mode = 0o755 if rel in executable else 0o644
                    tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _load_shipped_vectors_module():
    """The archive's own ``econt_vectors.py`` (to check the files with the reader the
    testbench uses)."""
    spec = importlib.util.spec_from_file_location("_handoff_econt_vectors", TB_DIR / "econt_vectors.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod            # dataclasses look their module up there
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules.pop(spec.name, None)
    return mod


# ============================================================ the RTL side
_PORT_RE = re.compile(r"^\s*(input|output)\s+(?:wire|reg)?\s*(?:\[(\d+)\s*:\s*(\d+)\])?\s*(\w+)\s*,?\s*$")


def verilog_ports(text: str, top: str) -> list[tuple[str, str, int]]:
    """(name, direction, width) of the top module's ports, in declaration order."""
    m = re.search(rf"\bmodule\s+{re.escape(top)}\s*\((.*?)\);", text, re.S)
    if not m:
        raise StageInputError(f"rtl: module {top} not found in its top-level file")
    ports = []
    for line in m.group(1).splitlines():
        line = line.split("//", 1)[0]
        if not line.strip():
            continue
        pm = _PORT_RE.match(line)
        if not pm:
            raise StageInputError(f"rtl: cannot read the port declaration {line.strip()!r} of {top}")
        d, hi, lo, name = pm.groups()
        width = int(hi) - int(lo) + 1 if hi is not None else 1
        ports.append((name, "in" if d == "input" else "out", width))
    return ports


def documented_ports(itf: dict) -> dict[str, tuple[str, int, str]]:
    """rtl.json ``interface.ports`` ("in 10: meaning") -> name: (direction, width, meaning)."""
    out = {}
    for name, desc in itf["ports"].items():
        m = re.match(r"^(in|out)\s+(\d+):\s*(.*)$", desc)
        if not m:
            raise StageInputError(f"rtl.json: cannot read the description of port {name}: {desc!r}")
        out[name] = (m.group(1), int(m.group(2)), m.group(3))
    return out


# ========================================================== vector sets
def _read_vectors(path: Path, sel_budget: int) -> dict:
    v = read_vectors(path)
    kind = v["kind"].astype(np.int64)
    idx = select(kind, sel_budget)
    return {"words": v["words"][idx].astype(np.int64), "aein": v["aein"][idx].astype(np.int64),
            "latent": v["latent"][idx].astype(np.int64), "sum_code": v["sum_code"][idx].astype(np.int64),
            "kind": kind[idx], "kind_names": [str(x) for x in v["kind_names"]], "index": idx,
            "calvalues": v["calvalues"].astype(np.int64), "drop": int(v["drop"]), "n_source": len(kind)}


def _recheck(sets: list[dict], weights: EncoderWeights, latent_bits: int, image: str) -> None:
    """Every shipped expectation re-derived with the golden model from ``weights`` (named
    ``image`` in the error)."""
    for vs in sets:
        aein, lat, sums = golden(vs["words"], drop=vs["drop"], calvalues=vs["calvalues"], weights=weights,
                                 latent_bits=latent_bits)
        for key, got in (("aein", aein), ("latent", lat), ("sum_code", sums)):
            bad = np.flatnonzero(np.any((got != vs[key]).reshape(len(got), -1), axis=1))
            if len(bad):
                raise MismatchError(f"{vs['source']}: {len(bad)} of {len(got)} selected vectors' {key} "
                                    f"differ from the golden model with {image} "
                                    f"(first: vector {int(vs['index'][bad[0]])}); rerun `make convert`")


def _default_flags(sets: list[dict], weights: EncoderWeights, defaults) -> None:
    def_cal, def_drop = defaults
    for vs in sets:
        vs["default_registers"] = bool(vs["weights"] is weights and vs["drop"] == def_drop
                                       and [int(c) for c in vs["calvalues"]] == list(def_cal))


def build_sets(ctx, weights: EncoderWeights, latent_bits: int, flavours: list[str],
               defaults: tuple[list[int], int]) -> list[dict]:
    """The vector sets to ship, each checked against the golden model; in the order the
    testbench runs them (programmable flavours: the random-weight set first, so that loading
    the trained weights through the port is proven by the next set)."""
    s = ctx.settings
    conv = ctx.upstream["convert"]
    sets = []
    nominal = _read_vectors(conv.path("vectors.npz"), s.max_vectors)
    nominal.update(name="nominal", source="convert/vectors.npz", weights=weights, weights_name="weights",
                   flavours=list(flavours))
    sets.append(nominal)
    if s.alt_vectors:
        for rel in sorted(conv.manifest["outputs"]):
            if re.fullmatch(r"vectors_regs\d+\.npz", rel):
                alt = _read_vectors(conv.path(rel), s.alt_max_vectors)
                alt.update(name=rel[len("vectors_"):-len(".npz")], source=f"convert/{rel}", weights=weights,
                           weights_name="weights", flavours=list(flavours))
                sets.append(alt)
    _recheck(sets, weights, latent_bits, "autoencoder/weights.bin")
    programmable = [fl for fl in flavours if RF.get(fl).programmable]
    if programmable and s.reprogram_vectors > 0:
        w2 = EncoderWeights.random(ctx.seed, weights.arch)
        sub = select(nominal["kind"], s.reprogram_vectors)
        words = nominal["words"][sub]
        aein, lat, sums = golden(words, drop=nominal["drop"], calvalues=nominal["calvalues"], weights=w2,
                                 latent_bits=latent_bits)
        differ = int(np.any(lat != nominal["latent"][sub], axis=1).sum())
        if differ == 0:
            raise FlowError("the random reprogramming weight set gives the trained outputs on every "
                            "vector; it would prove nothing")
        sets.insert(0, {"name": "reprogram", "source": "convert/vectors.npz (words) + random weights, "
                        "golden model", "words": words, "aein": aein, "latent": lat, "sum_code": sums,
                        "kind": nominal["kind"][sub], "kind_names": nominal["kind_names"],
                        "index": nominal["index"][sub], "calvalues": nominal["calvalues"],
                        "drop": nominal["drop"], "n_source": nominal["n_source"], "weights": w2,
                        "weights_name": "reprogram_weights", "flavours": programmable,
                        "n_differ_from_trained": differ})
    _default_flags(sets, weights, defaults)
    return sets


# ============================================================ archive members
def _check_shipped_reader(files: dict[str, bytes], sets: list[dict], latent_bits: int) -> None:
    """Read the written files back with the archive's own reader: same codes as the arrays."""
    V = _load_shipped_vectors_module()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for rel, data in files.items():
            if rel.startswith(("vectors/", "registers/")):
                p = root / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
        for vs, got in zip(sets, V.load_sets(root), strict=True):
            if (got.name != vs["name"] or got.words != _pack_rows(vs["words"], TC_WORD_BITS)
                    or got.latent != _pack_rows(vs["latent"], latent_bits)
                    or got.sums != [int(x) for x in vs["sum_code"]]):
                raise FlowError(f"handoff: the shipped reader reads vector set {vs['name']} back wrong "
                                "(bug in the handoff writer)")


def seu_files(cosim_outputs) -> dict[str, str]:
    """The cosim stage's SEU results to ship: archive path -> cosim output path
    (``seu/*``: the weight-bit sensitivity map, selective-TMR proposal and their plots;
    ``seu.json``: the injection campaign, when the cosim stage ran one)."""
    out = {}
    for rel in sorted(cosim_outputs):
        if rel.startswith("seu/") and rel.endswith((".json", ".png", ".svg", ".pdf", ".md")):
            out[rel] = rel
        elif rel == "seu.json":
            out["seu/seu.json"] = rel
    return out


def _upstream_record(ctx) -> dict:
    rec = {}
    for name, v in ctx.upstream.items():
        m = v.manifest
        rec[name] = {"manifest_sha256": v.manifest_sha256, "config_hash": m.get("config_hash"),
                     "git": m.get("git"), "finished_utc": m.get("finished_utc")}
        for up, r in m.get("upstream", {}).items():
            if up not in ctx.upstream and up not in rec:
                rec[up] = {"manifest_sha256": r["manifest_sha256"], "via": name}
    return dict(sorted(rec.items()))


def _verified_flavours(meta: dict, results: dict, where: str = "") -> dict:
    """The cosim result of every flavour of ``meta`` (``results``: flavour -> cosim result;
    ``where``: e.g. " for 2 eLinks" in the errors), which must have passed."""
    out = {}
    for fl in meta["flavours"]:
        r = results.get(fl)
        if r is None:
            raise StageInputError(f"handoff ships every flavour the rtl stage built, but cosim did not "
                                  f"simulate '{fl}'{where}; add it to cosim.flavours and rerun `make cosim`")
        if r.get("n_mismatch") != 0 or not r.get("n_total"):
            raise StageInputError(f"cosim of '{fl}'{where} did not pass ({r.get('n_mismatch')} mismatches); "
                                  "rerun `make cosim`")
        out[fl] = {"n_total": r["n_total"], "n_mismatch": r["n_mismatch"],
                   "latency_cycles": r.get("latency_cycles"), "ii_cycles": r.get("ii_cycles")}
    return out


def _rtl_files(files: dict[str, bytes], rtl, meta: dict, sub: str, latent_bits: int):
    """Each flavour's sources of the rtl stage's ``<sub><flavour>/`` as ``rtl/<flavour>/`` into
    ``files``, in compile order, its top's ports checked against ``meta``'s documented interface
    (the same in every flavour).  Returns (flavour records, ports, documented ports)."""
    itf = meta["interface"]
    doc_ports = documented_ports(itf)
    ports = None
    fl_rec = {}
    for fl, info in meta["flavours"].items():
        order = (rtl.path(f"{sub}{fl}/filelist.f")).read_text().split()
        for name in order:
            files[f"rtl/{fl}/{name}"] = rtl.path(f"{sub}{fl}/{name}").read_bytes()
        files[f"rtl/{fl}/filelist.f"] = "".join(f"{n}\n" for n in order).encode()
        p = verilog_ports(files[f"rtl/{fl}/{info['top']}.v"].decode(), info["top"])
        if {n: (d, wd) for n, d, wd in p} != {n: (d, wd) for n, (d, wd, _) in doc_ports.items()}:
            raise StageInputError(f"rtl: the ports of {sub}{info['top']} {p} differ from rtl.json's "
                                  "interface")
        if ports is not None and p != ports:
            raise StageInputError(f"rtl: {sub}{info['top']} has other ports than the other flavour")
        ports = p
        spec = RF.get(fl)
        fl_rec[fl] = {"top": info["top"], "filelist": f"rtl/{fl}/filelist.f", "files": order,
                      "verilog_lines": info.get("verilog_lines"), "programmable": spec.programmable}
        if spec.tmr:
            # a TMR flavour's test-build injection hook (`ECONT_SEU_INJECT`) corrects every single
            # upset: tb/run.py --seu-inject checks it
            arch = EncoderArch.from_dict(meta.get("arch", {}), "rtl.json arch")
            fl_rec[fl]["seu_inject"] = injection_map(latent_bits, int(itf["latency_cycles"]) == 2, arch)
    return fl_rec, ports, doc_ports


def _register_and_vector_files(files: dict[str, bytes], sets: list[dict], meta: dict, defaults,
                               weights: EncoderWeights, wsha: str, vmeta: dict) -> list[dict]:
    """``registers/`` (the weight images, ``registers.json``, README) and ``vectors/`` (every set,
    ``vectors.json``, README) into ``files``, read back with the shipped reader; returns the
    sets' ``vectors.json`` entries."""
    latent_bits = int(meta["latent_bits"])
    cfg_port = meta["interface"]["cfg_port"]
    check_address_map(cfg_port, weights.arch)
    _weight_files(files, "weights", weights, cfg_port)
    for vs in sets:
        if vs["weights_name"] != "weights":
            _weight_files(files, vs["weights_name"], vs["weights"], cfg_port)
    entries = [_write_set_files(files, vs, latent_bits, cfg_port) for vs in sets]
    files["vectors/vectors.json"] = vectors_json(latent_bits, entries, vmeta.get("formats", {}),
                                                 vmeta.get("golden"))
    files["vectors/README.md"] = vectors_readme(meta).encode()
    reg_json = {"address_map": cfg_port, "defaults": {"calvalues": defaults[0], "drop": defaults[1],
                                                      "weights": "registers/weights.bin",
                                                      "weights_sha256": wsha},
                "sets": {e["name"]: {k: e[k] for k in ("calvalues", "drop", "weights", "weights_sha256",
                                                       "default_registers")} for e in entries}}
    files["registers/registers.json"] = (json.dumps(reg_json, indent=1) + "\n").encode()
    files["registers/README.md"] = registers_readme(meta, sets, defaults).encode()
    _check_shipped_reader(files, sets, latent_bits)
    return entries


def _interface_record(itf: dict, ports, doc_ports: dict) -> dict:
    keys = ("latency_cycles", "latency_ns", "clock_ns", "ii_cycles", "latency_definition")
    return ({k: itf[k] for k in keys}
            | {"ports": [{"name": n, "dir": d, "width": wd, "meaning": doc_ports[n][2]}
                         for n, d, wd in ports]})


def _sha256_listing(files: dict[str, bytes]) -> bytes:
    return "".join(f"{sha256_bytes(data)}  {rel}\n" for rel, data in sorted(files.items())).encode()


def budget_trees(ctx, files: dict[str, bytes], defaults, cosim_rep: dict, vmeta: dict) -> dict:
    """For the encoder of every other eLink budget the autoencoder exported: ``elinks/<n>/``,
    a root of its own for the shipped testbench (``python tb/run.py --root elinks/<n>``) with
    that budget's RTL of every flavour (``rtl/``), its weight image (``registers/weights.bin``,
    ``.mem``, ``_words.hex``), its nominal vector set from ``convert/elinks/<n>/vectors.npz``
    (re-derived with the golden model), ``manifest.json``, ``MANIFEST.sha256`` and a README.
    Every flavour must have passed the cosim stage at that budget.  Returns ``{n: record}``."""
    s = ctx.settings
    ae, conv, rtl = (ctx.upstream[k] for k in ("autoencoder", "convert", "rtl"))
    encs = budget_encoders(ae)
    rtl_b, conv_b = budget_table(rtl), budget_table(conv)
    out = {}
    for n, enc in encs.items():
        key, d = str(n), ELINK_DIR.format(n=n)
        for stage, table in (("rtl", rtl_b), ("convert", conv_b)):
            if table.get(key, {}).get("weights_sha256") != enc.weights_sha256:
                raise StageInputError(f"the {stage} stage has no output for the {n}-eLink encoder of "
                                      f"autoencoder/{d}/ (or one from other weights); rerun `make {stage}`")
        meta = json.loads(rtl.path(f"{d}/rtl.json").read_text())
        cosim = _verified_flavours(meta, cosim_rep.get("elinks", {}).get(key, {}).get("flavours", {}),
                                   f" for {n} eLinks")
        sub: dict[str, bytes] = {}
        fl_rec, ports, doc_ports = _rtl_files(sub, rtl, meta, f"{d}/", enc.latent_bits)
        nominal = _read_vectors(conv.path(conv_b[key]["vectors"]), s.max_vectors)
        nominal.update(name="nominal", source=f"convert/{conv_b[key]['vectors']}", weights=enc.weights,
                       weights_name="weights", flavours=list(meta["flavours"]))
        sets = [nominal]
        _recheck(sets, enc.weights, enc.latent_bits, f"autoencoder/{d}/weights.bin")
        _default_flags(sets, enc.weights, defaults)
        bmeta = {**vmeta, "formats": {**vmeta.get("formats", {}),
                                      "latent": E.latent_format(enc.latent_bits).to_ap_string()}}
        entries = _register_and_vector_files(sub, sets, meta, defaults, enc.weights, enc.weights_sha256,
                                             bmeta)
        sub["README.md"] = (f"# {n} eLinks: the encoder with {enc.latent_bits}-bit latents\n\n"
                            f"The exported loss's encoder trained for a module with {n} trigger eLinks "
                            f"(16 x {enc.latent_bits}-bit latents + 9-bit module sum + 4-bit header within "
                            f"{32 * n} bits per BX), with the RTL of every flavour generated for it "
                            f"(`LATENT_BITS` = {enc.latent_bits}) and its weight image "
                            "`registers/weights.bin` (load it through the configuration port like the "
                            "main image; the constant flavour has it built in).  Run its testbench from "
                            f"the archive's top directory:\n\n    python tb/run.py --root elinks/{n}\n\n"
                            "Verified by the flow's cosimulation: "
                            + ", ".join(f"{fl} {c['n_total']} wafers, {c['n_mismatch']} mismatching"
                                        for fl, c in cosim.items()) + ".\n").encode()
        listing = {rel: {"sha256": sha256_bytes(b), "bytes": len(b)} for rel, b in sorted(sub.items())}
        man = {"format": FORMAT, "run": ctx.cfg.name, "elinks": n,
               "model": {"weights_sha256": enc.weights_sha256, "weights": "registers/weights.bin",
                         "latent_bits": enc.latent_bits},
               "flavours": fl_rec, "interface": _interface_record(meta["interface"], ports, doc_ports),
               "cosim": cosim,
               "vectors": {e["name"]: {"n": e["n"], "flavours": e["flavours"]} for e in entries},
               "files": listing}
        sub["manifest.json"] = (json.dumps(man, indent=1, sort_keys=True) + "\n").encode()
        sub["MANIFEST.sha256"] = _sha256_listing(sub)
        files.update({f"{d}/{rel}": b for rel, b in sub.items()})
        out[key] = {"latent_bits": enc.latent_bits, "dir": d, "weights": f"{d}/registers/weights.bin",
                    "weights_sha256": enc.weights_sha256, "n_vectors": entries[0]["n"], "cosim": cosim}
    return out


def build_archive(ctx) -> tuple[str, bytes, dict]:
    """Everything of the archive: (top-level directory name, .tar.gz bytes, record)."""
    s = ctx.settings
    run = ctx.cfg.name
    top = archive_name(run)
    ae, conv, rtl, cos = (ctx.upstream[k] for k in ("autoencoder", "convert", "rtl", "cosim"))
    meta = json.loads(rtl.path("rtl.json").read_text())
    itf = meta["interface"]
    enc = load_encoder(ae)                      # encoder.json + weights.bin
    latent_bits, weights, wsha = enc.latent_bits, enc.weights, enc.weights_sha256
    if int(meta["latent_bits"]) != latent_bits:
        raise StageInputError(f"the rtl stage was generated for latent_bits {meta['latent_bits']}, but "
                              f"autoencoder/encoder.json says {latent_bits}; rerun `make rtl`")
    cos_rep = json.loads(cos.path("report.json").read_text())
    cosim = _verified_flavours(meta, cos_rep.get("flavours", {}))
    if meta["defaults"]["weights_sha256"] != wsha or sha256_file(rtl.path("weights.bin")) != wsha:
        raise StageInputError("the rtl stage was generated from other weights than autoencoder/weights.bin; "
                              "rerun `make rtl`")
    vmeta = {}
    if "vectors_meta.json" in conv.manifest["outputs"]:
        vmeta = json.loads(conv.path("vectors_meta.json").read_text())
        if vmeta.get("weights_sha256", wsha) != wsha:
            raise StageInputError("convert's vectors were computed with other weights than "
                                  "autoencoder/weights.bin; rerun `make convert`")
    defaults = (_cal_from_hex(meta["defaults"]["calvalue_image_hex"]), int(meta["defaults"]["drop"]))
    flavours = list(meta["flavours"])
    files: dict[str, bytes] = {}

    # ---- rtl: sources in compile order, the same interface in every flavour
    fl_rec, ports, doc_ports = _rtl_files(files, rtl, meta, "", latent_bits)

    # ---- vectors and registers
    sets = build_sets(ctx, weights, latent_bits, flavours, defaults)
    entries = _register_and_vector_files(files, sets, meta, defaults, weights, wsha, vmeta)
    budgets = budget_trees(ctx, files, defaults, cos_rep, vmeta)

    # ---- testbench
    for name in TB_FILES:
        files[f"tb/{name}"] = (TB_DIR / name).read_bytes()

    # ---- SEU results of the cosim stage (when it ran them): seu/
    seu = seu_files(cos.manifest.get("outputs", {}))
    for rel, src in seu.items():
        files[rel] = cos.path(src).read_bytes()

    # ---- documents
    prov = {"git": git_revision(), "weights_sha256": wsha, "upstream": _upstream_record(ctx)}
    files["INTERFACE.md"] = interface_md(run, meta, ports, doc_ports, vmeta.get("formats", {}), defaults,
                                         wsha).encode()
    files["README.md"] = readme_md(run, top, meta, sets, cosim, prov,
                                   seu_flavours=[fl for fl, r in fl_rec.items() if r.get("seu_inject")],
                                   seu_files=sorted(seu), budgets=budgets).encode()

    # ---- manifest.json and MANIFEST.sha256
    listing = {rel: {"sha256": sha256_bytes(data), "bytes": len(data)} for rel, data in sorted(files.items())}
    ae_cfg = ae.manifest.get("config", {}).get("autoencoder", {})
    man = {
        "format": FORMAT, "run": run, "top_dir": top,
        "flow": {"git": prov["git"], "seed": ctx.cfg.seed, "stage": "handoff",
                 "handoff_settings": {k: getattr(s, k) for k in ARCHIVE_SETTINGS}},
        "model": {"weights_sha256": wsha, "weights": "registers/weights.bin", "latent_bits": latent_bits,
                  "autoencoder_config_hash": ae.manifest.get("config_hash"),
                  "export_loss": ae_cfg.get("export_loss"),
                  "autoencoder_manifest_sha256": ae.manifest_sha256},
        "upstream": prov["upstream"],
        "tools": {k: rtl.manifest.get("tools", {}).get(k)
                  for k in ("verilator", "da4ml", "cocotb", "python")},
        "flavours": fl_rec,
        "interface": _interface_record(itf, ports, doc_ports),
        "elinks": budgets,
        "cosim": cosim,
        "seu": sorted(seu),
        "vectors": {e["name"]: {"n": e["n"], "flavours": e["flavours"]} for e in entries},
        "files": listing,
    }
    files["manifest.json"] = (json.dumps(man, indent=1, sort_keys=True) + "\n").encode()
    files["MANIFEST.sha256"] = _sha256_listing(files)
    record = {"top_dir": top, "n_files": len(files), "sets": {e["name"]: e["n"] for e in entries},
              "flavours": flavours, "files": {rel: len(d) for rel, d in sorted(files.items())},
              "weights_sha256": wsha, "elinks": budgets}
    return top, tar_gz(top, files), record

