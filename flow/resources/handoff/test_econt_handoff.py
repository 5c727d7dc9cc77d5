"""cocotb testbench of the ECON-T autoencoder block, as shipped in the handoff archive.

Run by ``tb/run.py`` (cocotb's Python runner) once per flavour; the job
(JSON, path in ``$ECONT_HANDOFF_JOB``) names the flavour, the archive root and
where to write results.  Every expected value is an integer code from the
archive's ``vectors/`` (computed by the flow's bit-exact golden model); this
file computes nothing itself.

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

Results: ``<out_dir>/<flavour>_results.json``.  A test fails on any mismatch.
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
DEFAULT_SET = next((s for s in SETS if s.info.get("default_registers")), None)
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
    return res


def _fail_text(name: str, res: dict) -> str:
    first = "; ".join(f"#{m['index']} {m['field']} expected {m['expected']} got {m['got']}"
                      for m in res["first_mismatches"][:3])
    return f"{name}: {res['n_mismatch']} of {res['n_total']} wafers differ ({first})"


# ======================================================================= tests
@cocotb.test()
async def reset(dut):
    _idle(dut)
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
    RESULTS["checks"]["ii"] = {"ok": all(RESULTS["sets"][s.name].get("ii_contiguous") for s in SETS)}
    _save()
    assert not failures, "\n".join(failures)


@cocotb.test()
async def bubbles(dut):
    n = int(JOB.get("bubbles", 500))
    if n <= 0:
        return
    await _start(dut)
    _idle(dut)
    rng = random.Random(int(JOB.get("seed", 1)))
    vs = SETS[-1]
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
    vs = SETS[-1]
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
