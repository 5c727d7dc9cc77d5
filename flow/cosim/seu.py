"""RTL SEU campaign of the ``cosim`` stage (issue #17 part 3): many random single upsets
per simulation on the programmable flavours while golden vectors stream.

Every upset is applied one of two ways (``method``), by the registry's ``seu_hook``
(which registers the test-build injection hook reaches; Verilog macro
``ECONT_SEU_INJECT``, a separate Verilator build):

* ``hook``: the hook flips one bit (its global bit index, classes below) at one rising
  edge -- in a TMR flavour (``prog_tmr``, ``seu_hook: all``) of one of the three copies
  of any register; in ``prog`` (``seu_hook: pipeline``) of a pipeline register.
  TMR pass: 0 corrupted wafers and ``seu_count`` == upsets injected.
* ``port``: configuration-register upsets of a flavour whose hook does not reach them
  (``prog``) are emulated through the configuration port -- the word is rewritten with
  one bit inverted, which leaves the register exactly as an upset would -- and the
  campaign restores the word ``HOLD`` clocks later (the reload a system would do;
  without it the upset persists until the register is rewritten).

Classes (:func:`classes`): ``weights`` (12864 weight-image bits), ``calvalue`` (576),
``drop`` (2) and, with a hook, ``pipeline_valid`` (the stage-1 and output valid bits)
and ``pipeline_data`` (stage-1 AEin + module sum, output latent + module sum).  Each class
gets an equal share of the upsets (bits drawn uniformly within it, with replacement),
so that the small classes are measured too; :func:`summarise` also gives the
bit-weighted rate (a uniform particle fluence over all reached bits).

The testbench (``flow/resources/handoff/test_econt_seu.py``) imports nothing of the
flow: it reads a plan (upsets, configuration writes, the ``convert`` stage's vector
file) and records outputs; expected outputs are that file's golden codes, compared
here.  Results: ``cosim/seu.json`` (+ ``cosim/seu/campaign_<flavour>.npz``, one
row per upset).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from flow.core.encoder import IMAGE_BITS, N_LATENT
from flow.core.frontend import CAL_BITS, SUM_BITS
from flow.core.geometry import N_TC
from flow.core.testbench import DIR as TB_DIR
from flow.core.testbench import SEU_MODULE as TB_MODULE
from flow.hdl.datapath import AEIN_BITS
from flow.hdl.flavours import SEU_HOOKS
from flow.hdl.top import CAL_BASE, CFG_DATA_BITS, DROP_ADDR, DROP_BITS, WEIGHT_BASE
from flow.runner.errors import ConfigError, MismatchError, SimError

#: port-emulated upsets: clocks the corrupted word stays in the register before the rewrite
HOLD = 16
#: clocks between two upsets: HOLD + the rewrite + pipeline drain (a campaign with port
#: upsets); hook only: the correction (one clock) + the drain
PERIOD_PORT, PERIOD_HOOK = HOLD + 4, 4
#: the upset classes of the configuration registers (the rest: pipeline registers)
CONFIG_CLASSES = ("weights", "calvalue", "drop")
#: clocks of clean streaming before the first upset and after the last
START, TAIL = 8, 8
WORD_BITS = 7
_MASK = (1 << CFG_DATA_BITS) - 1


def classes(hook: bool, latent_bits: int, fe_reg: bool) -> dict[str, list[tuple[int, int]]]:
    """Upset classes -> their global bit-index ranges ``[lo, hi)`` (the hook's map,
    docs/rtl_cosim.md: weight image, CALVALUE image, drop, stage-1 valid, stage-1 data,
    valid_out, output data).  ``hook``: a hook reaches the pipeline registers; without
    one, the configuration classes only."""
    cal = IMAGE_BITS
    drp = cal + N_TC * CAL_BITS
    s1v = drp + DROP_BITS
    s1d = s1v + 1
    ov = s1d + N_TC * AEIN_BITS + SUM_BITS
    od = ov + 1
    out = {"weights": [(0, IMAGE_BITS)], "calvalue": [(cal, drp)], "drop": [(drp, s1v)]}
    if hook:
        out["pipeline_valid"] = ([(s1v, s1d)] if fe_reg else []) + [(ov, od)]
        out_end = od + N_LATENT * latent_bits + SUM_BITS
        out["pipeline_data"] = ([(s1d, ov)] if fe_reg else []) + [(od, out_end)]
    return out


@contextlib.contextmanager
def sim_env():
    """PATH/VERILATOR_ROOT/MAKEFLAGS for cocotb's Verilator runner in this process,
    restored afterwards."""
    from flow.runner.tools import verilator_bin_dir, verilator_root

    saved = dict(os.environ)
    os.environ["PATH"] = f"{verilator_bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ.setdefault("VERILATOR_ROOT", str(verilator_root()))
    # multi-file models: the wheel's Makefile defaults for precompiled headers and
    # threads do not suit the runner's build; these do (as the shipped run.py)
    os.environ["MAKEFLAGS"] = ("CFG_CXXFLAGS_PCH_I=-include CFG_CXXFLAGS_PCH=-c\\ -x\\ c++-header "
                               "CFG_LDLIBS_THREADS=-pthread")
    try:
        yield
    finally:                      # the whole environment as it was (also what the runner set)
        os.environ.clear()
        os.environ.update(saved)


def build(sources: list[Path], top: str, build_dir: Path, *, opt: str = "-O0", jobs: int = 2,
          log: Path | None = None, defines=()) -> float:
    """Verilate and compile ``top`` for the campaign (``defines``: e.g. the test-build hook
    ``ECONT_SEU_INJECT``; only the top-level ports public); returns the build wall time (s)."""
    from cocotb_tools.runner import get_runner

    build_dir = Path(build_dir)
    if build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True)
    vlt = build_dir / "public_top.vlt"
    vlt.write_text(f'`verilator_config\npublic_flat_rw -module "{top}" -var "*"\n')
    t0 = time.perf_counter()
    with sim_env():
        os.environ["MAKEFLAGS"] += f" -j{jobs}"
        try:
            get_runner("verilator").build(
                sources=[*map(str, sources), str(vlt)], hdl_toplevel=top, build_dir=str(build_dir),
                always=True, clean=False,
                build_args=[*(f"-D{d}" for d in defines), "--no-public-flat-rw", "-Wno-fatal", "-Wno-lint",
                            "-Wno-style", "-CFLAGS", opt, "--x-assign", "0", "--x-initial", "0"],
                timescale=("1ns", "1ps"), log_file=str(log) if log else None)
        except (SystemExit, Exception) as err:  # the runner raises SystemExit/CalledProcessError
            tail = "\n".join(log.read_text().splitlines()[-25:]) if log and log.exists() else ""
            raise SimError(f"Verilator build of {top} failed ({err}):\n{tail}") from None
    return time.perf_counter() - t0


def _sources(flavour_dir: Path) -> list[Path]:
    return [flavour_dir / n for n in (flavour_dir / "filelist.f").read_text().split()]


def class_bits(ranges) -> int:
    return sum(hi - lo for lo, hi in ranges)


def cal_image(calvalues) -> int:
    return sum(int(c) << (CAL_BITS * t) for t, c in enumerate(calvalues))


def config_writes(weight_image: int, calvalues, drop: int) -> list[tuple[int, int]]:
    """(address, data) writes loading the weight image, the CALVALUEs and drop."""
    out = [(WEIGHT_BASE + a, (weight_image >> (CFG_DATA_BITS * a)) & _MASK)
           for a in range(-(-IMAGE_BITS // CFG_DATA_BITS))]
    cimg = cal_image(calvalues)
    out += [(CAL_BASE + a, (cimg >> (CFG_DATA_BITS * a)) & _MASK)
            for a in range(-(-N_TC * CAL_BITS // CFG_DATA_BITS))]
    return out + [(DROP_ADDR, int(drop))]


def _port_upset(bit: int, weight_image: int, calvalues, drop: int) -> tuple[int, int, int]:
    """(address, good word, bad word) of a configuration-register upset of global bit ``bit``."""
    if bit < IMAGE_BITS:
        a, b = divmod(bit, CFG_DATA_BITS)
        good = (weight_image >> (CFG_DATA_BITS * a)) & _MASK
        return WEIGHT_BASE + a, good, good ^ (1 << b)
    bit -= IMAGE_BITS
    if bit < N_TC * CAL_BITS:
        a, b = divmod(bit, CFG_DATA_BITS)
        good = (cal_image(calvalues) >> (CFG_DATA_BITS * a)) & _MASK
        return CAL_BASE + a, good, good ^ (1 << b)
    bit -= N_TC * CAL_BITS
    assert bit < DROP_BITS
    return DROP_ADDR, int(drop), int(drop) ^ (1 << bit)


def method_of(cls: str, hook: str) -> str:
    """How an upset of class ``cls`` is applied on a flavour whose hook reaches ``hook``
    (:data:`flow.hdl.flavours.SEU_HOOKS`): ``"hook"`` or ``"port"``."""
    if hook not in SEU_HOOKS:
        raise ConfigError(f"seu_hook: expected one of {SEU_HOOKS}, got {hook!r}")
    return "hook" if hook == "all" or cls not in CONFIG_CLASSES else "port"


def plan_upsets(n: int, rng: np.random.Generator, *, hook: str, latent_bits: int, fe_reg: bool,
                weight_image: int, calvalues, drop: int, tmr: bool = False) -> list[dict]:
    """``n`` random single upsets, an equal share per class (the remainder to the first
    classes), bits uniform within a class; ``hook``: the registers the flavour's hook
    reaches (:func:`method_of`); ``tmr``: hook upsets also draw the TMR copy (0-2).
    Shuffled, so that the classes interleave in time."""
    cls = classes(True, latent_bits, fe_reg)
    names = list(cls)
    share = [n // len(names) + (i < n % len(names)) for i in range(len(names))]
    ups = []
    for name, k in zip(names, share, strict=True):
        ranges = cls[name]
        sizes = np.array([hi - lo for lo, hi in ranges])
        for r in rng.random(k) * sizes.sum():
            j = int(np.searchsorted(np.cumsum(sizes), r, side="right"))
            bit = ranges[j][0] + int(r - (sizes[:j].sum()))
            u = {"class": name, "bit": bit}
            if method_of(name, hook) == "hook":
                u.update(method="hook")
                if tmr:
                    u.update(copy=int(rng.integers(0, 3)))
            else:
                addr, good, bad = _port_upset(bit, weight_image, calvalues, drop)
                u.update(method="port", addr=addr, good=good, bad=bad)
            ups.append(u)
    order = rng.permutation(len(ups))
    return [ups[i] for i in order]


def make_plan(flavour: str, upsets: list[dict], *, vectors: Path, max_vectors: int,
              latent_bits: int, config: list[tuple[int, int]], out: Path, tmr: bool = False) -> dict:
    """The testbench's plan; ``period``: :data:`PERIOD_HOOK` when every upset is a hook
    upset, else :data:`PERIOD_PORT`; ``tmr``: the flavour corrects upsets (recorded for
    :func:`analyse`)."""
    hook_only = all(u["method"] == "hook" for u in upsets)
    return {"flavour": flavour, "tmr": bool(tmr), "vectors": str(vectors), "max_vectors": int(max_vectors),
            "word_bits": WORD_BITS, "latent_bits": int(latent_bits), "n_latent": N_LATENT,
            "config": [[int(a), int(d)] for a, d in config], "upsets": upsets,
            "start": START, "period": PERIOD_HOOK if hook_only else PERIOD_PORT, "hold": HOLD, "tail": TAIL,
            "out": str(out)}


def run_tb(top: str, build_dir: Path, plan: dict, plan_path: Path, *, log: Path | None = None) -> dict:
    """Run the campaign testbench on a built model; returns its JSON record plus the npz
    arrays (``latent``, ``sum_code``, ``valid_clocks``, ``seu_count``)."""
    from cocotb_tools.runner import get_runner

    plan_path.write_text(json.dumps(plan))
    out = Path(plan["out"])
    for suf in (".json", ".npz"):
        out.with_suffix(suf).unlink(missing_ok=True)
    xml = Path(build_dir) / f"results_seu_{plan['flavour']}.xml"
    xml.unlink(missing_ok=True)
    saved_path = list(sys.path)
    sys.path[:0] = [str(TB_DIR)]
    saved = {k: os.environ.get(k) for k in ("ECONT_SEU_PLAN", "PYTEST_CURRENT_TEST")}
    os.environ["ECONT_SEU_PLAN"] = str(plan_path)
    os.environ.pop("PYTEST_CURRENT_TEST", None)    # else the runner sys.exit()s on a failed test
    t0 = time.perf_counter()
    with sim_env():
        try:
            get_runner("verilator").test(
                test_module=TB_MODULE, hdl_toplevel=top, build_dir=str(build_dir), test_dir=str(build_dir),
                hdl_toplevel_lang="verilog", extra_env={"ECONT_SEU_PLAN": str(plan_path)},
                results_xml=str(xml), log_file=str(log) if log else None)
        except (SystemExit, Exception) as err:
            if not out.with_suffix(".json").exists():
                tail = "\n".join(log.read_text().splitlines()[-30:]) if log and log.exists() else ""
                raise SimError(f"SEU campaign on {top} crashed ({err}):\n{tail}") from None
        finally:
            sys.path[:] = saved_path
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    if not out.with_suffix(".json").exists():
        tail = "\n".join(log.read_text().splitlines()[-30:]) if log and log.exists() else ""
        raise SimError(f"SEU campaign on {top} wrote no results:\n{tail}")
    res = json.loads(out.with_suffix(".json").read_text())
    with np.load(out.with_suffix(".npz")) as z:
        res.update({k: z[k] for k in z.files})
    res["run_wall_s"] = round(time.perf_counter() - t0, 2)
    return res


#: what an upset's corruption lasts, per method (``tmr``: the flavour corrects it)
DURATION = {
    "tmr": "none: each upset is outvoted at once and refreshed away at the next rising edge",
    "port": "until the register is rewritten (here: held {hold} clocks, then rewritten through the port; "
            "the wafers after the rewrite are right again, 'corrupted_after_restore')",
    "hook": "until the register loads the next wafer (one clock while wafers stream back to back): "
            "the wafer in flight is wrong, or lost when a valid bit is cleared",
}


def _wafer_of_output(res: dict, n_out: int) -> np.ndarray:
    """The input wafer (= clock it was sampled at) of each recorded output: the clock the
    testbench saw it at minus the pipeline delay, measured on the first output (wafer 0:
    no upset comes before clock ``START``, after the pipeline is full).  Older records
    without clocks: outputs in order."""
    clocks = np.asarray(res.get("valid_clocks", np.arange(n_out)), np.int64)[:n_out]
    if len(clocks) != n_out:
        raise SimError(f"SEU campaign: expected a clock per recorded output ({n_out}), got {len(clocks)}")
    return clocks - (clocks[0] if n_out else 0)


def analyse(plan: dict, res: dict, vectors: dict, *, bits: dict[str, int] | None = None) -> dict:
    """Compare the recorded outputs with the vector file's golden codes (wafer k of the
    stream is vector ``k mod N``; each output is matched to its wafer by the clock it came
    out at, so a lost or extra ``valid_out`` pulse costs that wafer only) and attribute
    every corrupted wafer to the upset whose window holds it (upset i applied at clock
    ``t = start + i * period`` owns the wafers ``[t - 1, t + period - 1)``).  Returns
    per-flavour totals, per-class statistics and one row per upset."""
    ups = plan["upsets"]
    n_up = len(ups)
    start, period, hold = plan["start"], plan["period"], plan["hold"]
    n_in = int(res["n_wafers_in"])
    mv = int(plan.get("max_vectors") or 0)
    exp_lat = np.asarray(vectors["latent"])[:mv or None].astype(np.int64)
    exp_sum = np.asarray(vectors["sum_code"])[:mv or None].astype(np.int64)
    got_lat, got_sum = np.asarray(res["latent"], np.int64), np.asarray(res["sum_code"], np.int64)
    n_out = len(got_sum)
    wafer = _wafer_of_output(res, n_out)
    ok = (wafer >= 0) & (wafer < n_in)
    extra_out = int((~ok).sum())                 # outputs of no input wafer
    w_ok = wafer[ok]
    vec = w_ok % len(exp_lat)
    lat_bad_rows = got_lat[ok] != exp_lat[vec]
    bad = np.ones(n_in, dtype=bool)              # a missing output is a corrupted wafer
    bad[w_ok] = lat_bad_rows.any(1) | (got_sum[ok] != exp_sum[vec])
    out_of = np.full(n_in, -1, np.int64)         # the recorded output of each wafer
    out_of[w_ok] = np.flatnonzero(ok)
    owner = (np.arange(n_in) - (start - 1)) // period
    owner[(owner < 0) | (owner >= n_up)] = -1
    tmr = bool(plan["tmr"])
    rows = []
    first_bad = []
    seu = np.asarray(res.get("seu_count", np.zeros(n_up)), np.int64)
    seu_inc = np.diff(np.concatenate([[int(res.get("seu_count_before", 0))], seu]))
    for i, u in enumerate(ups):
        t = start + i * period
        ks = np.flatnonzero(bad[t - 1:t - 1 + period]) + (t - 1)
        port = u["method"] == "port"
        row = {"class": u["class"], "bit": u["bit"], "n_corrupted": int(len(ks)),
               "first": int(ks[0] - t) if len(ks) else -1, "last": int(ks[-1] - t) if len(ks) else -1,
               "after_restore": int((ks > t + hold).sum()) if port else int(len(ks)),
               "seu_inc": int(seu_inc[i])}
        if len(ks) and len(first_bad) < 5:
            k = int(ks[0])
            o = int(out_of[k])
            kv = k % len(exp_lat)
            j = np.flatnonzero(got_lat[o] != exp_lat[kv]) if o >= 0 else []
            what = ("no output (valid_out missing)" if o < 0 else
                    f"latent[{j[0]}] expected {exp_lat[kv, j[0]]} got {got_lat[o, j[0]]}" if len(j)
                    else f"module_sum expected {exp_sum[kv]} got {got_sum[o]}")
            copy = f" copy {u['copy']}" if "copy" in u else ""
            first_bad.append(f"upset #{i} ({u['class']} bit {u['bit']}{copy}, {u['method']}): "
                             f"wafer {k} {what}")
        rows.append(row)
    unattributed = int(bad[owner < 0].sum()) + extra_out
    by_class = {}
    methods = {}
    for name in dict.fromkeys(u["class"] for u in ups):
        sel = [r for r, u in zip(rows, ups, strict=True) if r["class"] == name]
        meth = next(u["method"] for u in ups if u["class"] == name)
        methods[name] = meth
        port = meth == "port"
        nc = np.array([r["n_corrupted"] for r in sel])
        vis = [r for r in sel if r["n_corrupted"]]
        span = np.array([r["last"] - r["first"] + 1 for r in vis]) if vis else np.zeros(0)
        c = {"method": meth, "duration": DURATION["tmr" if tmr else meth].format(hold=hold),
             "n_upsets": len(sel), "n_bits": (bits or {}).get(name),
             "distinct_bits": len({r["bit"] for r in sel}),
             "upsets_corrupting": len(vis), "corrupted_wafers": int(nc.sum()),
             "corrupted_per_upset": round(float(nc.mean()), 4) if len(nc) else 0.0,
             "span_wafers_mean": round(float(span.mean()), 2) if len(span) else 0.0,
             "span_wafers_max": int(span.max()) if len(span) else 0,
             "last_corrupted_offset_max": max((r["last"] for r in vis), default=-1),
             "corrupted_after_restore": int(sum(r["after_restore"] for r in sel)) if port else None,
             "seu_count_increments": int(sum(r["seu_inc"] for r in sel))}
        if port:
            c["exposed_wafers"] = hold * len(sel)
            c["corrupted_fraction_while_held"] = round(c["corrupted_wafers"] / max(1, c["exposed_wafers"]), 5)
        by_class[name] = c
    corrected = int(res["seu_count_final"]) - int(res.get("seu_count_before", 0))
    used = sorted(set(methods.values()))
    if tmr:
        duration = DURATION["tmr"]
    else:
        duration = "; ".join(f"{m} ({', '.join(c for c, mm in methods.items() if mm == m)}): "
                             + DURATION[m].format(hold=hold) for m in used)
    out = {"method": "+".join(used), "duration": duration, "tmr": tmr, "injected": n_up,
           "corrected": corrected,
           "corrupted_wafers": int(bad.sum()) + extra_out, "unattributed_corrupted_wafers": unattributed,
           "missing_outputs": int((out_of < 0).sum()), "extra_outputs": extra_out,
           "n_wafers": n_in, "n_valid_out": n_out, "n_clocks": int(res["n_clocks"]),
           "period_clocks": period, "hold_clocks": hold if "port" in used else None,
           "sim_wall_s": res.get("sim_wall_s"), "run_wall_s": res.get("run_wall_s"),
           "clocks_per_s": res.get("clocks_per_s"), "classes": by_class, "first_corrupted": first_bad}
    port_cls = [c for c, m in methods.items() if m == "port"]
    if bits and port_cls:
        # a uniform fluence over the configuration bits reached through the port
        tot = sum(bits[c] for c in port_cls)
        out["corrupted_per_upset_bit_weighted"] = round(sum(
            bits[c] / tot * by_class[c]["corrupted_per_upset"] for c in port_cls), 4)
        out["corrupting_fraction_bit_weighted"] = round(sum(
            bits[c] / tot * by_class[c]["upsets_corrupting"] / max(1, by_class[c]["n_upsets"])
            for c in port_cls), 5)
    return out, rows


def check_tmr(flavour: str, r: dict) -> str | None:
    """The TMR pass criterion: 0 corrupted wafers and ``seu_count`` == upsets injected;
    an expected-vs-got message otherwise."""
    problems = []
    if r["corrupted_wafers"]:
        problems.append(f"expected 0 corrupted wafers, got {r['corrupted_wafers']} ("
                        + "; ".join(r["first_corrupted"][:3]) + ")")
    if r["corrected"] != r["injected"]:
        problems.append(f"expected seu_count {r['injected']} (one per injected upset), got {r['corrected']}")
    if r["n_valid_out"] != r["n_wafers"]:
        problems.append(f"expected {r['n_wafers']} valid outputs, got {r['n_valid_out']}")
    if not problems:
        return None
    return f"SEU campaign on {flavour} ({r['injected']} single upsets): " + "; ".join(problems)


def check_campaign(flavour: str, r: dict) -> str | None:
    """The invariants of a campaign on a flavour without TMR: every corrupted wafer lies in
    the window of some upset, and a configuration upset corrupts nothing once its word is
    rewritten; an expected-vs-got message otherwise (a fault of the hook, the testbench or
    the RTL, not an upset)."""
    problems = []
    if r["unattributed_corrupted_wafers"]:
        problems.append(f"expected 0 corrupted wafers outside the upsets' windows, got "
                        f"{r['unattributed_corrupted_wafers']}")
    after = {c: v["corrupted_after_restore"] for c, v in r["classes"].items()
             if v.get("corrupted_after_restore")}
    if after:
        problems.append(f"expected 0 corrupted wafers after the rewrite of an upset word, got {after}")
    if not problems:
        return None
    return f"SEU campaign on {flavour} ({r['injected']} single upsets): " + "; ".join(problems)


def save_rows(rows: list[dict], path: Path) -> None:
    names = sorted({r["class"] for r in rows})
    cols = ("class", "bit", "n_corrupted", "first", "last", "after_restore", "seu_inc")
    np.savez_compressed(path, class_names=np.array(names),
                        **{k: np.array([names.index(r[k]) if k == "class" else r[k] for r in rows], np.int64)
                           for k in cols})


def run_in_stage(ctx, *, rtl_dir: Path, meta: dict, vec_path: Path, weights_image: Path, latent_bits: int,
                 echo=print) -> dict | None:
    """The cosim stage's campaign (``cosim.seu_upsets`` per programmable flavour): builds each
    flavour's test build (``ECONT_SEU_INJECT``), writes ``cosim/seu.json``, sets the ``seu``
    metric; raises :class:`MismatchError` if a TMR flavour corrupts a wafer or miscounts, or
    a campaign on another flavour breaks its invariants (:func:`check_campaign`)."""
    from flow.core.vectors import read_vectors
    from flow.hdl import flavours as RF
    from flow.runner.atomic import atomic_write_json

    s = ctx.settings
    fls = [fl for fl in s.flavours if RF.get(fl).programmable]
    if not s.seu_upsets or not fls:
        return None
    v = read_vectors(vec_path)
    n_needed = START + s.seu_upsets * PERIOD_PORT + TAIL
    max_vec = min(len(v["words"]), n_needed)
    vecs = {"latent": v["latent"][:max_vec], "sum_code": v["sum_code"][:max_vec]}
    img = int.from_bytes(Path(weights_image).read_bytes(), "little")
    fe_reg = int(meta["interface"]["latency_cycles"]) == 2
    cfg = config_writes(img, v["calvalues"], int(v["drop"]))
    seu_dir = ctx.out / "seu"
    seu_dir.mkdir(parents=True, exist_ok=True)
    logs = ctx.out / "logs"
    report = {"n_upsets_per_flavour": s.seu_upsets, "hold_clocks": HOLD,
              "vectors": "convert/vectors.npz", "n_vectors_cycled": max_vec, "flavours": {}}
    fail = []
    for k, fl in enumerate(fls):
        spec = RF.get(fl)
        bdir = ctx.checkpoint_dir / "sim_build" / f"{fl}_seu"
        build_s = build(_sources(rtl_dir / fl), spec.top, bdir, opt=s.verilator_opt, jobs=s.build_jobs,
                        log=logs / f"build_{fl}_seu.log", defines=["ECONT_SEU_INJECT"])
        echo(f"[cosim] {fl}: SEU test build (ECONT_SEU_INJECT) in {build_s:.1f} s")
        rng = np.random.default_rng([ctx.seed, 17, k])
        cls = classes(True, latent_bits, fe_reg)
        ups = plan_upsets(s.seu_upsets, rng, hook=spec.seu_hook, tmr=spec.tmr, latent_bits=latent_bits,
                          fe_reg=fe_reg, weight_image=img, calvalues=v["calvalues"], drop=int(v["drop"]))
        plan = make_plan(fl, ups, tmr=spec.tmr, vectors=vec_path, max_vectors=max_vec,
                         latent_bits=latent_bits, config=cfg, out=bdir / f"seu_{fl}")
        res = run_tb(spec.top, bdir, plan, bdir / "seu_plan.json", log=logs / f"sim_{fl}_seu.log")
        r, rows = analyse(plan, res, vecs, bits={c: class_bits(x) for c, x in cls.items()})
        r["build_s"] = round(build_s, 2)
        r["class_ranges"] = {c: [list(x) for x in rr] for c, rr in cls.items()}
        save_rows(rows, seu_dir / f"campaign_{fl}.npz")
        report["flavours"][fl] = r
        echo(f"[cosim] {fl}: SEU campaign: {r['injected']} upsets ({r['method']}), {r['corrupted_wafers']} "
             f"corrupted wafers, seu_count {r['corrected']}, {r['n_clocks']} clocks in "
             f"{r['run_wall_s']:.0f} s")
        msg = check_tmr(fl, r) if spec.tmr else check_campaign(fl, r)
        if msg:
            fail.append(msg)
    report["sensitivity"] = ("seu/seu_sensitivity.json" if s.seu_sensitivity.enabled
                             else "not run (cosim.seu_sensitivity.enabled: false)")
    atomic_write_json(ctx.out / "seu.json", report)
    ctx.metrics["seu"] = {fl: {k: r[k] for k in ("injected", "corrected", "corrupted_wafers")}
                          for fl, r in report["flavours"].items()}
    for fl, r in report["flavours"].items():
        ctx.add_summary(f"{fl}: SEU campaign", f"{r['injected']} upsets, {r['corrupted_wafers']} corrupted "
                                               f"wafers, seu_count {r['corrected']}")
    if fail:
        raise MismatchError("\n".join(fail) + f"\nfull results: {ctx.out / 'seu.json'}")
    return report
