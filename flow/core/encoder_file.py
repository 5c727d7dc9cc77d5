"""``autoencoder/encoder.json``: what every later stage needs to know about the exported
encoder, written by the ``autoencoder`` stage next to ``weights.bin``.

It records the latent width, the architecture (``arch``: filters, weight and conv-activation
bits; :class:`flow.core.encoder.EncoderArch`, the ECON-T's for files that predate the key),
the number formats of the encoder (AEin, weights, conv activation, latent, as ``ap_*fixed``
strings and fields) and the sha256 of the register image ``weights.bin``.  ``convert``,
``rtl``, ``cosim`` and ``handoff`` read it with :func:`load_encoder` instead of looking into
the autoencoder's manifest or config; the reader checks the image against the recorded sha256
and the recorded formats against the ones this flow's :mod:`flow.core.encoder` implements for
the recorded architecture, and refuses a mismatch with a
:class:`~flow.runner.errors.StageInputError` saying what it expected, what it found and which
stage to rerun.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from flow.core import encoder as E
from flow.runner.atomic import atomic_write_bytes, atomic_write_json
from flow.runner.errors import ConfigError, StageInputError

ENCODER_JSON = "encoder.json"
WEIGHTS_BIN = "weights.bin"
FORMAT = "econt-encoder/1"
KEYS = ("format", "latent_bits", "n_latent", "image_bits", "weights_file", "weights_sha256", "formats")
RERUN = "rerun `make autoencoder` (python -m flow autoencoder)"
#: bits per latent value by ECON-T eLink budget: 16 latents + 9-bit module sum + 4-bit header
#: within 32 bits per eLink per BX (the public training code's ``bitsPerOutputLink``)
ELINK_LATENT_BITS = {2: 3, 3: 5, 4: 7, 5: 9}
#: where the autoencoder stage exports the encoder of another eLink budget than the main one
ELINK_DIR = "elinks/{n}"


def _fmt(f) -> dict:
    return {"ap": f.to_ap_string(), "width": f.width, "int_bits": f.int_bits, "signed": f.signed,
            "rounding": str(f.rounding), "overflow": str(f.overflow)}


def formats(latent_bits: int, arch: E.EncoderArch = E.ECONT_ARCH) -> dict[str, dict]:
    """The encoder's number formats as recorded in encoder.json."""
    return {"aein": _fmt(E.INPUT_FMT), "weights": _fmt(arch.weight_fmt),
            "conv_act": _fmt(arch.conv_act_fmt), "latent": _fmt(E.latent_format(latent_bits))}


def record(weights: E.EncoderWeights, latent_bits: int) -> dict:
    """The content of encoder.json for ``weights`` (written as ``weights.bin``)."""
    arch = weights.arch
    return {"format": FORMAT, "latent_bits": int(latent_bits), "n_latent": E.N_LATENT,
            "arch": arch.to_dict(), "image_bits": arch.image_bits, "weights_file": WEIGHTS_BIN,
            "weights_sha256": hashlib.sha256(weights.to_image()).hexdigest(),
            "formats": formats(latent_bits, arch)}


def write_encoder(out: str | Path, weights: E.EncoderWeights, latent_bits: int) -> dict:
    """Write ``weights.bin`` and ``encoder.json`` into ``out``; returns the record."""
    out = Path(out)
    atomic_write_bytes(out / WEIGHTS_BIN, weights.to_image())
    rec = record(weights, latent_bits)
    atomic_write_json(out / ENCODER_JSON, rec)
    return rec


@dataclass(frozen=True)
class Encoder:
    """The exported encoder as later stages see it."""

    latent_bits: int
    weights: E.EncoderWeights
    weights_sha256: str
    weights_path: Path
    record: dict


def read_encoder(json_path: str | Path, weights_path: str | Path | None = None) -> Encoder:
    """Read ``encoder.json`` and the weight image it names (``weights_path``: default, next
    to it) and check them against each other and against :mod:`flow.core.encoder`."""
    json_path = Path(json_path)
    try:
        rec = json.loads(json_path.read_text())
    except FileNotFoundError:
        raise StageInputError(f"{json_path} is missing; {RERUN}") from None
    except json.JSONDecodeError as err:
        raise StageInputError(f"{json_path} is not valid JSON ({err}); {RERUN}") from None
    if not isinstance(rec, dict) or rec.get("format") != FORMAT:
        got = rec.get("format") if isinstance(rec, dict) else type(rec).__name__
        raise StageInputError(f"{json_path}: expected format {FORMAT!r}, got {got!r}; {RERUN}")
    missing = [k for k in KEYS if k not in rec]
    if missing:
        raise StageInputError(f"{json_path}: missing keys {missing}; {RERUN}")
    lb = rec["latent_bits"]
    if not isinstance(lb, int) or not 2 <= lb <= 16:
        raise StageInputError(f"{json_path}: latent_bits: expected an integer 2..16, got {lb!r}; {RERUN}")
    try:
        arch = E.EncoderArch.from_dict(rec.get("arch", E.ECONT_ARCH.to_dict()), f"{json_path}: arch")
    except ConfigError as err:
        raise StageInputError(f"{err}; {RERUN}") from None
    for key, want in (("n_latent", E.N_LATENT), ("image_bits", arch.image_bits),
                      ("formats", formats(lb, arch))):
        if rec[key] != want:
            raise StageInputError(f"{json_path}: {key}: this flow's encoder (flow/core/encoder.py) has "
                                  f"{want!r}, the file records {rec[key]!r}; {RERUN}")
    wpath = Path(weights_path) if weights_path is not None else json_path.with_name(rec["weights_file"])
    try:
        image = wpath.read_bytes()
    except FileNotFoundError:
        raise StageInputError(f"{wpath} (named by {json_path}) is missing; {RERUN}") from None
    sha = hashlib.sha256(image).hexdigest()
    if sha != rec["weights_sha256"]:
        raise StageInputError(f"{wpath} does not match {json_path}: expected weights sha256 "
                              f"{rec['weights_sha256']}, got {sha}; {RERUN}")
    return Encoder(latent_bits=lb, weights=E.EncoderWeights.from_image(image, arch), weights_sha256=sha,
                   weights_path=wpath, record=rec)


def load_encoder(ae) -> Encoder:
    """The encoder of a verified ``autoencoder`` artifact (:class:`flow.runner.manifest.Verified`):
    both files must be among its recorded outputs."""
    return read_encoder(ae.path(ENCODER_JSON), ae.path(WEIGHTS_BIN))


ELINKS_JSON = "elinks.json"


def budget_encoders(ae) -> dict[int, Encoder]:
    """The encoders the ``autoencoder`` stage exported for the eLink budgets other than the
    main one (``elinks.json`` entries with ``trained``: ``elinks/<n>/encoder.json`` +
    ``weights.bin``), ``{n_elinks: Encoder}`` in increasing ``n``; empty when the stage trained
    none.  Each must have the latent width of its budget (:data:`ELINK_LATENT_BITS`), else a
    :class:`~flow.runner.errors.StageInputError` names both."""
    table = budget_table(ae, RERUN)
    out: dict[int, Encoder] = {}
    for key, rec in sorted(table.items(), key=lambda kv: int(kv[0])):
        n = int(key)
        if n not in ELINK_LATENT_BITS:
            raise StageInputError(f"{ae.path(ELINKS_JSON)}: eLink budget {key!r}: expected one of "
                                  f"{sorted(ELINK_LATENT_BITS)}; {RERUN}")
        if not rec.get("trained"):
            continue                       # the main encoder (weights.bin) serves this budget
        d = ELINK_DIR.format(n=n)
        enc = read_encoder(ae.path(f"{d}/{ENCODER_JSON}"), ae.path(f"{d}/{WEIGHTS_BIN}"))
        if enc.latent_bits != ELINK_LATENT_BITS[n]:
            raise StageInputError(f"{d}/{ENCODER_JSON}: the {n}-eLink budget needs "
                                  f"{ELINK_LATENT_BITS[n]}-bit latents, the encoder has "
                                  f"{enc.latent_bits}; {RERUN}")
        out[n] = enc
    return out


def budget_table(stage, rerun: str = "rerun the stage that wrote it") -> dict:
    """The ``elinks.json`` of a verified stage artifact (autoencoder, convert, rtl: what it made
    for each other eLink budget, keyed by the budget as a string), ``{}`` when it wrote none;
    ``rerun``: the advice in the error for a file that is not JSON."""
    if ELINKS_JSON not in stage.manifest["outputs"]:
        return {}
    path = stage.path(ELINKS_JSON)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise StageInputError(f"{path} is not valid JSON ({err}); {rerun}") from None
