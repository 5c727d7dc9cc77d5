"""The cosim stage's vector sets, written in the handoff archive's format
(:mod:`flow.core.tb_vectors`) for the shipped testbench (``flow/resources/handoff/``).

Expected outputs come from the golden model (:func:`flow.core.vectors.golden`: front end
then integer encoder) or, for the ``convert`` stage's vector files, from those files
(read through their one reader); never from the RTL generator.  Per flavour, in the
order the testbench streams them:

``stream``             the convert vectors (``max_vectors``) + corner wafers + random
                       wafers up to ``min_wafers``; the vectors' registers, trained weights
``reconfigured``       ``reload`` random wafers; random CALVALUEs, the other drop and,
                       programmable flavours, a random weight set
``reloaded``           the first 2000 ``stream`` wafers with the stream's registers again
``vectors_regs<k>``    convert's vector files with other CALVALUEs / drop
``default_registers``  corner + random wafers under the reset-default registers (the
                       ``defaults`` test restores them with ``cfg_rst``)

The ``bubbles`` and ``reset_midstream`` tests stream ``stream``; results are mapped back
to the cosim's phase names by :func:`phase_name`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from flow.core.encoder import ECONT_ARCH, N_LATENT, EncoderWeights
from flow.core.geometry import N_TC
from flow.core.tb_vectors import injection_map, tb_address_map, vectors_json, weight_files, write_set_files
from flow.core.vectors import golden, read_vectors
from flow.runner.errors import StageInputError

#: the testbench's own corner/random wafers get these kind names
KIND_CORNER, KIND_RANDOM = "tb_corner", "tb_random"
#: which set the bubbles / reset_midstream / defaults tests stream
TESTBENCH = {"bubbles_set": "stream", "midstream_set": "stream", "defaults_set": "default_registers"}


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


def _golden_set(name, words, kind, kind_names, calvalues, drop, weights, weights_name, latent_bits,
                source, **info) -> dict:
    aein, lat, sums = golden(words, drop=drop, calvalues=calvalues, weights=weights, latent_bits=latent_bits)
    return {"name": name, "words": np.asarray(words, np.int64), "aein": aein.astype(np.int64),
            "latent": lat.astype(np.int64), "sum_code": sums.astype(np.int64),
            "kind": np.asarray(kind, np.int64), "kind_names": list(kind_names),
            "calvalues": np.asarray(calvalues, np.int64), "drop": int(drop), "weights": weights,
            "weights_name": weights_name, "source": source, "info": info}


def _file_set(name: str, path: Path, max_n: int, weights: EncoderWeights) -> dict:
    v = read_vectors(path)
    n = max_n or len(v["words"])
    return {"name": name, "words": v["words"][:n].astype(np.int64), "aein": v["aein"][:n].astype(np.int64),
            "latent": v["latent"][:n].astype(np.int64), "sum_code": v["sum_code"][:n].astype(np.int64),
            "kind": v["kind"][:n].astype(np.int64), "kind_names": [str(x) for x in v["kind_names"]],
            "calvalues": v["calvalues"].astype(np.int64), "drop": int(v["drop"]), "weights": weights,
            "weights_name": "weights", "source": str(path), "info": {}}


def _concat(name: str, parts: list[dict], **kw) -> dict:
    names: list[str] = []
    kinds = []
    for p in parts:
        kinds.append(p["kind"] + len(names))
        names += p["kind_names"]
    out = dict(parts[0], name=name, kind_names=names, kind=np.concatenate(kinds), **kw)
    for k in ("words", "aein", "latent", "sum_code"):
        out[k] = np.concatenate([p[k] for p in parts])
    return out


def _take(vs: dict, name: str, n: int, **kw) -> dict:
    out = dict(vs, name=name, **kw)
    for k in ("words", "aein", "latent", "sum_code", "kind"):
        out[k] = vs[k][:n]
    return out


def build_sets(*, programmable: bool, weights: EncoderWeights, latent_bits: int, calvalues, drop: int,
               default_calvalues, default_drop: int, vectors: Path | None, settings, seed: int,
               extra_vectors=()) -> list[dict]:
    """The sets of one flavour (module docstring), expected outputs included."""
    s = settings
    rng = np.random.default_rng(seed)
    cal = np.asarray(calvalues, np.int64)
    parts = []
    if vectors is not None:
        parts.append(_file_set("vectors", Path(vectors), s.max_vectors, weights))
        cal, drop = parts[0]["calvalues"], parts[0]["drop"]
    extra = []
    if s.corners:
        extra.append((KIND_CORNER, corner_words(rng)))
    n_have = sum(len(p["words"]) for p in parts) + sum(len(e[1]) for e in extra)
    if s.min_wafers - n_have > 0:
        extra.append((KIND_RANDOM, random_words(rng, s.min_wafers - n_have)))
    for kname, words in extra:
        parts.append(_golden_set(kname, words, np.zeros(len(words)), [kname], cal, drop, weights, "weights",
                                 latent_bits, "cosim: golden model"))
    if not parts:
        raise StageInputError("cosim: no wafers to stream (no vectors, cosim.corners false, "
                              "cosim.min_wafers 0)")
    stream = _concat("stream", parts, source="convert vectors + testbench corner/random wafers")
    sets = [stream]
    if s.reload > 0:
        r2 = np.random.default_rng(seed + 2)
        words = random_words(r2, s.reload)
        cal2 = r2.integers(0, 4096, N_TC)
        w2, w2_name = ((EncoderWeights.random(seed + 3, weights.arch), "reconfigured_weights")
                       if programmable else (weights, "weights"))
        sets.append(_golden_set("reconfigured", words, np.zeros(len(words)), ["tb_reconfigured"], cal2,
                                1 if drop == 3 else 3, w2, w2_name,
                                latent_bits, "cosim: random registers, golden model",
                                random_weights=programmable))
        sets.append(_take(stream, "reloaded", min(2000, len(stream["words"]))))
    for p in extra_vectors:
        sets.append(_file_set(Path(p).stem, Path(p), s.max_vectors, weights))
    r4 = np.random.default_rng(seed + 4)
    words = np.concatenate([corner_words(r4)[:300], random_words(r4, 700)])
    sets.append(_golden_set("default_registers", words, np.zeros(len(words)), ["tb_defaults"],
                            default_calvalues, default_drop, weights, "weights", latent_bits,
                            "cosim: reset-default registers, golden model"))
    return sets


def write_root(root: Path, flavour: str, top: str, filelist: Path, programmable: bool, sets: list[dict],
               latent_bits: int, *, latency_cycles: int, clock_ns: float, seu_inject: bool) -> None:
    """A testbench directory of the archive's layout (manifest.json, vectors/, registers/)
    for one flavour: what ``tb/run.py --root`` reads.  The address map is the one of the
    sets' encoder architecture (every set's weights must share it)."""
    files: dict[str, bytes] = {}
    archs = {vs["weights"].arch for vs in sets}
    if len(archs) > 1:
        raise StageInputError(f"vector sets of one testbench root: expected one encoder architecture, "
                              f"got {sorted(a.describe() for a in archs)}")
    arch = archs.pop() if archs else ECONT_ARCH
    amap = tb_address_map(arch)
    entries = []
    for vs in sets:
        vs.setdefault("index", np.arange(len(vs["words"])))
        vs.setdefault("n_source", len(vs["words"]))
        vs["flavours"] = [flavour]
        vs["default_registers"] = vs["name"] == TESTBENCH["defaults_set"]
        weight_files(files, vs["weights_name"], vs["weights"], amap)
        entries.append(write_set_files(files, vs, latent_bits, amap))
    files["vectors/vectors.json"] = vectors_json(latent_bits, entries)
    files["registers/registers.json"] = (json.dumps({"address_map": amap}, indent=1) + "\n").encode()
    fl = {"top": top, "filelist": str(Path(filelist).resolve()), "programmable": programmable}
    if seu_inject:
        fl["seu_inject"] = injection_map(latent_bits, latency_cycles == 2, arch)
    man = {"format": "econt-ae-cosim-testbench/1", "flavours": {flavour: fl},
           "interface": {"latency_cycles": latency_cycles, "clock_ns": clock_ns}, "testbench": TESTBENCH}
    files["manifest.json"] = (json.dumps(man, indent=1) + "\n").encode()
    for rel, data in files.items():
        p = Path(root) / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def phase_name(record: str) -> str:
    """The testbench's record name -> the cosim phase: ``bubbles:stream`` -> ``bubbles``,
    ``after_reset:stream`` -> ``after_reset``, ``defaults:default_registers`` -> ``defaults``."""
    return record.split(":", 1)[0]


def unpack_fields(ints, bits: int, k: int) -> np.ndarray:
    """N bus values -> ``(N, k)`` int64 fields (field i at bits [bits*i +: bits])."""
    mask = (1 << bits) - 1
    return np.array([[(int(x) >> (bits * i)) & mask for i in range(k)] for x in ints],
                    dtype=np.int64).reshape(-1, k)


def save_phase(path: Path, vs: dict, captured: Path, latent_bits: int) -> None:
    """``<flavour>_<phase>.npz``: words, expected and captured outputs of the wafers the
    testbench streamed (``captured``: its ``index latent module_sum`` lines)."""
    idx, lat, sums = [], [], []
    for line in captured.read_text().split("\n"):
        if line:
            i, la, su = (int(t, 16) for t in line.split())
            idx.append(i)
            lat.append(la)
            sums.append(su)
    idx = np.asarray(idx, np.int64)
    np.savez_compressed(path, words=vs["words"][idx].astype(np.uint8),
                        latent=vs["latent"][idx].astype(np.uint16),
                        sum_code=vs["sum_code"][idx].astype(np.uint16), kind=vs["kind"][idx].astype(np.uint8),
                        kind_names=np.asarray(vs["kind_names"]),
                        got_latent=unpack_fields(lat, latent_bits, N_LATENT).astype(np.uint16),
                        got_sum_code=np.asarray(sums, np.uint16))
