"""Test vectors and register files of the ECON-T autoencoder handoff archive.

Standard library only (the cocotb testbench and ``run.py`` import it; so can
anyone who wants the vectors in Python).  Everything is an unsigned integer
code; buses are packed exactly like the DUT's ports (field ``i`` of a bus at
bits ``[bits*i +: bits]``), so one line of a ``.hex`` file is the value to
drive on (or expect from) one port in one clock.

Layout (``vectors/vectors.json`` describes every set)::

    vectors/<set>_words.hex    tc_words   48 x 7 bit  = 336 bit  (84 hex digits per line)
    vectors/<set>_latent.hex   latent     16 x L bit  (L = latent_bits, 9: 144 bit, 36 digits)
    vectors/<set>_sum.hex      module_sum 9 bit       (3 digits)
    vectors/<set>_aein.hex     internal encoder input, 48 x 8 bit (debug only, not a port)
    vectors/<set>_kind.hex     index into the set's kind_names (what sort of wafer)
    registers/<set>_config.hex configuration writes {cfg_addr[9:0], cfg_wdata[31:0]} (11 digits)

Lines starting with ``//`` are comments (``$readmemh`` skips them too).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

#: the archive's top-level directory (this file is <root>/tb/econt_vectors.py)
ROOT = Path(__file__).resolve().parents[1]
CFG_DATA_BITS = 32


def read_hex(path) -> list[int]:
    """Values of a ``$readmemh``-style file: one hex number per line, ``//`` comments."""
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.split("//", 1)[0].strip()
        if line:
            out.extend(int(tok, 16) for tok in line.split())
    return out


def write_hex(path, values, digits: int, comment: str = "") -> None:
    lines = [f"// {c}" for c in comment.splitlines()] if comment else []
    lines += [f"{int(v):0{digits}x}" for v in values]
    Path(path).write_text("\n".join(lines) + "\n")


def pack(fields, bits: int) -> int:
    """Unsigned fields -> one bus value, field i at bits [bits*i +: bits]."""
    v = 0
    for i, f in enumerate(fields):
        f = int(f)
        if not 0 <= f < (1 << bits):
            raise ValueError(f"field {i} = {f} does not fit in {bits} bits")
        v |= f << (bits * i)
    return v


def unpack(value: int, bits: int, n: int) -> list[int]:
    """One bus value -> n unsigned fields of ``bits`` bits."""
    mask = (1 << bits) - 1
    return [(int(value) >> (bits * i)) & mask for i in range(n)]


def load_meta(root=ROOT) -> dict:
    return json.loads((Path(root) / "vectors" / "vectors.json").read_text())


@dataclass
class VectorSet:
    """One block of wafers, the register settings they need, and the expected outputs."""

    name: str
    flavours: list
    words: list                   # packed tc_words values
    latent: list                  # packed expected latent values
    sums: list                    # expected module_sum codes
    kind: list                    # index into kind_names per wafer
    kind_names: list
    config: list                  # (cfg_addr, cfg_wdata) writes that set the registers
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.words)


def load_set(entry: dict, root=ROOT) -> VectorSet:
    root = Path(root)
    f = entry["files"]
    cfg = [(v >> CFG_DATA_BITS, v & 0xFFFFFFFF) for v in read_hex(root / f["config"])]
    vs = VectorSet(name=entry["name"], flavours=list(entry["flavours"]),
                   words=read_hex(root / f["words"]), latent=read_hex(root / f["latent"]),
                   sums=read_hex(root / f["sum"]), kind=read_hex(root / f["kind"]),
                   kind_names=list(entry["kind_names"]), config=cfg, info=entry)
    n = {len(vs.words), len(vs.latent), len(vs.sums), len(vs.kind)}
    if n != {int(entry["n"])}:
        raise ValueError(f"vector set {vs.name}: files hold {sorted(n)} lines, vectors.json says "
                         f"{entry['n']}")
    return vs


def load_sets(root=ROOT, flavour: str | None = None) -> list[VectorSet]:
    """Every vector set (for ``flavour``: those that apply to it), in the order to run them."""
    meta = load_meta(root)
    return [load_set(e, root) for e in meta["sets"] if flavour is None or flavour in e["flavours"]]


def compare(vs: VectorSet, got_latent: list, got_sums: list, latent_bits: int, n_latent: int = 16,
            first_n: int = 20, index=None) -> dict:
    """Mismatch summary: ``n_total``, ``n_mismatch`` (wafers), ``n_field_mismatch`` and the
    first mismatching fields (wafer index in the set, field, expected, got, kind)."""
    index = list(range(len(vs))) if index is None else list(index)
    if len(got_latent) != len(index) or len(got_sums) != len(index):
        raise ValueError(f"{vs.name}: {len(index)} wafers expected, {len(got_latent)} outputs captured")
    bad_rows = n_field = 0
    first: list[dict] = []
    by_kind: dict[str, dict[str, int]] = {}
    for k, i in enumerate(index):
        kname = vs.kind_names[vs.kind[i]] if vs.kind[i] < len(vs.kind_names) else str(vs.kind[i])
        bk = by_kind.setdefault(kname, {"n": 0, "n_mismatch": 0})
        bk["n"] += 1
        el, gl, es, gs = vs.latent[i], int(got_latent[k]), vs.sums[i], int(got_sums[k])
        if el == gl and es == gs:
            continue
        bad_rows += 1
        bk["n_mismatch"] += 1
        fields = []
        if el != gl:
            e_f, g_f = unpack(el, latent_bits, n_latent), unpack(gl, latent_bits, n_latent)
            fields += [(f"latent[{j}]", e_f[j], g_f[j]) for j in range(n_latent) if e_f[j] != g_f[j]]
        if es != gs:
            fields.append(("module_sum", es, gs))
        n_field += len(fields)
        if bad_rows <= first_n:
            first += [{"set": vs.name, "index": i, "field": name, "expected": e, "got": g, "kind": kname}
                      for name, e, g in fields]
    return {"n_total": len(index), "n_mismatch": bad_rows, "n_field_mismatch": n_field,
            "first_mismatches": first, "by_kind": by_kind}
