"""cocotb testbench of the ECON-T autoencoder block (every RTL flavour).

Run by ``flow/cosim_sim.py`` (cocotb's Python runner, Verilator).  The job
(``$ECONT_TB_JOB``) says which flavour, whether its weights are programmable
(the flavour registry's fact, ``flow/rtl_flavours.py``), which vectors and
where to write results; expected values come from ``model/econt_model.py`` (golden models)
or from the ``convert`` stage's vectors.

Tests, in order (state carries over between them):

1. ``reset``: outputs and valid_out are 0 under reset and stay so with no input.
2. ``latency``: one wafer -> valid_out exactly ``latency`` rising edges later,
   a one-clock pulse, correct value; sampled at falling edges (unambiguous).
3. ``stream``: every vector back to back (valid_in high every clock); checks
   II = 1 (valid_out high on N consecutive clocks) and every output bit.
4. ``bubbles``: wafers with random gaps in valid_in (junk words in the gaps).
5. ``reset_midstream``: rst while wafers are in flight drops them; the
   configuration survives; streaming resumes correctly.
6. ``reconfigure``: new CALVALUEs + drop (and, programmable flavours, a random
   weight set) through the configuration port; stream; compare with the golden model;
   then reload the job's configuration and check again.
7. ``alt_registers``: the ``convert`` stage's extra vector files (other
   CALVALUEs and drop) through the configuration port.
8. ``defaults``: cfg_rst restores the default configuration (programmable: the
   trained weight image); stream; compare.
9. ``readback``: a random configuration (programmable: a random weight image;
   CALVALUEs; drop with junk in the unused data bits) through the port, then
   every address read back through ``cfg_re``/``cfg_rdata`` (one per clock)
   and a few unmapped ones: each returns what was written (weights: 0 on
   fixed-weight flavours; unmapped: 0); ``cfg_rdata`` holds while ``cfg_re``
   is low.  ``seu_count`` is 0 (no upsets are injected here).

``stream`` also checks that ``seu_count`` stays 0.

Test builds of the TMR flavour (job ``seu_inject``, Verilog macro
``ECONT_SEU_INJECT``) run ``seu_inject`` alone: while wafers stream, one bit of
one copy is flipped in a weight, a CALVALUE and an output register (each at
another clock); every output must still be right and ``seu_count`` must be 3.

Results: ``<out_dir>/<flavour>_<phase>.npz`` (words, expected, got) and
``<out_dir>/<flavour>_results.json`` (per-phase mismatch summary, latency,
II, throughput).  A test fails if any output differs.
"""
from __future__ import annotations

import json
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge
from model import econt_model as M

JOB = M.load_job()
RESULTS: dict = {"flavour": JOB.flavour, "phases": {}, "checks": {}}
CLOCK_NS = 10


def _save_results():
    (JOB.out_dir / f"{JOB.flavour}_results.json").write_text(json.dumps(RESULTS, indent=2))


async def _start(dut):
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    await FallingEdge(dut.clk)


def _idle(dut):
    dut.valid_in.value = 0
    dut.cfg_we.value = 0
    dut.cfg_re.value = 0
    dut.rst.value = 0
    dut.cfg_rst.value = 0


async def _configure(dut, writes):
    """Drive (address, data) writes, one per clock: each is set up after one
    rising edge and sampled at the next (wherever in the cycle we start)."""
    for addr, data in writes:
        dut.cfg_addr.value = addr
        dut.cfg_wdata.value = data
        dut.cfg_we.value = 1
        await RisingEdge(dut.clk)
    dut.cfg_we.value = 0


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


def _seu_count(dut) -> int:
    return dut.seu_count.value.to_unsigned()


def _outputs(dut) -> tuple[int, int, int]:
    return (int(dut.valid_out.value), dut.latent.value.to_unsigned(), dut.module_sum.value.to_unsigned())


async def _stream(dut, phase: M.Phase, valid: np.ndarray | None = None, junk: np.ndarray | None = None):
    """Drive the phase's wafers (one per clock where ``valid``), capture outputs in order.

    Inputs change right after a rising edge and are sampled at the next one;
    outputs are read at the same point (they hold the value registered at the
    edge just passed).  Returns (II check, wall time, cycles).
    """
    words = M.pack_fields(phase.words, M.WORD_BITS)
    n = len(words)
    if valid is None:
        valid = np.ones(n, dtype=bool)
    junk_words = M.pack_fields(junk, M.WORD_BITS) if junk is not None else None
    lat_out, sum_out, vflags = [], [], []
    clk = dut.clk
    tc, vin, vout, lat, msum = dut.tc_words, dut.valid_in, dut.valid_out, dut.latent, dut.module_sum
    await RisingEdge(clk)
    t0 = time.perf_counter()
    i = j = 0
    cycles = 0
    drain = 0
    while drain < 8:
        if i < n and (valid[cycles] if cycles < len(valid) else True):
            tc.value = words[i]
            vin.value = 1
            i += 1
        else:
            if junk_words is not None:
                tc.value = junk_words[cycles % len(junk_words)]
            vin.value = 0
        await RisingEdge(clk)
        cycles += 1
        v = int(vout.value)
        vflags.append(v)
        if v:
            lat_out.append(lat.value.to_unsigned())
            sum_out.append(msum.value.to_unsigned())
            j += 1
        if i >= n and not v:
            drain += 1
    vin.value = 0
    wall = time.perf_counter() - t0
    phase.got_latent = M.unpack_fields(lat_out, JOB.latent_bits, M.N_LATENT) if lat_out else \
        np.zeros((0, M.N_LATENT), np.int64)
    phase.got_sums = np.asarray(sum_out, dtype=np.int64)
    if len(phase.got_sums) != n:
        raise AssertionError(f"{phase.name}: {n} wafers in, {len(phase.got_sums)} valid outputs")
    vf = np.asarray(vflags, dtype=bool)
    phase.extra.update({"cycles": cycles, "sim_wall_s": round(wall, 3),
                        "wafers_per_s": round(n / wall, 1) if wall > 0 else None})
    return vf, wall


def _check(phase: M.Phase):
    res = M.compare(phase, JOB.first_n)
    M.save_phase(phase, JOB.out_dir, JOB.flavour)
    RESULTS["phases"][phase.name] = res
    _save_results()
    assert res["n_mismatch"] == 0, (f"{phase.name}: {res['n_mismatch']} of {res['n_total']} wafers "
                                    f"differ; first: {res['first_mismatches'][:3]}")


def _phase(name, words, calvalues, drop, weights, kind_name) -> M.Phase:
    lat, sums = M.expected(words, calvalues, drop, weights, JOB.latent_bits)
    return M.Phase(name, words, lat, sums, np.zeros(len(words), np.int64), [kind_name])


async def _load_job_config(dut):
    writes = M.config_writes(JOB.calvalues, JOB.drop, JOB.weights if JOB.programmable else None)
    await _configure(dut, writes)
    return len(writes)


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


# ======================================================================= tests
@cocotb.test()
async def reset(dut):
    _idle(dut)
    await _power_up(dut)
    seen = []
    for _ in range(6):
        await FallingEdge(dut.clk)
        seen.append(_outputs(dut))
    assert all(s == (0, 0, 0) for s in seen), f"outputs not cleared by reset: {seen}"
    n = await _load_job_config(dut)
    RESULTS["checks"]["reset"] = {"ok": True, "config_writes": n}
    _save_results()


@cocotb.test()
async def latency(dut):
    await _start(dut)
    _idle(dut)
    i = int(np.argmax(JOB.vectors.words.sum(1)))          # a busy wafer
    word = M.pack_fields(JOB.vectors.words[i:i + 1], M.WORD_BITS)[0]
    dut.tc_words.value = word
    dut.valid_in.value = 1
    # clock cycle 0 ends with the edge that samples the wafer; cycle c starts with
    # rising edge c - 1.  The latency is the cycle in which the result is on the ports.
    lat = None
    got = None
    trace = []
    for cycle in range(1, 9):
        await RisingEdge(dut.clk)                           # edge cycle - 1 (edge 0 samples)
        await ReadOnly()
        v = _outputs(dut)
        trace.append(v[0])
        if v[0] and lat is None:
            lat, got = cycle, v
        if cycle == 1:                                      # one wafer only
            await FallingEdge(dut.clk)
            dut.valid_in.value = 0
            dut.tc_words.value = 0
    await FallingEdge(dut.clk)
    assert lat is not None, "no valid_out within 8 clocks"
    assert sum(trace) == 1, f"valid_out is not a one-clock pulse: {trace}"
    want_lat = M.pack_fields(JOB.vectors.latent[i:i + 1], JOB.latent_bits)[0]
    assert got[1] == want_lat and got[2] == JOB.vectors.sums[i], "latency probe: wrong value"
    RESULTS["checks"]["latency"] = {"ok": True, "latency_cycles": lat,
                                    "definition": "wafer on the input ports in clock cycle 0 (sampled at "
                                                  f"the rising edge ending it) -> result on the output "
                                                  f"ports in cycle {lat} (registered at rising edge "
                                                  f"{lat - 1}, counting the sampling edge as 0)",
                                    "valid_out_trace": trace,
                                    "trace_definition": "valid_out in cycles 1, 2, ..."}
    _save_results()


@cocotb.test()
async def stream(dut):
    await _start(dut)
    _idle(dut)
    phase = JOB.vectors
    vf, wall = await _stream(dut, phase)
    n = len(phase.words)
    # II = 1: the valid outputs form one unbroken run of n clocks
    idx = np.flatnonzero(vf)
    contiguous = bool(len(idx) == n and idx[-1] - idx[0] == n - 1)
    phase.extra.update({"ii_cycles": 1 if contiguous else None, "ii_contiguous": contiguous,
                        "first_valid_cycle": int(idx[0]) if len(idx) else None})
    RESULTS["checks"]["ii"] = {"ok": contiguous, "n": n, "valid_run": int(len(idx))}
    seu = _seu_count(dut)
    RESULTS["checks"]["seu_count_stream"] = {"ok": seu == 0, "seu_count": seu}
    _check(phase)
    assert contiguous, "valid_out has gaps while valid_in was high every clock (II != 1)"
    assert seu == 0, f"seu_count is {seu} after the stream, no upset was injected"


@cocotb.test()
async def bubbles(dut):
    if JOB.n_bubbles <= 0:
        return
    await _start(dut)
    _idle(dut)
    rng = np.random.default_rng(JOB.seed + 1)
    v = JOB.vectors
    sel = rng.choice(len(v.words), size=min(JOB.n_bubbles, len(v.words)), replace=False)
    phase = M.Phase("bubbles", v.words[sel], v.latent[sel], v.sums[sel], v.kind[sel], v.kind_names)
    valid = rng.random(4 * len(sel)) < 0.6
    junk = M.random_words(rng, 257)
    await _stream(dut, phase, valid=valid, junk=junk)
    _check(phase)


@cocotb.test()
async def reset_midstream(dut):
    await _start(dut)
    _idle(dut)
    v = JOB.vectors
    words = M.pack_fields(v.words[:6], M.WORD_BITS)
    for w in words[:3]:                     # three wafers enter the pipeline
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
    # the wafer sampled together with rst (if any) must not come out either
    assert all(a == (0, 0, 0) for a in after), f"rst did not clear the pipeline: {after}"
    # configuration survives rst: the next wafers are right without reloading
    phase = M.Phase("after_reset", v.words[:64], v.latent[:64], v.sums[:64], v.kind[:64], v.kind_names)
    await _stream(dut, phase)
    _check(phase)
    RESULTS["checks"]["reset_midstream"] = {"ok": True}
    _save_results()


@cocotb.test()
async def reconfigure(dut):
    if JOB.n_reload <= 0:
        return
    await _start(dut)
    _idle(dut)
    rng = np.random.default_rng(JOB.seed + 2)
    words = M.random_words(rng, JOB.n_reload)
    # new calibration and density, plus (programmable flavours) a random weight set
    cal = rng.integers(0, 4096, M.N_TC)
    drop = 1 if JOB.drop == 3 else 3
    weights = M.EncoderWeights.random(JOB.seed + 3) if JOB.programmable else JOB.weights
    writes = M.config_writes(cal, drop, weights if JOB.programmable else None)
    t0 = time.perf_counter()
    await _configure(dut, writes)
    phase = _phase("reconfigured", words, cal, drop, weights, "tb_reconfigured")
    phase.extra.update({"config_writes": len(writes), "config_wall_s": round(time.perf_counter() - t0, 3),
                        "random_weights": JOB.programmable})
    await _stream(dut, phase)
    _check(phase)
    # and back to the job's configuration (programmable: the trained weights again)
    await _load_job_config(dut)
    n = min(2000, len(JOB.vectors.words))
    v = JOB.vectors
    phase = M.Phase("reloaded", v.words[:n], v.latent[:n], v.sums[:n], v.kind[:n], v.kind_names)
    await _stream(dut, phase)
    _check(phase)


@cocotb.test()
async def alt_registers(dut):
    """The convert stage's extra vector files (other CALVALUEs and drop): load
    their registers through the configuration port, stream, compare."""
    if not JOB.alt_vectors:
        return
    await _start(dut)
    _idle(dut)
    for phase, cal, drop in JOB.alt_vectors:
        await _configure(dut, M.config_writes(cal, drop))
        phase.extra.update({"drop": drop, "calvalue_min": int(cal.min()), "calvalue_max": int(cal.max())})
        await _stream(dut, phase)
        _check(phase)
    await _load_job_config(dut)


@cocotb.test()
async def defaults(dut):
    await _start(dut)
    _idle(dut)
    # scribble over the configuration, then restore the defaults with cfg_rst
    rng = np.random.default_rng(JOB.seed + 4)
    scribble = M.config_writes(rng.integers(0, 4096, M.N_TC), 1,
                               M.EncoderWeights.random(JOB.seed + 5) if JOB.programmable else None)
    await _configure(dut, scribble)
    dut.cfg_rst.value = 1                   # set after a rising edge, sampled at the next
    await RisingEdge(dut.clk)
    dut.cfg_rst.value = 0
    words = np.concatenate([M.corner_words(rng)[:300], M.random_words(rng, 700)])
    phase = _phase("defaults", words, JOB.default_calvalues, JOB.default_drop, JOB.weights, "tb_defaults")
    await _stream(dut, phase)
    _check(phase)


@cocotb.test()
async def readback(dut):
    await _start(dut)
    _idle(dut)
    rng = np.random.default_rng(JOB.seed + 6)
    # a random configuration, the drop word with junk above bits [1:0]; weight words are
    # written on every flavour (ignored where the weights are fixed)
    drop = int(rng.integers(0, 4)) | (int(rng.integers(0, 1 << 30)) << 2)
    writes = M.config_writes(rng.integers(0, 4096, M.N_TC), drop, M.EncoderWeights.random(JOB.seed + 7))
    await _configure(dut, writes)
    want = M.readback_expected(writes, JOB.programmable)
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
                                     "seu_count": seu}
    _save_results()
    assert not bad, f"read-back differs from what was written at {len(bad)} addresses: {bad[:5]}"
    assert held == [got[-1]] * 3, f"cfg_rdata did not hold {got[-1]} while cfg_re was low: {held}"
    assert seu == 0, f"seu_count is {seu}, no upset was injected"


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


@cocotb.test(skip=not JOB.seu_inject)
async def seu_inject(dut):
    """Test build of a TMR flavour: single upsets in the weight, CALVALUE and output
    registers while streaming are corrected (0 wrong outputs) and counted (seu_count)."""
    _idle(dut)
    dut.seu_inj_en.value = 0
    dut.seu_inj_copy.value = 0
    dut.seu_inj_bit.value = 0
    await _power_up(dut)
    await _load_job_config(dut)
    assert _seu_count(dut) == 0, "seu_count is not 0 after reset and configuration"
    rng = np.random.default_rng(JOB.seed + 8)
    n = len(JOB.vectors.words)
    # one upset each: a weight bit (copy 1), a CALVALUE bit (copy 2), an output register bit
    # (copy 0), at different clocks while the wafers stream
    upsets = [(1, int(rng.integers(*M.INJ_WEIGHTS))), (2, int(rng.integers(*M.INJ_CAL))),
              (0, M.INJ_VALID_OUT + 1 + int(rng.integers(0, JOB.latent_bits * M.N_LATENT)))]
    log: list = []
    for k, (copy, bit) in enumerate(upsets):
        cocotb.start_soon(_inject(dut, (k + 1) * n // 4, copy, bit, log))
    phase = JOB.vectors
    await _stream(dut, phase)
    res = M.compare(phase, JOB.first_n)
    seu = _seu_count(dut)
    RESULTS["phases"]["seu_inject"] = res
    RESULTS["checks"]["seu_inject"] = {"ok": res["n_mismatch"] == 0 and seu == len(upsets),
                                       "upsets": log, "seu_count": seu, "n_wafers": n}
    _save_results()
    assert len(log) == len(upsets), f"only {len(log)} of {len(upsets)} upsets were injected"
    assert res["n_mismatch"] == 0, (f"{res['n_mismatch']} wrong outputs despite TMR: "
                                    f"{res['first_mismatches'][:3]}")
    assert seu == len(upsets), f"seu_count {seu} after {len(upsets)} corrected upsets"
