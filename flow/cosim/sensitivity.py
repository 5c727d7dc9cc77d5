"""Physics sensitivity of the encoder's weight bits to single-event upsets (SEU), and a
selective-TMR proposal (issue #17, item 3, the part that needs no RTL).

What it measures
----------------
The programmable encoder keeps its 2144 six-bit weights in a 12864-bit register image
(:class:`flow.core.encoder.EncoderWeights`, value ``i`` at bits ``6 i .. 6 i + 5``).  For a
chosen set of those bits, one at a time (all other bits golden), the bit is flipped, the
integer golden model (:func:`flow.core.encoder.golden_encode`, same arithmetic) encodes the
test wafers, the float decoder (the autoencoder stage's ``decoder.h5``, evaluated in numpy
by :class:`NumpyDecoder`) reconstructs them, and the exact EMD
(:func:`flow.core.emd_exact.emd_pairs`) between each wafer's CALQ input and its reconstruction
is compared with the unflipped reference -- the autoencoder stage's evaluation, with one
bit upset.  Only wafers whose latent codes change are decoded and re-labelled (the others
keep their reference EMD exactly), which is where the cost goes: ~0.2 ms of CPU per EMD.

Per flipped bit:

* ``delta_median_emd``: median EMD over the wafers with the flip minus without it (the
  issue's "change of median exact EMD"; the headline metric of the autoencoder stage);
* ``mean_delta_emd``, ``median_delta_emd``, ``max_delta_emd``: mean / median / max over
  wafers of the per-wafer EMD change (the mean sees damage to a minority of wafers that the
  median does not);
* ``frac_latent_changed``: fraction of wafers whose 16 latent codes changed.

Bit classes: tensor (``conv_w``, ``conv_b``, ``dense_w``, ``dense_b``) x bit position in
the six-bit two's complement code (5 = sign/MSB, weight -32 LSB units, ... 0 = LSB).  The
small tensors (conv weights and biases, dense biases: 96 values, 576 bits) are measured
bit by bit; of the 2048 dense weights, ``n_bits_per_class`` per bit position are drawn
at random (seeded; 0 = all), and a class's unmeasured bits are assigned the mean of its
measured bits (with the standard error of that mean, finite-population corrected).

Selective TMR
-------------
Assumptions: one upset at a time (no accumulation: the TMR flavour refreshes every clock,
an unprotected bit is assumed rewritten before a second upset); every configuration
flip-flop equally likely to be hit; a triplicated bit never corrupts; the damage of an
upset of bit ``b`` is ``d_b = max(metric_b, 0)`` (``metric``: ``delta_median`` or
``mean_delta``; an upset that happens to lower the EMD counts as no damage), measured or,
in a sampled class, extrapolated.  Cost: a TMR'd bit costs 2 extra flip-flops plus one
majority voter (``voter_flops`` flip-flop equivalents; sky130_fd_sc_hd: ``maj3_1``
10.0 um^2 = 0.5 x ``dfxtp_1`` 20.0 um^2).  A budget is the fraction of the 12864 weight
bits that may be triplicated, i.e. ``budget x 12864 x (2 + voter_flops)`` flip-flop
equivalents.  Greedy: sort by damage per cost (ties: register order), take while the
budget lasts, never a bit with zero damage.  With a uniform cost per bit that is the
top-k of the damage; the class-level variant (whole classes, e.g. "every sign bit of the
dense weights", simpler to lay out) is a greedy knapsack on classes.  The *residual
damage* of a protection is the expected damage of one random upset in the weight
register, ``sum(d_b, b unprotected) / 12864``: the mean damage without TMR, 0 with full TMR.

Output (``seu_sensitivity.json``, schema 1)
-------------------------------------------
``schema``, ``n_wafers``, ``latent_bits``, ``seed``, ``metric``, ``n_bits_per_class``,
``reference`` {``median_emd``, ``mean_emd``}, ``cost`` {``wall_s``, ``cpu_s_driver`` (this
process only), ``workers``, ``n_flips``, ``n_emd_pairs`` (exact EMDs computed, after merging
identical (wafer, latent codes) pairs), ``s_per_flip``},
``classes``: list of {``tensor``, ``bit``, ``label``, ``n_bits``, ``n_measured``,
``delta_median_emd`` {mean, sem, min, max}, ``mean_delta_emd`` {mean, sem, min, max},
``frac_latent_changed`` (mean), ``damage`` (class mean of ``d_b``), ``damage_sem``},
``bits``: columns over the measured bits {``image_bit``, ``tensor``, ``index`` (flat index
in the tensor), ``bit``, ``code`` (golden code), ``delta_median_emd``, ``mean_delta_emd``,
``median_delta_emd``, ``max_delta_emd``, ``frac_latent_changed``},
``tmr`` {``cost_model``, ``n_bits``, ``n_damaging``, ``damage_no_tmr``, ``damage_full_tmr``,
``ranking_image_bits`` (bits with damage > 0, most damaging first; a budget protects a
prefix), ``budgets``: list of {``budget``, ``n_protected``, ``extra_flops``, ``voters``,
``flop_equivalents``, ``residual_damage``, ``residual_fraction``, ``protected_by_class``
(label -> bits), ``class_level`` {``classes``, ``n_protected``, ``residual_damage``}}}.

Entry points: :func:`analyse` (arrays in, dict out), :func:`analyse_files` (the autoencoder
and data stages' files), :func:`plot`, :func:`run_in_stage` (the cosim stage's hook).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flow.core import encoder as E
from flow.core.fixedpoint import requantize
from flow.core.geometry import REMAP_8X8, to_8x8
from flow.runner.errors import InputRangeError, ShapeError

SCHEMA = 1
N_BITS = E.WEIGHT_FMT.width                              # 6
TENSORS = tuple(name for name, _ in E.REGISTER_LAYOUT)   # conv_w, conv_b, dense_w, dense_b
#: tensors measured bit by bit whatever ``n_bits_per_class`` says
SMALL_TENSORS = ("conv_w", "conv_b", "dense_b")
SAMPLED_TENSORS = ("dense_w",)
METRICS = ("delta_median", "mean_delta")
#: flips whose changed wafers are decoded and labelled together
PAIRS_PER_BATCH = 40000
_FRAC = E.INPUT_FMT.frac_bits + E.WEIGHT_FMT.frac_bits   # 12: accumulators of both layers
_BIAS_SHIFT = _FRAC - E.WEIGHT_FMT.frac_bits             # a bias code << 7 in accumulator units


def bit_label(tensor: str, bit: int) -> str:
    return f"{tensor}[b{bit}{' sign' if bit == N_BITS - 1 else ''}]"


def flip_code(code, bit: int):
    """The six-bit two's complement code ``code`` (int or array) with bit ``bit`` inverted."""
    raw = (np.asarray(code, dtype=np.int64) & 0x3F) ^ (1 << bit)
    return np.where(raw >= 32, raw - 64, raw)


def _offsets() -> dict[str, int]:
    off, i = {}, 0
    for name, shape in E.REGISTER_LAYOUT:
        off[name] = i
        i += int(np.prod(shape))
    return off


def image_bit(tensor: str, index, bit):
    """Position in the 12864-bit register image of bit ``bit`` of value ``index`` (flat,
    row-major) of ``tensor``."""
    return N_BITS * (_offsets()[tensor] + np.asarray(index)) + np.asarray(bit)


# ---------------------------------------------------------------- decoder
@dataclass(frozen=True)
class NumpyDecoder:
    """The autoencoder's float decoder (``flow.core.ae_model.build_decoder``) in numpy,
    float64: Dense 16->128 ReLU -> 4x4x8 -> Conv2DTranspose 8 3x3 stride 2 'same' ReLU ->
    Conv2DTranspose 1 3x3 'same' sigmoid -> 48 cells.  Kernels in Keras layout (Dense
    ``(in, out)``, Conv2DTranspose ``(kh, kw, out, in)``)."""

    dense_w: np.ndarray
    dense_b: np.ndarray
    ct1_w: np.ndarray
    ct1_b: np.ndarray
    ct2_w: np.ndarray
    ct2_b: np.ndarray

    def __post_init__(self):
        want = {"dense_w": (E.N_LATENT, 128), "dense_b": (128,), "ct1_w": (3, 3, 8, 8), "ct1_b": (8,),
                "ct2_w": (3, 3, 1, 8), "ct2_b": (1,)}
        for k, shape in want.items():
            a = np.asarray(getattr(self, k), dtype=np.float64)
            if a.shape != shape:
                raise ShapeError(f"decoder {k}: expected shape {shape}, got {a.shape} (a decoder with "
                                 "conditions is not exported and not supported)")
            object.__setattr__(self, k, a)

    @classmethod
    def from_h5(cls, path: str | Path) -> NumpyDecoder:
        """Read the weights of a Keras ``decoder.h5`` (HDF5 layout) with h5py, no TensorFlow."""
        import h5py

        with h5py.File(path, "r") as f:
            g = f["model_weights"]

            def get(layer, name):
                grp = g[layer][layer] if layer in g[layer] else g[layer]
                return np.asarray(grp[f"{name}:0"] if f"{name}:0" in grp else grp[name])
            return cls(get("dec_dense", "kernel"), get("dec_dense", "bias"),
                       get("dec_convt1", "kernel"), get("dec_convt1", "bias"),
                       get("dec_convt2", "kernel"), get("dec_convt2", "bias"))

    @classmethod
    def from_keras(cls, model) -> NumpyDecoder:
        w = {n: model.get_layer(n).get_weights() for n in ("dec_dense", "dec_convt1", "dec_convt2")}
        return cls(*w["dec_dense"], *w["dec_convt1"], *w["dec_convt2"])

    def __call__(self, latent: np.ndarray) -> np.ndarray:
        """Latent *values* ``(N, 16)`` -> reconstruction ``(N, 48)`` in TC order."""
        z = np.asarray(latent, dtype=np.float64)
        x = np.maximum(z @ self.dense_w + self.dense_b, 0.0).reshape(-1, 4, 4, 8)
        n = len(x)
        # stride 2, 'same': input pixel i feeds output 2 i + a (a = 0..2), the last row/col cut
        y = np.zeros((n, 9, 9, 8))
        for a in range(3):
            for b in range(3):
                y[:, a:a + 8:2, b:b + 8:2, :] += x @ self.ct1_w[a, b].T
        y = np.maximum(y[:, :8, :8, :] + self.ct1_b, 0.0)
        # stride 1, 'same': input pixel i feeds output i + a - 1
        o = np.zeros((n, 10, 10))
        for a in range(3):
            for b in range(3):
                o[:, a:a + 8, b:b + 8] += y @ self.ct2_w[a, b, 0]
        o = o[:, 1:9, 1:9] + self.ct2_b[0]
        return (1.0 / (1.0 + np.exp(-o))).reshape(n, 64)[:, REMAP_8X8]


# ----------------------------------------------------------- flip engine
class FlipEngine:
    """The golden encoder on a fixed set of wafers, with the intermediate integer
    accumulators kept, so that one flipped weight bit costs only the part of the network
    it touches.  Bit-exact with :func:`flow.core.encoder.golden_encode` on the flipped weights."""

    def __init__(self, weights: E.EncoderWeights, aein_codes, latent_bits: int = 9):
        self.w = weights
        self.latent_fmt = E.latent_format(latent_bits)
        x = to_8x8(E.check_aein_codes(aein_codes))
        x = np.pad(x, ((0, 0), (0, 1), (0, 1)))
        # patches[di, dj]: (N, 4, 4) input seen by kernel tap (di, dj)
        self.patches = np.stack([np.stack([x[:, di:di + 8:E.STRIDE, dj:dj + 8:E.STRIDE]
                                           for dj in range(E.KERNEL)]) for di in range(E.KERNEL)])
        acc = np.einsum("ijnrc,ijf->nrcf", self.patches, weights.conv_w[:, :, 0, :])
        self.conv_acc = acc + (weights.conv_b << _BIAS_SHIFT)
        self.h = self._conv_act(self.conv_acc)                      # (N, 4, 4, 8)
        self.hflat = self.h.reshape(len(x), -1)                     # (N, 128) Keras order
        self.dense_acc = self.hflat @ weights.dense_w + (weights.dense_b << _BIAS_SHIFT)
        self.latent = self._latent(self.dense_acc)                  # (N, 16)

    @staticmethod
    def _conv_act(acc):
        return requantize(np.maximum(acc, 0), _FRAC, E.CONV_ACT_FMT)

    def _latent(self, acc):
        return requantize(np.maximum(acc, 0), _FRAC, self.latent_fmt)

    def flipped_latent(self, tensor: str, index: int, bit: int) -> np.ndarray:
        """Latent codes ``(N, 16)`` with bit ``bit`` of value ``index`` of ``tensor`` flipped."""
        code = int(getattr(self.w, tensor).ravel()[index])
        d = int(flip_code(code, bit)) - code
        out = self.latent.copy()
        if tensor == "dense_w":
            k, j = divmod(index, E.N_LATENT)
            out[:, j] = self._latent(self.dense_acc[:, j] + self.hflat[:, k] * d)
        elif tensor == "dense_b":
            out[:, index] = self._latent(self.dense_acc[:, index] + (d << _BIAS_SHIFT))
        elif tensor in ("conv_w", "conv_b"):
            if tensor == "conv_w":
                di, dj, _, f = np.unravel_index(index, E.CONV_W_SHAPE)
                acc_f = self.conv_acc[..., f] + self.patches[di, dj] * d
            else:
                f = index
                acc_f = self.conv_acc[..., f] + (d << _BIAS_SHIFT)
            dh = (self._conv_act(acc_f) - self.h[..., f]).reshape(len(out), -1)    # (N, 16)
            rows = np.arange(16) * E.N_FILTERS + f                                  # Keras Flatten order
            out = self._latent(self.dense_acc + dh @ self.w.dense_w[rows])
        else:
            raise ShapeError(f"unknown weight tensor {tensor!r}; expected one of {TENSORS}")
        return out

    def dense_w_latent_columns(self, index: np.ndarray, bit: int) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised dense-weight flips: for each flat index in ``index`` (bit ``bit``
        flipped), the new latent column ``(N, B)`` and its column numbers ``(B,)``."""
        index = np.asarray(index, dtype=np.int64)
        k, j = np.divmod(index, E.N_LATENT)
        code = self.w.dense_w.ravel()[index]
        d = flip_code(code, bit) - code
        return self._latent(self.dense_acc[:, j] + self.hflat[:, k] * d), j


# ------------------------------------------------------------- selection
def select_bits(n_bits_per_class: int, seed: int) -> list[tuple[str, int, int]]:
    """``(tensor, flat index, bit)`` of every flip to measure: all bits of the small tensors,
    ``n_bits_per_class`` random dense weights per bit position (0 or >= 2048: all)."""
    rng = np.random.default_rng(seed)
    out = []
    for name, shape in E.REGISTER_LAYOUT:
        n = int(np.prod(shape))
        for bit in range(N_BITS - 1, -1, -1):
            if name in SAMPLED_TENSORS and 0 < n_bits_per_class < n:
                idx = np.sort(rng.choice(n, n_bits_per_class, replace=False))
            else:
                idx = np.arange(n)
            out += [(name, int(i), bit) for i in idx]
    return out


def _prepare_wafers(aein, calq, n_wafers: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    aein = E.check_aein_codes(aein)
    calq = np.asarray(calq)
    if calq.shape != aein.shape:
        raise ShapeError(f"CALQ: expected shape {aein.shape} like AEin, got {calq.shape}")
    ok = np.flatnonzero((aein.sum(1) > 0) & (calq.sum(1) > 0))
    if len(ok) == 0:
        raise InputRangeError("SEU sensitivity: no test wafer with a non-empty AEin and CALQ")
    if n_wafers and n_wafers < len(ok):
        ok = np.sort(np.random.default_rng(seed).choice(ok, n_wafers, replace=False))
    return aein[ok], calq[ok].astype(np.float64), ok


# --------------------------------------------------------------- analysis
def measure(weights: E.EncoderWeights, decoder, aein, calq, flips, latent_bits: int = 9,
            progress=None, workers: int = 1) -> dict:
    """Per-flip statistics (columns, one row per entry of ``flips``) and the reference EMD.

    ``decoder``: a callable latent values ``(N, 16)`` -> ``(N, 48)`` (e.g.
    :class:`NumpyDecoder`); ``aein``/``calq``: the wafers, used as given.  ``workers`` > 1:
    the exact EMD on Ray (the caller starts it, :func:`flow.core.emd_exact.ray_session`; the
    labels are bit-identical to the serial ones)."""
    from flow.core.emd_exact import emd_pairs, label_pairs

    def label(a, b):
        if workers > 1:
            return label_pairs(a, b, use_ray=True, chunk_pairs=max(500, len(a) // (2 * workers) + 1),
                               progress=False)
        return emd_pairs(a, b)

    eng = FlipEngine(weights, aein, latent_bits)
    lsb = eng.latent_fmt.lsb
    calq = np.asarray(calq, dtype=np.float64)
    ref = label(calq, decoder(eng.latent * lsb))
    n = len(ref)
    cols = {k: np.zeros(len(flips)) for k in ("delta_median_emd", "mean_delta_emd", "median_delta_emd",
                                              "max_delta_emd", "frac_latent_changed")}
    med_ref = float(np.median(ref))
    pending: list[tuple[int, np.ndarray, np.ndarray]] = []     # (flip row, wafers, new latent rows)
    n_pairs = 0

    def flush():
        nonlocal n_pairs
        if not pending:
            return
        wafers = np.concatenate([w for _, w, _ in pending])
        lat = np.concatenate([x for _, _, x in pending])
        emd = np.zeros(0)
        if len(wafers):
            # the same (wafer, latent codes) from several flips is labelled once
            key = np.concatenate([wafers[:, None], lat], axis=1)
            uniq, inv = np.unique(key, axis=0, return_inverse=True)
            emd = label(calq[uniq[:, 0]], decoder(uniq[:, 1:] * lsb))[inv.ravel()]
            n_pairs += len(uniq)
        pos = 0
        for row, w, _ in pending:
            new = ref.copy()
            new[w] = emd[pos:pos + len(w)]
            pos += len(w)
            delta = new - ref
            cols["delta_median_emd"][row] = float(np.median(new)) - med_ref
            cols["mean_delta_emd"][row] = float(delta.mean())
            cols["median_delta_emd"][row] = float(np.median(delta))
            cols["max_delta_emd"][row] = float(delta.max())
            cols["frac_latent_changed"][row] = len(w) / n
        pending.clear()
        if progress:
            progress(row + 1, len(flips))

    def add(row, lat_new):
        w = np.flatnonzero((lat_new != eng.latent).any(1))
        pending.append((row, w, lat_new[w]))
        if sum(len(x) for _, x, _ in pending) >= PAIRS_PER_BATCH:
            flush()

    rows_by_dense: dict[int, list[int]] = {}
    for row, (tensor, index, bit) in enumerate(flips):
        if tensor == "dense_w":
            rows_by_dense.setdefault(bit, []).append(row)
        else:
            add(row, eng.flipped_latent(tensor, index, bit))
    for bit, rows in rows_by_dense.items():
        for lo in range(0, len(rows), 64):
            chunk = rows[lo:lo + 64]
            newcols, js = eng.dense_w_latent_columns([flips[r][1] for r in chunk], bit)
            for c, (row, j) in enumerate(zip(chunk, js, strict=True)):
                lat = eng.latent.copy()
                lat[:, j] = newcols[:, c]
                add(row, lat)
    flush()
    return {"columns": cols, "reference": ref, "n_emd_pairs": n_pairs + n}


def _stats(v: np.ndarray, n_pop: int) -> dict:
    m = len(v)
    sem = float(np.std(v, ddof=1) / np.sqrt(m) * np.sqrt(max(0.0, 1 - m / n_pop))) if m > 1 else None
    return {"mean": float(v.mean()), "sem": sem, "min": float(v.min()), "max": float(v.max())}


def damage_of(columns: dict, metric: str) -> np.ndarray:
    """``d_b = max(metric_b, 0)`` per measured flip."""
    if metric not in METRICS:
        raise InputRangeError(f"SEU sensitivity metric: expected one of {METRICS}, got {metric!r}")
    return np.maximum(np.asarray(columns[f"{metric}_emd"], dtype=np.float64), 0.0)


def full_damage(flips, damage: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Damage of all 12864 image bits (measured, or the mean of the measured bits of the
    same class) and the class id (``6 x tensor number + bit``) of each."""
    all_d = np.full(E.IMAGE_BITS, np.nan)
    cls = np.empty(E.IMAGE_BITS, dtype=np.int64)
    for t, (name, shape) in enumerate(E.REGISTER_LAYOUT):
        n = int(np.prod(shape))
        for bit in range(N_BITS):
            cls[image_bit(name, np.arange(n), bit)] = t * N_BITS + bit
    for (name, index, bit), d in zip(flips, damage, strict=True):
        all_d[image_bit(name, index, bit)] = d
    for c in range(len(TENSORS) * N_BITS):
        sel = cls == c
        have = sel & np.isfinite(all_d)
        if not have.any():
            raise InputRangeError(f"SEU sensitivity: class {bit_label(TENSORS[c // N_BITS], c % N_BITS)} "
                                  "has no measured bit to extrapolate from")
        all_d[sel & ~np.isfinite(all_d)] = all_d[have].mean()
    return all_d, cls


def greedy_protect(damage, cost, budget: float) -> np.ndarray:
    """Greedy selection: items by ``damage / cost`` descending (ties: lower index first),
    each taken if it still fits in ``budget``; items without damage are never taken.
    Returns the boolean mask of protected items."""
    damage = np.asarray(damage, dtype=np.float64)
    cost = np.broadcast_to(np.asarray(cost, dtype=np.float64), damage.shape)
    if np.any(cost <= 0):
        raise InputRangeError("greedy_protect: costs must be positive")
    order = np.lexsort((np.arange(len(damage)), -damage / cost))
    chosen = np.zeros(len(damage), dtype=bool)
    spent, eps = 0.0, 1e-9 * max(1.0, float(budget))
    for i in order:
        if damage[i] <= 0:
            break
        if spent + cost[i] <= budget + eps:
            chosen[i] = True
            spent += cost[i]
    return chosen


def residual_damage(damage, protected, n_bits: int | None = None) -> float:
    """Expected damage of one random upset: ``sum(damage[~protected]) / n_bits`` (``damage``
    may be per bit, or per class as the class total with ``n_bits`` the bit count)."""
    damage = np.asarray(damage, dtype=np.float64)
    n = len(damage) if n_bits is None else n_bits
    return float(damage[~np.asarray(protected, dtype=bool)].sum() / n)


def tmr_proposal(all_damage: np.ndarray, cls: np.ndarray, budgets, voter_flops: float) -> dict:
    """The selective-TMR proposal per budget (fraction of the weight bits triplicated)."""
    n = len(all_damage)
    per_bit = 2.0 + voter_flops
    order = np.lexsort((np.arange(n), -all_damage))
    ranked = order[all_damage[order] > 0]
    n_cls = len(TENSORS) * N_BITS
    labels = [bit_label(TENSORS[c // N_BITS], c % N_BITS) for c in range(n_cls)]
    cls_n = np.bincount(cls, minlength=n_cls).astype(np.float64)
    cls_d = np.bincount(cls, weights=all_damage, minlength=n_cls)
    none = residual_damage(all_damage, np.zeros(n, bool))
    rows = []
    for b in budgets:
        k = min(int(np.floor(b * n + 1e-9)), len(ranked))
        prot = np.zeros(n, bool)
        prot[ranked[:k]] = True
        res = residual_damage(all_damage, prot)
        by_cls = np.bincount(cls[prot], minlength=n_cls)
        cprot = greedy_protect(cls_d, cls_n * per_bit, b * n * per_bit)
        cres = residual_damage(cls_d, cprot, n)
        rows.append({"budget": float(b), "n_protected": int(k), "extra_flops": int(2 * k), "voters": int(k),
                     "flop_equivalents": float(k * per_bit), "residual_damage": res,
                     "residual_fraction": res / none if none > 0 else 0.0,
                     "protected_by_class": {labels[c]: int(by_cls[c]) for c in range(n_cls) if by_cls[c]},
                     "class_level": {"classes": [labels[c] for c in np.flatnonzero(cprot)],
                                     "n_protected": int(cls_n[cprot].sum()), "residual_damage": cres,
                                     "residual_fraction": cres / none if none > 0 else 0.0}})
    return {"cost_model": {"per_protected_bit": "2 extra flip-flops + 1 majority voter",
                           "voter_flops": voter_flops, "flop_equivalents_per_bit": per_bit},
            "n_bits": n, "n_damaging": int(len(ranked)), "damage_no_tmr": none, "damage_full_tmr": 0.0,
            "ranking_image_bits": [int(i) for i in ranked], "budgets": rows}


def analyse(weights: E.EncoderWeights, decoder, aein, calq, *, latent_bits: int = 9, n_wafers: int = 2000,
            n_bits_per_class: int = 64, budgets=(0.05, 0.1, 0.25, 0.5), metric: str = "delta_median",
            voter_flops: float = 0.5, seed: int = 0, workers: int = 1, progress=None) -> dict:
    """The whole analysis on arrays (module docstring: method and output schema).
    ``workers`` > 1: the exact EMD on a local Ray with that many CPUs (an initialised Ray
    is reused)."""
    if metric not in METRICS:
        raise InputRangeError(f"SEU sensitivity metric: expected one of {METRICS}, got {metric!r}")
    t0, c0 = time.perf_counter(), time.process_time()
    a, q, _ = _prepare_wafers(aein, calq, n_wafers, seed)
    flips = select_bits(n_bits_per_class, seed)
    if workers > 1:
        from flow.core.emd_exact import ray_session

        with ray_session(num_cpus=workers):
            m = measure(weights, decoder, a, q, flips, latent_bits, progress, workers)
    else:
        m = measure(weights, decoder, a, q, flips, latent_bits, progress)
    cols = m["columns"]
    dmg = damage_of(cols, metric)
    all_d, cls = full_damage(flips, dmg)
    tensors = np.array([f[0] for f in flips])
    bits = np.array([f[2] for f in flips])
    classes = []
    for name, shape in E.REGISTER_LAYOUT:
        n_pop = int(np.prod(shape))
        for bit in range(N_BITS - 1, -1, -1):
            sel = (tensors == name) & (bits == bit)
            dsel = dmg[sel]
            classes.append({"tensor": name, "bit": bit, "label": bit_label(name, bit), "n_bits": n_pop,
                            "n_measured": int(sel.sum()),
                            "delta_median_emd": _stats(cols["delta_median_emd"][sel], n_pop),
                            "mean_delta_emd": _stats(cols["mean_delta_emd"][sel], n_pop),
                            "frac_latent_changed": float(cols["frac_latent_changed"][sel].mean()),
                            "damage": float(dsel.mean()), "damage_sem": _stats(dsel, n_pop)["sem"]})
    codes = {name: getattr(weights, name).ravel() for name in TENSORS}
    out = {
        "schema": SCHEMA, "n_wafers": int(len(a)), "latent_bits": latent_bits, "seed": seed, "metric": metric,
        "n_bits_per_class": n_bits_per_class,
        "reference": {"median_emd": float(np.median(m["reference"])),
                      "mean_emd": float(np.mean(m["reference"]))},
        "classes": classes,
        "bits": {"image_bit": [int(image_bit(t, i, b)) for t, i, b in flips],
                 "tensor": [t for t, _, _ in flips], "index": [i for _, i, _ in flips],
                 "bit": [b for _, _, b in flips], "code": [int(codes[t][i]) for t, i, _ in flips],
                 **{k: [float(x) for x in v] for k, v in cols.items()}},
        "tmr": tmr_proposal(all_d, cls, budgets, voter_flops),
    }
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out["cost"] = {"wall_s": round(wall, 2), "cpu_s_driver": round(cpu, 2), "workers": workers,
                   "n_flips": len(flips),
                   "n_emd_pairs": int(m["n_emd_pairs"]), "s_per_flip": round(wall / max(1, len(flips)), 5)}
    return out


def load_test_wafers(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """AEin codes and CALQ of a data-stage split file (``test.npz``, read through its
    contract, :func:`flow.core.dataset.read_split`)."""
    from flow.core.dataset import read_split

    d = read_split(path, keys=("aein", "calq"))
    return d["aein"].astype(np.int64), d["calq"]


def analyse_files(weights_bin: str | Path, decoder_h5: str | Path, test_npz: str | Path, **kw) -> dict:
    """:func:`analyse` on the autoencoder stage's ``weights.bin`` and ``decoder.h5`` and the
    data stage's ``test.npz`` (``latent_bits`` in ``kw``: the exported encoder's, recorded in
    its ``encoder.json``; default 9)."""
    w = E.EncoderWeights.from_image(Path(weights_bin).read_bytes())
    aein, calq = load_test_wafers(test_npz)
    return analyse(w, NumpyDecoder.from_h5(decoder_h5), aein, calq, **kw)


# ------------------------------------------------------------------- plot
#: captions of the plots (``seu/captions.json``, read by the report)
CAPTIONS = {
    "seu_sensitivity_map.png": "SEU sensitivity of the encoder's weight bits: class-mean change of the "
                               "median exact EMD per single upset, per tensor and bit of the 6-bit code "
                               "(golden model + decoder, no RTL); cells give measured/total bits",
    "seu_tmr_curve.png": "Selective TMR: per-bit damage ranking and the expected damage of one random "
                         "upset left unprotected vs the fraction of weight bits triplicated",
}


def plot(res: dict, out_dir: str | Path) -> list[str]:
    """``seu_sensitivity_map.png`` (class x bit position heatmap of the class-mean damage
    metric, with measured/total counts) and ``seu_tmr_curve.png`` (per-bit damage ranking
    and the residual damage vs the fraction of bits protected).  Returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = f"{res['metric']}_emd"
    grid = np.zeros((len(TENSORS), N_BITS))
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for c in res["classes"]:
        grid[TENSORS.index(c["tensor"]), N_BITS - 1 - c["bit"]] = c[key]["mean"]
    vmax = max(abs(grid).max(), 1e-12)
    # symmetric log scale: the classes span four decades
    norm = matplotlib.colors.SymLogNorm(linthresh=min(1e-3, vmax / 10), vmin=-vmax, vmax=vmax)
    im = ax.imshow(grid, cmap="RdBu_r", norm=norm, aspect="auto")
    for c in res["classes"]:
        r, col = TENSORS.index(c["tensor"]), N_BITS - 1 - c["bit"]
        ax.text(col, r, f"{c[key]['mean']:.3g}\n{c['n_measured']}/{c['n_bits']}", ha="center", va="center",
                fontsize=8)
    ax.set_xticks(range(N_BITS), [f"b{N_BITS - 1 - i}" + (" (sign)" if i == 0 else "")
                                  for i in range(N_BITS)])
    ax.set_yticks(range(len(TENSORS)), TENSORS)
    ax.set_xlabel("bit of the 6-bit weight code")
    name = "change of median EMD" if res["metric"] == "delta_median" else "mean per-wafer EMD change"
    fig.colorbar(im, ax=ax, label=f"{name} per upset (class mean)")
    ax.set_title(f"SEU sensitivity of the weight bits ({res['n_wafers']} test wafers, reference median "
                 f"EMD {res['reference']['median_emd']:.3f}); cells: measured/total bits", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "seu_sensitivity_map.png", dpi=90)
    plt.close(fig)

    tmr = res["tmr"]
    ranked = np.asarray(tmr["ranking_image_bits"], dtype=np.int64)
    n = tmr["n_bits"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    # damage per bit in ranking order: measured bits and extrapolated ones are not told apart here
    d = _all_damage_from_result(res)
    ds = np.sort(d)[::-1]
    a1.plot(np.arange(1, n + 1), np.where(ds > 0, ds, np.nan))
    a1.set_yscale("log")
    a1.set_xlabel("bits, most damaging first")
    a1.set_ylabel("damage per upset (EMD)")
    a1.set_title(f"{len(ranked)} of {n} bits damaging (flat steps: class means of sampled bits)",
                  fontsize=9)
    frac = np.arange(0, len(ranked) + 1) / n
    cum = np.concatenate([[0.0], np.cumsum(ds[:len(ranked)])])
    total = cum[-1] if len(cum) else 0.0
    a2.plot(frac * 100, (total - cum) / n)
    for b in tmr["budgets"]:
        a2.plot(b["budget"] * 100, b["residual_damage"], "o", color="C1")
        a2.annotate(f"{100 * b['budget']:g} %: {100 * b['residual_fraction']:.0f} %",
                    (b["budget"] * 100, b["residual_damage"]), fontsize=8, xytext=(4, 4),
                    textcoords="offset points")
    a2.set_xlabel("weight bits triplicated (%)")
    a2.set_ylabel("residual damage of a random upset")
    a2.set_title("greedy selective TMR (label: residual / no TMR)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out_dir / "seu_tmr_curve.png", dpi=90)
    plt.close(fig)
    return ["seu_sensitivity_map.png", "seu_tmr_curve.png"]


def _all_damage_from_result(res: dict) -> np.ndarray:
    b = res["bits"]
    flips = list(zip(b["tensor"], b["index"], b["bit"], strict=True))
    dmg = damage_of(b, res["metric"])
    return full_damage(flips, dmg)[0]


# ------------------------------------------------------------- stage hook
def run_in_stage(ctx) -> dict | None:
    """The cosim stage's hook (``cosim.seu_sensitivity``): reads the exported encoder
    (``encoder.json`` + ``weights.bin``: weights and latent width) and ``decoder.h5`` of the
    autoencoder upstream and the data stage's test split (verified here and recorded as an
    upstream of the run), writes ``seu_sensitivity.json`` and the plots into
    ``ctx.out / "seu"``, and adds metrics and summary rows."""
    from flow.core.dataset import split_file
    from flow.core.encoder_file import load_encoder
    from flow.runner.atomic import atomic_write_json
    from flow.runner.manifest import verify

    s = ctx.settings.seu_sensitivity
    if not s.enabled:
        return None
    for up in ("autoencoder", "data"):        # data is not an upstream of cosim in the registry
        if up not in ctx.upstream:
            ctx.upstream[up] = verify(ctx.cfg, up)
    ae, data = ctx.upstream["autoencoder"], ctx.upstream["data"]
    enc = load_encoder(ae)                    # weights.bin checked against encoder.json
    aein, calq = load_test_wafers(data.path(split_file("test")))
    res = analyse(enc.weights, NumpyDecoder.from_h5(ae.path("decoder.h5")), aein, calq,
                  latent_bits=enc.latent_bits, n_wafers=s.n_wafers, n_bits_per_class=s.n_bits_per_class,
                  budgets=tuple(s.budgets), metric=s.metric, voter_flops=s.voter_flops,
                  workers=s.workers, seed=ctx.seed if s.seed is None else s.seed)
    from flow.core.captions import write_captions

    out = ctx.out / "seu"
    plot(res, out)
    write_captions(out, CAPTIONS)
    atomic_write_json(out / "seu_sensitivity.json", res)
    worst = max(res["classes"], key=lambda c: c["delta_median_emd"]["mean"])
    tmr = res["tmr"]
    ctx.metrics["seu_sensitivity"] = {
        "max_class_delta_median_emd": worst["delta_median_emd"]["mean"], "worst_class": worst["label"],
        "max_bit_delta_median_emd": float(max(res["bits"]["delta_median_emd"])),
        "damage_no_tmr": tmr["damage_no_tmr"],
        "residual_fraction": {f"{b['budget']:g}": b["residual_fraction"] for b in tmr["budgets"]},
        "wall_s": res["cost"]["wall_s"], "n_flips": res["cost"]["n_flips"]}
    ctx.add_summary("SEU sensitivity: worst bit class",
                    f"{worst['label']}: median EMD +{worst['delta_median_emd']['mean']:.4f} per upset "
                    f"(reference {res['reference']['median_emd']:.4f})")
    ctx.add_summary("SEU selective TMR (residual damage / none)",
                    ", ".join(f"{100 * b['budget']:g} % bits: {100 * b['residual_fraction']:.0f} %"
                              for b in tmr["budgets"]))
    return res
