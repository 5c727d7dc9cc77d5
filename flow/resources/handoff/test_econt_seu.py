"""cocotb SEU campaign on the ECON-T block: many single upsets in one simulation.

Self-contained (numpy and cocotb only; it imports nothing of the flow), so
that it can ship in the handoff archive beside ``test_econt_handoff.py``.
The *plan* (JSON, path in ``$ECONT_SEU_PLAN``), written by the flow
(``flow/cosim/seu.py``), holds everything: the golden-vector file to stream
(``words``, expected ``latent`` and ``sum_code``: integer codes of the flow's
golden model; nothing is computed here), the configuration writes that load
that file's registers (and, programmable flavours, the weight image), and the
upsets, each one of

* ``hook``: the test-build injection hook (Verilog macro ``ECONT_SEU_INJECT``):
  at one rising edge register bit ``bit`` (global index) is stored inverted,
  in a TMR flavour in copy ``copy`` (0-2) of the three;
* ``port``: a configuration-register upset emulated through the
  configuration port (registers the flavour's hook does not reach): the register word is
  rewritten with one bit inverted (``bad``) -- the register then holds exactly
  what an upset would leave in it -- and, ``hold`` clocks later, restored
  (``good``; what a system does when it reloads the configuration).

Wafers stream back to back (valid_in high every clock, the vector file
cycled); upset i is applied at clock ``start + i * period``.  The testbench
records every output and, per upset, ``seu_count`` just before the next one;
the comparison with the expected codes (which wafer each upset corrupted) is
left to the flow, which reads ``<out>.npz`` (``latent``, ``sum_code``: the
outputs in order, ``valid_clocks``: the clock of each valid output,
``seu_count``: per upset) and ``<out>.json`` (counts, wall time).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

PLAN = json.loads(Path(os.environ["ECONT_SEU_PLAN"]).read_text())
CLOCK_NS = 10


def _pack(values: np.ndarray, bits: int) -> list[int]:
    """``(N, k)`` unsigned fields -> N ints, field i at bits ``[bits*i +: bits]``."""
    v = np.asarray(values, dtype=object)
    shifts = [bits * i for i in range(v.shape[1])]
    return [sum(int(x) << s for x, s in zip(row, shifts, strict=True)) for row in v]


def _unpack(ints, bits: int, k: int) -> np.ndarray:
    mask = (1 << bits) - 1
    return np.array([[(x >> (bits * i)) & mask for i in range(k)] for x in ints], dtype=np.int64)


@cocotb.test()
async def seu_campaign(dut):
    p = PLAN
    vec = np.load(p["vectors"])
    words = vec["words"]
    if p.get("max_vectors"):
        words = words[:int(p["max_vectors"])]
    packed = _pack(words, int(p["word_bits"]))
    n_vec = len(packed)
    upsets = p["upsets"]
    start, period, hold = int(p["start"]), int(p["period"]), int(p["hold"])
    n_clocks = start + len(upsets) * period + int(p["tail"])
    hook = any(u["method"] == "hook" for u in upsets)

    # ---- power-up: rst and cfg_rst for 3 clocks, then the plan's configuration
    for name in ("valid_in", "cfg_we", "cfg_re", "tc_words", "cfg_addr", "cfg_wdata"):
        getattr(dut, name).value = 0
    if hook:
        dut.seu_inj_en.value = 0
        dut.seu_inj_copy.value = 0
        dut.seu_inj_bit.value = 0
    dut.rst.value = 1
    dut.cfg_rst.value = 1
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    dut.cfg_rst.value = 0
    for addr, data in p["config"]:
        dut.cfg_addr.value = int(addr)
        dut.cfg_wdata.value = int(data)
        dut.cfg_we.value = 1
        await FallingEdge(dut.clk)
    dut.cfg_we.value = 0
    seu0 = dut.seu_count.value.to_unsigned()

    # ---- the schedule: clock -> action
    actions: dict[int, tuple] = {}
    for i, u in enumerate(upsets):
        t = start + i * period
        if u["method"] == "hook":
            actions[t] = ("inj", int(u.get("copy", 0)), int(u["bit"]))
        else:
            actions[t] = ("cfg", int(u["addr"]), int(u["bad"]))
            actions[t + hold] = ("cfg", int(u["addr"]), int(u["good"]))
    count_at = {start + (i + 1) * period - 1: i for i in range(len(upsets))}
    seu_counts = np.zeros(len(upsets), dtype=np.int64)

    clk, tc, vin = dut.clk, dut.tc_words, dut.valid_in
    vout, lat, msum = dut.valid_out, dut.latent, dut.module_sum
    cfg_we, cfg_addr, cfg_wdata = dut.cfg_we, dut.cfg_addr, dut.cfg_wdata
    inj_en = dut.seu_inj_en if hook else None
    got_lat, got_sum, got_clk = [], [], []
    # inputs set after rising edge c - 1 are sampled at rising edge c ("clock c")
    await RisingEdge(clk)
    t0 = time.perf_counter()
    busy = False
    for c in range(n_clocks):
        tc.value = packed[c % n_vec]
        vin.value = 1
        a = actions.get(c)
        if busy:
            cfg_we.value = 0
            if hook:
                inj_en.value = 0
            busy = False
        if a is not None:
            if a[0] == "inj":
                dut.seu_inj_copy.value = a[1]
                dut.seu_inj_bit.value = a[2]
                inj_en.value = 1
            else:
                cfg_addr.value = a[1]
                cfg_wdata.value = a[2]
                cfg_we.value = 1
            busy = True
        await RisingEdge(clk)
        if int(vout.value):
            got_lat.append(lat.value.to_unsigned())
            got_sum.append(msum.value.to_unsigned())
            got_clk.append(c)
        i = count_at.get(c)
        if i is not None:
            seu_counts[i] = dut.seu_count.value.to_unsigned()
    vin.value = 0
    cfg_we.value = 0
    if hook:
        inj_en.value = 0
    for j in range(4):                                  # drain the pipeline
        await RisingEdge(clk)
        if int(vout.value):
            got_lat.append(lat.value.to_unsigned())
            got_sum.append(msum.value.to_unsigned())
            got_clk.append(n_clocks + j)
    wall = time.perf_counter() - t0
    seu_final = dut.seu_count.value.to_unsigned()

    out = Path(p["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    lb, nl = int(p["latent_bits"]), int(p["n_latent"])
    np.savez_compressed(out.with_suffix(".npz"),
                        latent=_unpack(got_lat, lb, nl).astype(np.uint16).reshape(-1, nl),
                        sum_code=np.asarray(got_sum, dtype=np.uint16),
                        valid_clocks=np.asarray(got_clk, dtype=np.int64), seu_count=seu_counts)
    out.with_suffix(".json").write_text(json.dumps({
        "flavour": p["flavour"], "n_upsets": len(upsets), "n_clocks": n_clocks,
        "n_wafers_in": n_clocks, "n_valid_out": len(got_sum), "seu_count_before": seu0,
        "seu_count_final": seu_final, "sim_wall_s": round(wall, 3),
        "clocks_per_s": round(n_clocks / wall, 1) if wall > 0 else None}, indent=1))
