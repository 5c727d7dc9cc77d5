"""Reference model of the ECON-T block for the cocotb testbenches.

Everything the testbench needs to know about the DUT, written from the
documented interface (``docs/rtl_cosim.md``).  Expected outputs come from the
flow's golden model, the reference of the whole bit-exact chain:
:func:`flow.vectors.golden` (front end then integer encoder) and the golden-vector
files through their one reader :func:`flow.vectors.read_vectors`.  It
deliberately shares no code with the device side, the RTL generator
(``flow/rtl*.py``) and the cosim stage (``flow/cosim*.py``): bus packing and the
configuration address map are re-derived here (``tests/test_contracts.py``
checks the imports).

A test run is described by a *job* (JSON, path in ``$ECONT_TB_JOB``) that
the ``cosim`` stage writes; the testbench writes its results next to it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flow.encoder import IMAGE_BITS, EncoderWeights
from flow.vectors import golden, read_vectors

N_TC, N_LATENT = 48, 16
WORD_BITS, CAL_BITS, SUM_BITS = 7, 12, 9
# ---- configuration port (docs/rtl_cosim.md, "Configuration port")
CFG_DATA_BITS = 32
ADDR_WEIGHTS = 0x000          # 402 words: the 12864-bit weight image, 32 bits per word
ADDR_CAL = 0x200              # 18 words: the 576-bit CALVALUE image (CALVALUE t at bits 12t..12t+11)
ADDR_DROP = 0x220             # bits [1:0]
DROP_MASK = 0x3
N_WEIGHT_WORDS = IMAGE_BITS // CFG_DATA_BITS         # 402
N_CAL_WORDS = -(-N_TC * CAL_BITS // CFG_DATA_BITS)   # 18
#: SEU injection hook of the TMR flavour (test builds): global register-bit index ranges
#: (docs/rtl_cosim.md, "The TMR flavour"), for a front-end register (latency 2)
INJ_WEIGHTS = (0, IMAGE_BITS)
INJ_CAL = (IMAGE_BITS, IMAGE_BITS + N_TC * CAL_BITS)
INJ_DROP = (INJ_CAL[1], INJ_CAL[1] + 2)
INJ_S1_VALID = INJ_DROP[1]
INJ_S1_DATA = (INJ_S1_VALID + 1, INJ_S1_VALID + 1 + N_TC * 8 + SUM_BITS)
INJ_VALID_OUT = INJ_S1_DATA[1]
#: addresses outside the map (read back 0)
UNMAPPED = (ADDR_WEIGHTS + N_WEIGHT_WORDS, ADDR_CAL - 1, ADDR_CAL + N_CAL_WORDS, ADDR_DROP + 1, 0x3FF)
#: the testbench's own corner/random sets get these kind names
KIND_CORNER, KIND_RANDOM = "tb_corner", "tb_random"


# ------------------------------------------------------------------ packing
def pack_fields(values: np.ndarray, bits: int) -> list[int]:
    """``(N, k)`` unsigned fields -> N Python ints, field i at bits ``[bits*i +: bits]``."""
    v = np.asarray(values, dtype=np.uint64)
    n, k = v.shape
    total = bits * k
    nbytes = -(-total // 8)
    # bit matrix (N, total), little-endian within each field
    bitmat = ((v[:, :, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
    bitmat = bitmat.reshape(n, total)
    pad = nbytes * 8 - total
    if pad:
        bitmat = np.concatenate([bitmat, np.zeros((n, pad), np.uint8)], axis=1)
    by = np.packbits(bitmat, axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in by]


def unpack_fields(ints, bits: int, k: int) -> np.ndarray:
    """Inverse of :func:`pack_fields`: N ints -> ``(N, k)`` int64 fields."""
    nbytes = -(-bits * k // 8)
    raw = np.frombuffer(b"".join(int(x).to_bytes(nbytes, "little") for x in ints),
                        dtype=np.uint8).reshape(-1, nbytes)
    bitmat = np.unpackbits(raw, axis=1, bitorder="little")[:, : bits * k].reshape(-1, k, bits)
    return (bitmat.astype(np.int64) << np.arange(bits, dtype=np.int64)).sum(-1)


def image_words(image: int, n_bits: int) -> list[int]:
    """A register image as consecutive 32-bit configuration words (LSB first)."""
    n = -(-n_bits // CFG_DATA_BITS)
    return [(image >> (CFG_DATA_BITS * a)) & 0xFFFFFFFF for a in range(n)]


def config_writes(calvalues=None, drop=None, weights: EncoderWeights | None = None) -> list[tuple[int, int]]:
    """(address, data) writes that load the given registers."""
    out = []
    if weights is not None:
        img = int.from_bytes(weights.to_image(), "little")
        out += [(ADDR_WEIGHTS + a, w) for a, w in enumerate(image_words(img, IMAGE_BITS))]
    if calvalues is not None:
        img = sum(int(c) << (CAL_BITS * t) for t, c in enumerate(calvalues))
        out += [(ADDR_CAL + a, w) for a, w in enumerate(image_words(img, N_TC * CAL_BITS))]
    if drop is not None:
        out.append((ADDR_DROP, int(drop)))
    return out


def readback_expected(writes, programmable: bool) -> dict[int, int]:
    """What reading every mapped address (and the :data:`UNMAPPED` ones) returns after
    ``writes`` loaded the whole configuration (docs/rtl_cosim.md, "Configuration port"):
    the written words, drop masked to its two bits, weight addresses 0 where the weights
    are not programmable, unmapped addresses 0."""
    want = {a: 0 for a in UNMAPPED}
    for a, d in writes:
        if ADDR_WEIGHTS <= a < ADDR_WEIGHTS + N_WEIGHT_WORDS:
            want[a] = d if programmable else 0
        elif ADDR_CAL <= a < ADDR_CAL + N_CAL_WORDS:
            want[a] = d
        elif a == ADDR_DROP:
            want[a] = d & DROP_MASK
    return want


# ------------------------------------------------------------------ expected
def expected(words, calvalues, drop: int, weights: EncoderWeights, latent_bits: int):
    """Golden (latent codes (N, 16), module-sum codes (N,)) for TC words (N, 48)."""
    _, latent, sums = golden(words, drop=drop, calvalues=calvalues, weights=weights, latent_bits=latent_bits)
    return latent.astype(np.int64), sums.astype(np.int64)


def corner_words(rng: np.random.Generator) -> np.ndarray:
    """Corner wafers: empty, full scale, single cells, every word value, extremes."""
    sets = [np.zeros((1, N_TC)), np.full((1, N_TC), 127)]
    sets.append(np.eye(N_TC) * 127)                                   # one TC at full scale
    sets.append(np.eye(N_TC) * 1)                                     # one TC, smallest non-zero
    sets.append(np.repeat(np.arange(128)[:, None], N_TC, axis=1))     # every word value everywhere
    single = np.zeros((128, N_TC))
    single[np.arange(128), np.arange(128) % N_TC] = np.arange(128)    # every word value, one TC
    sets.append(single)
    big = (rng.random((200, N_TC)) < 0.1) * rng.integers(100, 128, (200, N_TC))
    sets.append(big)                                                  # a few saturated cells
    sets.append(rng.integers(0, 128, (100, N_TC)))                    # dense random
    sets.append(rng.integers(0, 8, (100, N_TC)))                      # e = 0 (no exponent)
    return np.concatenate(sets).astype(np.int64)


def random_words(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random wafers of varied occupancy (sparse to full, small to large words)."""
    occ = rng.random((n, 1)) ** 2
    hi = rng.integers(8, 129, (n, 1))
    w = rng.integers(0, 1 << 30, (n, N_TC)) % hi
    return (w * (rng.random((n, N_TC)) < occ)).astype(np.int64)


# ----------------------------------------------------------------------- job
@dataclass
class Phase:
    """One block of wafers with its expected outputs."""

    name: str
    words: np.ndarray
    latent: np.ndarray
    sums: np.ndarray
    kind: np.ndarray
    kind_names: list[str]
    got_latent: np.ndarray | None = None
    got_sums: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Job:
    flavour: str
    programmable: bool                      # weights behind the configuration port (the registry's fact)
    latent_bits: int
    weights: EncoderWeights                 # reference (trained) weights
    calvalues: np.ndarray
    drop: int
    default_calvalues: np.ndarray
    default_drop: int
    vectors: Phase
    out_dir: Path
    n_bubbles: int
    n_reload: int
    seed: int
    first_n: int
    alt_vectors: list = field(default_factory=list)   # (phase, calvalues, drop) per extra vector file
    seu_inject: bool = False                # a test build with the TMR injection hook (ECONT_SEU_INJECT)


def load_job(path: str | os.PathLike | None = None) -> Job:
    path = Path(path or os.environ["ECONT_TB_JOB"])
    spec = json.loads(path.read_text())
    w = EncoderWeights.from_image(Path(spec["weights_image"]).read_bytes())
    lb = int(spec["latent_bits"])
    rng = np.random.default_rng(int(spec["seed"]))
    cal = np.asarray(spec["calvalues"], dtype=np.int64)
    drop = int(spec["drop"])
    parts_w, parts_l, parts_s, parts_k, names = [], [], [], [], []
    max_n = int(spec.get("max_vectors") or 0)
    if spec.get("vectors"):
        ph, _, _ = load_vectors(spec["vectors"], "vectors", max_n)
        parts_w.append(ph.words)
        parts_l.append(ph.latent)
        parts_s.append(ph.sums)
        parts_k.append(ph.kind)
        names += ph.kind_names
    extra = []
    if spec.get("corners", True):
        extra.append((KIND_CORNER, corner_words(rng)))
    n_have = sum(len(p) for p in parts_w) + sum(len(e[1]) for e in extra)
    n_random = max(int(spec.get("min_wafers", 0)) - n_have, int(spec.get("random", 0)))
    if n_random > 0:
        extra.append((KIND_RANDOM, random_words(rng, n_random)))
    for name, words in extra:
        lat, sums = expected(words, cal, drop, w, lb)
        parts_w.append(words)
        parts_l.append(lat)
        parts_s.append(sums)
        parts_k.append(np.full(len(words), len(names), np.int64))
        names.append(name)
    phase = Phase("stream", np.concatenate(parts_w), np.concatenate(parts_l),
                  np.concatenate(parts_s), np.concatenate(parts_k), names)
    alt = [load_vectors(e["path"], e["name"], max_n) for e in spec.get("extra_vectors", [])]
    return Job(flavour=spec["flavour"], programmable=bool(spec["programmable"]), latent_bits=lb,
               weights=w, calvalues=cal, drop=drop,
               default_calvalues=np.asarray(spec["default_calvalues"], dtype=np.int64),
               default_drop=int(spec["default_drop"]), vectors=phase,
               out_dir=Path(spec["out_dir"]), n_bubbles=int(spec.get("bubbles", 0)),
               n_reload=int(spec.get("reload", 0)), seed=int(spec["seed"]),
               first_n=int(spec.get("first_mismatches", 20)), alt_vectors=alt,
               seu_inject=bool(spec.get("seu_inject", False)))


def load_vectors(path, name: str, max_n: int = 0) -> tuple[Phase, np.ndarray, int]:
    """A golden-vector file of the ``convert`` stage -> (phase, CALVALUEs, drop)."""
    v = read_vectors(path)
    n = max_n or len(v["words"])
    ph = Phase(name, v["words"][:n].astype(np.int64), v["latent"][:n].astype(np.int64),
               v["sum_code"][:n].astype(np.int64), v["kind"][:n].astype(np.int64),
               [str(x) for x in v["kind_names"]])
    return ph, v["calvalues"].astype(np.int64), int(v["drop"])


def compare(phase: Phase, first_n: int = 20) -> dict:
    """Mismatch summary of a phase whose outputs were captured."""
    lat_bad = phase.got_latent != phase.latent
    sum_bad = phase.got_sums != phase.sums
    bad_rows = np.flatnonzero(lat_bad.any(1) | sum_bad)
    first = []
    for i in bad_rows[:first_n]:
        for j in np.flatnonzero(lat_bad[i]):
            first.append({"index": int(i), "field": f"latent[{j}]", "expected": int(phase.latent[i, j]),
                          "got": int(phase.got_latent[i, j]), "kind": phase.kind_names[phase.kind[i]]})
        if sum_bad[i]:
            first.append({"index": int(i), "field": "module_sum", "expected": int(phase.sums[i]),
                          "got": int(phase.got_sums[i]), "kind": phase.kind_names[phase.kind[i]]})
    by_kind = {}
    for k, name in enumerate(phase.kind_names):
        sel = phase.kind == k
        by_kind[name] = {"n": int(sel.sum()), "n_mismatch": int(np.isin(np.flatnonzero(sel), bad_rows).sum())}
    return {"n_total": int(len(phase.words)), "n_mismatch": int(len(bad_rows)),
            "n_field_mismatch": int(lat_bad.sum() + sum_bad.sum()), "first_mismatches": first,
            "by_kind": by_kind, **phase.extra}


def save_phase(phase: Phase, out_dir: Path, flavour: str) -> Path:
    p = out_dir / f"{flavour}_{phase.name}.npz"
    np.savez_compressed(p, words=phase.words.astype(np.uint8), latent=phase.latent.astype(np.uint16),
                        sum_code=phase.sums.astype(np.uint16), kind=phase.kind.astype(np.uint8),
                        kind_names=np.asarray(phase.kind_names),
                        got_latent=phase.got_latent.astype(np.uint16),
                        got_sum_code=phase.got_sums.astype(np.uint16))
    return p
