"""cocotb testbench of the ECON-T autoencoder block, as shipped in the handoff archive.

Run by ``tb/run.py`` (cocotb's Python runner) once per flavour; the job
(JSON, path in ``$ECONT_HANDOFF_JOB``) names the flavour, the archive root and
where to write results.  Every expected value is an integer code from the
archive's ``vectors/`` (computed by the flow's bit-exact golden model); this
file computes nothing itself.  The flow's own cosimulation (``make cosim``)
runs this same file and ``run.py`` on vector sets it writes in the same format.

Tests, in order (state carries over between them):

1. ``reset``: rst + cfg_rst; outputs and valid_out are 0 and stay 0 with no input.
2. ``latency``: the first vector set's registers through the configuration
   port; one wafer; valid_out is a one-clock pulse exactly ``latency_cycles``
   after the sampling edge, with the expected value.
3. ``vectors``: every vector set of this flavour: its configuration writes
   (CALVALUEs, drop; the programmable flavour also its weight image) through
   the port, then all its wafers back to back (valid_in high every clock):
   valid_out must be high on N consecutive clocks (II = 1) and every output
   bit must match.
4. ``bubbles``: wafers with random gaps in valid_in (junk on tc_words in the gaps).
5. ``reset_midstream``: rst with wafers in flight drops them; the configuration
   survives it.
6. ``defaults``: scribble over the configuration, cfg_rst, stream the set that
   uses the default registers: the defaults (prog: the trained weights) are back.
7. ``readback``: a random configuration (programmable flavours: a random weight
   image; CALVALUEs; drop with junk above its two bits) through the port, then
   every address read back through ``cfg_re``/``cfg_rdata`` (one per clock) and
   a few unmapped ones: each returns what was written (weights: 0 on flavours
   whose weights are fixed; unmapped: 0); ``cfg_rdata`` holds while ``cfg_re``
   is low; ``seu_count`` is 0.
8. ``seu_inject``: only in test builds of the TMR flavour (``run.py
   --seu-inject``: Verilog macro ``ECONT_SEU_INJECT``, injection map in
   ``manifest.json``): while the first set streams, one bit of one register copy
   is flipped in a weight, a CALVALUE and an output register (three clocks);
   every output must still be right and ``seu_count`` must be 3.

``vectors`` also checks that ``seu_count`` stays 0 (no upset was injected).
Results: ``<out_dir>/<flavour>_results.json`` (job ``capture``: also the
captured outputs, ``<out_dir>/captured/<flavour>_<record>.hex``, one line
``index latent module_sum`` per wafer).  A test fails on any mismatch.
"""
from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import cocotb
import econt_vectors as V
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

JOB = json.loads(Path(os.environ["ECONT_HANDOFF_JOB"]).read_text())
ROOT = Path(JOB["root"])
FLAVOUR = JOB["flavour"]
META = V.load_meta(ROOT)
LB = int(META["latent_bits"])
N_LATENT = int(META["n_latent"])
WORD_BITS = int(META["word_bits"])
N_TC = int(META["n_tc"])
SETS = [s for s in V.load_sets(ROOT, FLAVOUR) if not JOB.get("sets") or s.name in JOB["sets"]]
BY_NAME = {s.name: s for s in SETS}
DEFAULT_SET = (BY_NAME.get(JOB.get("defaults_set"))
               or next((s for s in SETS if s.info.get("default_registers")), None))
#: the sets the bubbles and reset_midstream tests stream (default: the last one)
BUBBLES_SET = BY_NAME.get(JOB.get("bubbles_set"), SETS[-1] if SETS else None)
MIDSTREAM_SET = BY_NAME.get(JOB.get("midstream_set"), SETS[-1] if SETS else None)
PROGRAMMABLE = bool(JOB.get("programmable", True))
#: the configuration address map (registers/registers.json)
AMAP = json.loads((ROOT / "registers" / "registers.json").read_text())["address_map"]
FIRST_N = int(JOB.get("first_mismatches", 20))
RESULTS: dict = {"flavour": FLAVOUR, "top": JOB["top"], "sets": {}, "checks": {}}


def _save():
    out = Path(JOB["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{FLAVOUR}_results.json").write_text(json.dumps(RESULTS, indent=1))


async def _start(dut):
    cocotb.start_soon(Clock(dut.clk, float(JOB.get("clock_ns", 25.0)), unit="ns").start())
    await FallingEdge(dut.clk)


def _idle(dut):
    dut.valid_in.value = 0
    dut.cfg_we.value = 0
    dut.cfg_re.value = 0
    dut.rst.value = 0
    dut.cfg_rst.value = 0


async def _configure(dut, writes):
    """(address, data) writes, one per clock: each is set up after one rising
    edge and sampled at the next."""
    for addr, data in writes:
        dut.cfg_addr.value = addr
        dut.cfg_wdata.value = data
        dut.cfg_we.value = 1
        await RisingEdge(dut.clk)
    dut.cfg_we.value = 0


def _outputs(dut) -> tuple[int, int, int]:
    return int(dut.valid_out.value), dut.latent.value.to_unsigned(), dut.module_sum.value.to_unsigned()


async def _stream(dut, words: list, valid=None, junk=None) -> dict:
    """Drive the wafers (one per clock where ``valid``); capture every valid
    output in order.  Inputs change right after a rising edge and are sampled
    at the next one; outputs are read at the same point."""
    n = len(words)
    lat_out, sum_out, vflags = [], [], []
    clk, tc, vin, vout = dut.clk, dut.tc_words, dut.valid_in, dut.valid_out
    lat, msum = dut.latent, dut.module_sum
    await RisingEdge(clk)
    t0 = time.perf_counter()
    i = cycles = drain = 0
    while drain < 8:
        if i < n and (valid is None or cycles >= len(valid) or valid[cycles]):
            tc.value = words[i]
            vin.value = 1
            i += 1
        else:
            if junk:
                tc.value = junk[cycles % len(junk)]
            vin.value = 0
        await RisingEdge(clk)
        cycles += 1
        v = int(vout.value)
        vflags.append(v)
        if v:
            lat_out.append(lat.value.to_unsigned())
            sum_out.append(msum.value.to_unsigned())
        if i >= n and not v:
            drain += 1
        if cycles > 4 * n + 64 + (len(valid) if valid is not None else 0):
            break
    vin.value = 0
    wall = time.perf_counter() - t0
    idx = [c for c, f in enumerate(vflags) if f]
    contiguous = len(idx) == n and (n == 0 or idx[-1] - idx[0] == n - 1)
    return {"latent": lat_out, "sums": sum_out, "cycles": cycles, "wall_s": round(wall, 3),
            "wafers_per_s": round(n / wall, 1) if wall > 0 else None, "contiguous": contiguous}


def _record(name: str, vs: V.VectorSet, cap: dict, index=None) -> dict:
    n = len(vs) if index is None else len(index)
    if len(cap["latent"]) != n:
        res = {"n_total": n, "n_mismatch": n, "n_field_mismatch": None,
               "first_mismatches": [{"set": vs.name, "index": None, "field": "valid_out",
                                     "expected": n, "got": len(cap["latent"])}],
               "error": f"{n} wafers in, {len(cap['latent'])} valid outputs"}
    else:
        res = V.compare(vs, cap["latent"], cap["sums"], LB, N_LATENT, FIRST_N, index)
    res.update({k: cap[k] for k in ("cycles", "wall_s", "wafers_per_s")})
    RESULTS["sets"][name] = res
    _save()
    if JOB.get("capture"):
        out = Path(JOB["out_dir"]) / "captured"
        out.mkdir(parents=True, exist_ok=True)
        idx = range(len(vs)) if index is None else index
        (out / f"{FLAVOUR}_{name.replace(':', '_')}.hex").write_text("".join(
            f"{i:x} {la:x} {su:x}\n" for i, la, su in zip(idx, cap["latent"], cap["sums"], strict=False)))
    return res


def _seu_count(dut) -> int:
    return dut.seu_count.value.to_unsigned()


async def _power_up(dut):
    """Inputs to 0, the clock started, rst and cfg_rst held for 3 clocks, then released."""
    dut.tc_words.value = 0
    dut.cfg_addr.value = 0
    dut.cfg_wdata.value = 0
    dut.rst.value = 1
    dut.cfg_rst.value = 1
    await _start(dut)
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    dut.cfg_rst.value = 0


def _fail_text(name: str, res: dict) -> str:
    first = "; ".join(f"#{m['index']} {m['field']} expected {m['expected']} got {m['got']}"
                      for m in res["first_mismatches"][:3])
    return f"{name}: {res['n_mismatch']} of {res['n_total']} wafers differ ({first})"


# ======================================================================= tests
@cocotb.test()
async def reset(dut):
    _idle(dut)
    await _power_up(dut)
    seen = []
    for _ in range(6):
        await FallingEdge(dut.clk)
        seen.append(_outputs(dut))
    ok = all(s == (0, 0, 0) for s in seen)
    RESULTS["checks"]["reset"] = {"ok": ok}
    _save()
    assert ok, f"outputs not cleared by reset: {seen}"


@cocotb.test()
async def latency(dut):
    await _start(dut)
    _idle(dut)
    vs = SETS[0]
    await _configure(dut, vs.config)
    await FallingEdge(dut.clk)
    i = max(range(len(vs)), key=lambda k: sum(V.unpack(vs.words[k], WORD_BITS, N_TC)))  # a busy wafer
    dut.tc_words.value = vs.words[i]
    dut.valid_in.value = 1
    # cycle 0 ends with the rising edge that samples the wafer; the latency is
    # the cycle in which the result is on the output ports
    lat = got = None
    trace = []
    for cycle in range(1, 9):
        await RisingEdge(dut.clk)
        await ReadOnly()
        v = _outputs(dut)
        trace.append(v[0])
        if v[0] and lat is None:
            lat, got = cycle, v
        if cycle == 1:
            await FallingEdge(dut.clk)
            dut.valid_in.value = 0
            dut.tc_words.value = 0
    await FallingEdge(dut.clk)
    want = int(JOB["latency_cycles"])
    value_ok = got is not None and got[1] == vs.latent[i] and got[2] == vs.sums[i]
    RESULTS["checks"]["latency"] = {"ok": lat == want and sum(trace) == 1 and value_ok,
                                    "latency_cycles": lat, "documented_cycles": want,
                                    "valid_out_trace": trace, "value_ok": value_ok, "set": vs.name,
                                    "index": i}
    _save()
    assert lat is not None, "no valid_out within 8 clocks"
    assert sum(trace) == 1, f"valid_out is not a one-clock pulse: {trace}"
    assert lat == want, f"latency {lat} clocks, documented {want}"
    assert value_ok, (f"latency probe ({vs.name} #{i}): expected latent {vs.latent[i]:#x} sum "
                      f"{vs.sums[i]}, got {got[1]:#x} / {got[2]}")


@cocotb.test()
async def vectors(dut):
    await _start(dut)
    _idle(dut)
    failures = []
    for vs in SETS:
        await _configure(dut, vs.config)
        cap = await _stream(dut, vs.words)
        res = _record(vs.name, vs, cap)
        res.update({"ii_contiguous": cap["contiguous"], "config_writes": len(vs.config)})
        _save()
        if res["n_mismatch"]:
            failures.append(_fail_text(vs.name, res))
        if not cap["contiguous"]:
            failures.append(f"{vs.name}: valid_out has gaps while valid_in was high every clock (II != 1)")
    RESULTS["checks"]["ii"] = {"ok": all(RESULTS["sets"][s.name].get("ii_contiguous") for s in SETS),
                               "n_sets": len(SETS)}
    seu = _seu_count(dut)
    RESULTS["checks"]["seu_count_stream"] = {"ok": seu == 0, "seu_count": seu}
    _save()
    if seu:
        failures.append(f"seu_count is {seu} after streaming, no upset was injected")
    assert not failures, "\n".join(failures)


@cocotb.test()
async def bubbles(dut):
    n = int(JOB.get("bubbles", 500))
    if n <= 0:
        return
    await _start(dut)
    _idle(dut)
    rng = random.Random(int(JOB.get("seed", 1)))
    vs = BUBBLES_SET
    await _configure(dut, vs.config)
    index = sorted(rng.sample(range(len(vs)), min(n, len(vs))))
    valid = [rng.random() < 0.6 for _ in range(4 * len(index))]
    junk = [rng.getrandbits(N_TC * WORD_BITS) for _ in range(257)]
    cap = await _stream(dut, [vs.words[i] for i in index], valid=valid, junk=junk)
    res = _record(f"bubbles:{vs.name}", vs, cap, index)
    assert res["n_mismatch"] == 0, _fail_text(f"bubbles:{vs.name}", res)


@cocotb.test()
async def reset_midstream(dut):
    await _start(dut)
    _idle(dut)
    vs = MIDSTREAM_SET
    await _configure(dut, vs.config)
    await FallingEdge(dut.clk)
    for w in vs.words[:3]:                  # three wafers enter the pipeline ...
        dut.tc_words.value = w
        dut.valid_in.value = 1
        await FallingEdge(dut.clk)
    dut.valid_in.value = 0
    dut.rst.value = 1                       # ... and are dropped by the reset
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    after = []
    for _ in range(4):
        after.append(_outputs(dut))
        await FallingEdge(dut.clk)
    cleared = all(a == (0, 0, 0) for a in after)
    # the configuration survives rst: the next wafers are right without reloading
    index = list(range(min(64, len(vs))))
    cap = await _stream(dut, [vs.words[i] for i in index])
    res = _record(f"after_reset:{vs.name}", vs, cap, index)
    RESULTS["checks"]["reset_midstream"] = {"ok": cleared and res["n_mismatch"] == 0}
    _save()
    assert cleared, f"rst did not clear the pipeline: {after}"
    assert res["n_mismatch"] == 0, _fail_text(f"after_reset:{vs.name}", res)


@cocotb.test()
async def defaults(dut):
    if DEFAULT_SET is None:
        return
    await _start(dut)
    _idle(dut)
    rng = random.Random(int(JOB.get("seed", 1)) + 1)
    # scribble over every configuration register (weights too; const ignores them)
    scribble = [(a, rng.getrandbits(32)) for a, _ in DEFAULT_SET.config]
    await _configure(dut, scribble)
    dut.cfg_rst.value = 1                   # set after a rising edge, sampled at the next
    await RisingEdge(dut.clk)
    dut.cfg_rst.value = 0
    index = list(range(min(int(JOB.get("defaults", 1000)), len(DEFAULT_SET))))
    cap = await _stream(dut, [DEFAULT_SET.words[i] for i in index])
    res = _record(f"defaults:{DEFAULT_SET.name}", DEFAULT_SET, cap, index)
    RESULTS["checks"]["defaults"] = {"ok": res["n_mismatch"] == 0, "set": DEFAULT_SET.name}
    _save()
    assert res["n_mismatch"] == 0, _fail_text(f"defaults:{DEFAULT_SET.name}", res)


# ------------------------------------------------------------ read-back
def _readback_expected(writes) -> dict[int, int]:
    """What reading every written address (and a few unmapped ones) returns: the written
    words, drop masked to its bits, weight addresses 0 where the weights are fixed,
    unmapped addresses 0 (INTERFACE.md, "Read-back")."""
    wb, ww, cb, cw, da = (int(AMAP[k]) for k in ("weight_base", "weight_words", "cal_base", "cal_words",
                                                 "drop_addr"))
    unmapped = (wb + ww, cb - 1, cb + cw, da + 1, (1 << int(AMAP["addr_bits"])) - 1)
    want = {a: 0 for a in unmapped}
    # the weight image's last word holds only its remaining bits (all 32 for the ECON-T)
    last_bits = int(AMAP.get("image_bits", 32 * ww)) - 32 * (ww - 1)
    for a, d in writes:
        if wb <= a < wb + ww:
            keep = d & ((1 << last_bits) - 1) if a == wb + ww - 1 else d
            want[a] = keep if PROGRAMMABLE else 0
        elif cb <= a < cb + cw:
            want[a] = d
        elif a == da:
            want[a] = d & ((1 << int(AMAP.get("drop_bits", 2))) - 1)
    return want


async def _read_back(dut, addresses) -> list[int]:
    """Read ``addresses`` through cfg_re/cfg_rdata, one per clock: each read is set up at a
    falling edge, sampled at the rising edge after it, and its word read from cfg_rdata at
    the next falling edge (one clock after cfg_re), where the next read is set up."""
    got = []
    await FallingEdge(dut.clk)
    for addr in addresses:
        dut.cfg_addr.value = addr
        dut.cfg_re.value = 1
        await FallingEdge(dut.clk)
        got.append(dut.cfg_rdata.value.to_unsigned())
    dut.cfg_re.value = 0
    return got


@cocotb.test()
async def readback(dut):
    await _start(dut)
    _idle(dut)
    rng = random.Random(int(JOB.get("seed", 1)) + 6)
    wb, ww, cb, cw = (int(AMAP[k]) for k in ("weight_base", "weight_words", "cal_base", "cal_words"))
    # a random configuration, the drop word with junk above its bits; weight words are
    # written on every flavour (ignored where the weights are fixed)
    writes = [(wb + a, rng.getrandbits(32)) for a in range(ww)]
    writes += [(cb + a, rng.getrandbits(32)) for a in range(cw)]
    writes.append((int(AMAP["drop_addr"]), rng.getrandbits(32)))
    await _configure(dut, writes)
    want = _readback_expected(writes)
    addrs = list(want)
    rng.shuffle(addrs)                      # any order: no address depends on the previous read
    got = await _read_back(dut, addrs)
    bad = [(hex(a), want[a], g) for a, g in zip(addrs, got, strict=True) if g != want[a]]
    # cfg_rdata holds the last word while cfg_re is low (another address on cfg_addr)
    held = []
    dut.cfg_addr.value = int(addrs[0])
    for _ in range(3):
        await FallingEdge(dut.clk)
        held.append(dut.cfg_rdata.value.to_unsigned())
    seu = _seu_count(dut)
    RESULTS["checks"]["readback"] = {"ok": not bad and held == [got[-1]] * 3 and seu == 0,
                                     "n_read": len(addrs), "n_mismatch": len(bad),
                                     "first_mismatches": bad[:10], "held": held == [got[-1]] * 3,
                                     "seu_count": seu, "programmable": PROGRAMMABLE}
    _save()
    assert not bad, f"read-back differs from what was written at {len(bad)} addresses: {bad[:5]}"
    assert held == [got[-1]] * 3, f"cfg_rdata did not hold {got[-1]} while cfg_re was low: {held}"
    assert seu == 0, f"seu_count is {seu}, no upset was injected"


# ------------------------------------------------- SEU injection (test builds)
async def _inject(dut, after_falling_edges: int, copy: int, bit: int, log: list):
    """Flip bit ``bit`` (global index) of TMR copy ``copy`` at the rising edge after the
    ``after_falling_edges``-th falling edge from now."""
    for _ in range(after_falling_edges):
        await FallingEdge(dut.clk)
    dut.seu_inj_copy.value = copy
    dut.seu_inj_bit.value = bit
    dut.seu_inj_en.value = 1
    await FallingEdge(dut.clk)
    dut.seu_inj_en.value = 0
    log.append({"copy": copy, "bit": bit, "seu_count_after": _seu_count(dut)})


@cocotb.test(skip=not JOB.get("seu_inject"))
async def seu_inject(dut):
    """Test build of a TMR flavour: single upsets in the weight, CALVALUE and output
    registers while streaming are corrected (0 wrong outputs) and counted (seu_count)."""
    imap = JOB["seu_inject"]
    _idle(dut)
    dut.seu_inj_en.value = 0
    dut.seu_inj_copy.value = 0
    dut.seu_inj_bit.value = 0
    await _power_up(dut)
    vs = SETS[0]
    await _configure(dut, vs.config)
    assert _seu_count(dut) == 0, "seu_count is not 0 after reset and configuration"
    rng = random.Random(int(JOB.get("seed", 1)) + 8)
    n = len(vs)
    # one upset each: a weight bit (copy 1), a CALVALUE bit (copy 2), an output latent bit
    # (copy 0), at different clocks while the wafers stream
    upsets = [(1, rng.randrange(*imap["weights"])), (2, rng.randrange(*imap["calvalues"])),
              (0, imap["outputs"][0] + rng.randrange(LB * N_LATENT))]
    log: list = []
    for k, (copy, bit) in enumerate(upsets):
        cocotb.start_soon(_inject(dut, (k + 1) * n // 4, copy, bit, log))
    cap = await _stream(dut, vs.words)
    res = _record("seu_inject", vs, cap)
    seu = _seu_count(dut)
    RESULTS["checks"]["seu_inject"] = {"ok": res["n_mismatch"] == 0 and seu == len(upsets),
                                       "upsets": log, "seu_count": seu, "n_wafers": n, "set": vs.name}
    _save()
    assert len(log) == len(upsets), f"only {len(log)} of {len(upsets)} upsets were injected"
    assert res["n_mismatch"] == 0, _fail_text("seu_inject", res)
    assert seu == len(upsets), f"seu_count {seu} after {len(upsets)} corrected upsets"
