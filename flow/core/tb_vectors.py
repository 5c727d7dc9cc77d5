"""The testbench's file contract, writer side: vector sets and register writes in the
format the shipped cocotb testbench reads (``flow/resources/handoff/econt_vectors.py``
is its reader; ``docs/handoff.md`` describes the layout).

Two stages write it: ``handoff`` (the archive's ``vectors/`` and ``registers/``) and
``cosim`` (one testbench directory per flavour, the same testbench and runner).  The
configuration address map and the TMR injection map are written down here from the
documented interface (``docs/rtl_cosim.md``), independently of the RTL generator;
:func:`check_address_map` compares them with what ``rtl.json`` documents.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np

from flow.core.encoder import ECONT_ARCH, N_LATENT, EncoderArch, EncoderWeights
from flow.core.frontend import AEIN_BITS, CAL_BITS, SUM_BITS, TC_WORD_BITS
from flow.core.geometry import N_TC
from flow.runner.errors import InputRangeError, StageInputError

FORMAT = "econt-ae-handoff/1"
CFG_DATA_BITS = 32


def tb_address_map(arch: EncoderArch = ECONT_ARCH) -> dict:
    """The configuration port's address map for an encoder of architecture ``arch``
    (docs/rtl_cosim.md, "Configuration port"), written down from the documented rule: the
    weight image (``image_bits``, 32 bits per word, the last word partial if need be) from
    0x000, the CALVALUEs at 0x200 or the next power of two above the weight words, drop
    0x20 after them, at least 10 address bits.  The ECON-T's: 402 words, 0x200, 0x220, 10."""
    words = -(-arch.image_bits // CFG_DATA_BITS)
    cal = 0x200
    while cal < words:
        cal *= 2
    addr_bits = 10
    while (1 << addr_bits) <= cal + 0x20:
        addr_bits += 1
    return {"addr_bits": addr_bits, "data_bits": CFG_DATA_BITS,
            "weight_base": 0x000, "weight_words": words, "image_bits": arch.image_bits,
            "cal_base": cal, "cal_words": -(-N_TC * CAL_BITS // CFG_DATA_BITS),
            "drop_addr": cal + 0x20, "drop_bits": 2}


#: the ECON-T's configuration port address map
ADDRESS_MAP = tb_address_map()


def injection_map(latent_bits: int, fe_reg: bool = True,
                  arch: EncoderArch = ECONT_ARCH) -> dict[str, list[int]]:
    """Global register-bit index ranges [lo, hi) per register of the TMR flavour's SEU
    injection hook (test builds, ``ECONT_SEU_INJECT``; docs/rtl_cosim.md, "The TMR flavour");
    ``fe_reg``: with the front-end register stage (latency 2)."""
    cal0 = arch.image_bits
    drop0 = cal0 + N_TC * CAL_BITS
    s1v = drop0 + 2
    vout = s1v + 1 + N_TC * AEIN_BITS + SUM_BITS if fe_reg else s1v
    out = {"weights": [0, arch.image_bits], "calvalues": [cal0, drop0], "drop": [drop0, drop0 + 2],
           "valid_out": [vout, vout + 1], "outputs": [vout + 1, vout + 1 + N_LATENT * latent_bits + SUM_BITS]}
    if fe_reg:
        out["stage1"] = [s1v, vout]
    return out


def check_address_map(cfg_port: dict, arch: EncoderArch = ECONT_ARCH) -> None:
    """``rtl.json``'s ``interface.cfg_port`` must be :func:`tb_address_map` of ``arch``."""
    want = tb_address_map(arch)
    bad = {k: (v, cfg_port.get(k)) for k, v in want.items() if k in cfg_port and cfg_port[k] != v}
    if bad:
        raise StageInputError("rtl.json documents another configuration address map than the testbench's "
                              f"(key: (expected, got)): {bad}")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cal_from_hex(hex_image: str) -> list[int]:
    v = int(hex_image, 16)
    return [(v >> (CAL_BITS * t)) & ((1 << CAL_BITS) - 1) for t in range(N_TC)]


def pack_rows(fields: np.ndarray, bits: int) -> list[int]:
    """``(N, k)`` unsigned fields -> N bus values, field i at bits [bits*i +: bits]."""
    v = np.asarray(fields, dtype=np.uint64)
    n, k = v.shape
    if np.any(v >> np.uint64(bits)):
        raise InputRangeError(f"expected fields that fit in {bits} bits (< {1 << bits}), got up to "
                              f"{int(v.max())}")
    bitmat = ((v[:, :, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
    by = np.packbits(bitmat.reshape(n, k * bits), axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in by]


def hex_text(values, bits: int, comment: str) -> bytes:
    digits = -(-bits // 4)
    lines = [f"// {c}" for c in comment.splitlines()]
    lines += [f"{int(v):0{digits}x}" for v in values]
    return ("\n".join(lines) + "\n").encode()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` (what ``np.savez_compressed`` writes) with fixed zip timestamps."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            arr = io.BytesIO()
            np.lib.format.write_array(arr, np.asarray(arrays[name]), allow_pickle=False)
            zf.writestr(info, arr.getvalue())
    return buf.getvalue()


def config_writes(cfg_port: dict, weights: EncoderWeights, calvalues, drop: int) -> list[tuple[int, int]]:
    """(address, data) writes that set the weight image, the CALVALUEs and drop."""
    mask = (1 << CFG_DATA_BITS) - 1
    img = int.from_bytes(weights.to_image(), "little")
    out = [(cfg_port["weight_base"] + a, (img >> (CFG_DATA_BITS * a)) & mask)
           for a in range(cfg_port["weight_words"])]
    cal = sum(int(c) << (CAL_BITS * t) for t, c in enumerate(calvalues))
    out += [(cfg_port["cal_base"] + a, (cal >> (CFG_DATA_BITS * a)) & mask)
            for a in range(cfg_port["cal_words"])]
    out.append((cfg_port["drop_addr"], int(drop)))
    return out


def write_set_files(files: dict[str, bytes], vs: dict, latent_bits: int, cfg_port: dict) -> dict:
    """The files of one vector set into ``files`` (path -> bytes); returns its
    ``vectors.json`` entry.  ``vs``: name, words, aein, latent, sum_code, kind, kind_names,
    index, calvalues, drop, weights, weights_name, flavours, source, n_source,
    default_registers (and optional extra entry keys in ``info``)."""
    name = vs["name"]
    n = len(vs["words"])
    words = pack_rows(vs["words"], TC_WORD_BITS)
    latent = pack_rows(vs["latent"], latent_bits)
    aein = pack_rows(vs["aein"], AEIN_BITS)
    head = f"ECON-T autoencoder handoff, vector set '{name}': {n} wafers, line i = wafer i"
    f = {"npz": f"vectors/{name}.npz", "words": f"vectors/{name}_words.hex",
         "latent": f"vectors/{name}_latent.hex", "sum": f"vectors/{name}_sum.hex",
         "aein": f"vectors/{name}_aein.hex", "kind": f"vectors/{name}_kind.hex",
         "config": f"registers/{name}_config.hex", "calvalue": f"registers/{name}_calvalue.mem"}
    files[f["words"]] = hex_text(words, N_TC * TC_WORD_BITS,
                                 f"{head}\ntc_words[{N_TC * TC_WORD_BITS - 1}:0]: TC t at [7t +: 7]")
    files[f["latent"]] = hex_text(latent, N_LATENT * latent_bits,
                                  f"{head}\nexpected latent[{N_LATENT * latent_bits - 1}:0]: "
                                  f"latent j at [{latent_bits}j +: {latent_bits}]")
    files[f["sum"]] = hex_text(vs["sum_code"], SUM_BITS, f"{head}\nexpected module_sum[8:0] (5E4M)")
    files[f["aein"]] = hex_text(aein, N_TC * AEIN_BITS, f"{head}\ninternal AEin"
                                f"[{N_TC * AEIN_BITS - 1}:0] (debug): TC t at [8t +: 8]")
    files[f["kind"]] = hex_text(vs["kind"], 8, f"{head}\nkind index: "
                                + ", ".join(f"{k}={n_}" for k, n_ in enumerate(vs["kind_names"])))
    writes = config_writes(cfg_port, vs["weights"], vs["calvalues"], vs["drop"])
    files[f["config"]] = hex_text(
        [(a << CFG_DATA_BITS) | d for a, d in writes], cfg_port["addr_bits"] + CFG_DATA_BITS,
        f"registers of vector set '{name}': {len(writes)} configuration writes, one per clock\n"
        f"line = {{cfg_addr[{cfg_port['addr_bits'] - 1}:0], cfg_wdata[31:0]}}: weight image, CALVALUEs, drop")
    files[f["calvalue"]] = hex_text(vs["calvalues"], CAL_BITS,
                                    f"CALVALUE of TC 0..47 for vector set '{name}' (12-bit, 2048 = 1.0); "
                                    f"drop = {vs['drop']}")
    files[f["npz"]] = npz_bytes({
        "words": vs["words"].astype(np.uint8), "latent": vs["latent"].astype(np.uint16),
        "sum_code": vs["sum_code"].astype(np.uint16), "aein": vs["aein"].astype(np.uint8),
        "kind": vs["kind"].astype(np.uint8), "kind_names": np.asarray(vs["kind_names"]),
        "calvalues": np.asarray(vs["calvalues"], dtype=np.uint16), "drop": np.int64(vs["drop"]),
        "source_index": np.asarray(vs["index"], dtype=np.int64)})
    counts = {vs["kind_names"][k]: int((vs["kind"] == k).sum()) for k in range(len(vs["kind_names"]))
              if (vs["kind"] == k).any()}
    entry = {"name": name, "n": n, "flavours": vs["flavours"], "source": vs["source"],
             "n_source": int(vs["n_source"]), "kind_names": vs["kind_names"], "counts": counts,
             "calvalues": [int(c) for c in vs["calvalues"]], "drop": int(vs["drop"]),
             "weights": f"registers/{vs['weights_name']}.bin",
             "weights_sha256": sha256_bytes(vs["weights"].to_image()),
             "default_registers": vs["default_registers"],
             "config_writes": len(writes), "files": f}
    if "n_differ_from_trained" in vs:
        entry["n_differ_from_trained"] = vs["n_differ_from_trained"]
    entry.update(vs.get("info", {}))
    return entry


def weight_files(files: dict[str, bytes], stem: str, w: EncoderWeights, cfg_port: dict) -> None:
    img = w.to_image()
    files[f"registers/{stem}.bin"] = img
    files[f"registers/{stem}.mem"] = w.to_mem().encode()
    words = [int.from_bytes(img[4 * a:4 * a + 4], "little") for a in range(cfg_port["weight_words"])]
    files[f"registers/{stem}_words.hex"] = hex_text(
        words, 32, f"{stem}: {w.arch.image_bits}-bit weight image as {len(words)} configuration words; "
                   f"line a -> cfg_addr 0x{cfg_port['weight_base']:03x} + a")


def vectors_json(latent_bits: int, entries: list[dict], formats=None, golden=None) -> bytes:
    vec_json = {"format": FORMAT, "latent_bits": latent_bits, "n_tc": N_TC, "n_latent": N_LATENT,
                "word_bits": TC_WORD_BITS, "sum_bits": SUM_BITS, "aein_bits": AEIN_BITS,
                "formats": formats or {}, "golden": golden,
                "order": "the testbench runs the sets in this order", "sets": entries}
    return (json.dumps(vec_json, indent=1) + "\n").encode()
