"""Generator of the ``const`` RTL flavour (registry entry in ``flow/hdl/flavours.py``).

The trained weights as constants: the encoder traced with da4ml into
distributed-arithmetic shift-add logic (:func:`flow.hdl.datapath.trace_const`),
wrapped as ``econt_encoder_const``.  Before any Verilog is written, the traced
logic is run on ``check_trace`` random AEin wafers plus the two corners and
compared with the golden model (a generator self-check; the proof is the
cosimulation).
"""
from __future__ import annotations

import time

import numpy as np

from flow.hdl.datapath import comb_latent_codes, const_encoder_sources, trace_const
from flow.hdl.flavours import FlavourSources, GeneratorInputs
from flow.hdl.top import top_source
from flow.runner.errors import ToolError

ENCODER_INSTANCE = "    econt_encoder_const u_enc (.aein(enc_aein), .latent(enc_latent));\n"


def _self_check(sol, g: GeneratorInputs) -> int:
    from flow.core.encoder import golden_encode
    from flow.core.geometry import N_TC

    n = g.check_trace
    rng = np.random.default_rng(g.seed)
    a = rng.integers(0, 256, size=(n, N_TC))
    a[: n // 4] *= rng.random((n // 4, N_TC)) < 0.2
    a = np.concatenate([a, np.zeros((1, N_TC), int), np.full((1, N_TC), 255)])
    got = comb_latent_codes(sol, a, g.latent_bits)
    want = golden_encode(a, g.weights, g.latent_bits)
    bad = int(np.any(got != want, axis=1).sum())
    if bad:
        raise ToolError(f"da4ml trace of the constant encoder disagrees with the golden "
                        f"model on {bad} of {len(a)} wafers (generator bug)")
    return len(a)


def generate(g: GeneratorInputs) -> FlavourSources:
    t0 = time.perf_counter()
    sol = trace_const(g.weights, g.latent_bits, g.solver_options)
    info = {"da4ml_trace_s": round(time.perf_counter() - t0, 2), "da4ml_cost": float(sol.cost),
            "da4ml_ops": len(sol.ops)}
    if g.check_trace:
        info["trace_checked_wafers"] = _self_check(sol, g)
    return FlavourSources(files=const_encoder_sources(sol, g.latent_bits),
                          top=top_source(g, ENCODER_INSTANCE), info=info)
