"""Typed, documented configuration of a flow run.

A run is described by one YAML file (``configs/default.yaml`` for the real
job, ``configs/smoke.yaml`` for tests and CI).  Every section is a frozen,
strictly typed pydantic model: an unknown key, a value of the wrong type or
an out-of-range value is a :class:`~flow.runner.errors.ConfigError` that names the
key (``data.n_events``), what was expected and what arrived.  Keys left out
take the defaults documented below (the attribute docstrings are the
documentation; ``python -m flow config --show`` prints them).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from flow.runner.errors import ConfigError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True,
                              use_attribute_docstrings=True)


# ------------------------------------------------- names from the registries
class RegistryChoice:
    """A string that must be a name of a registry, read when a config is validated
    (so a flavour or loss added to its table is accepted with no edit here)."""

    def __init__(self, what: str, where: str, table) -> None:
        self.what, self.where, self.table = what, where, table

    def names(self) -> tuple[str, ...]:
        return tuple(self.table())

    def describe(self) -> str:
        """``name: description; ...`` of every registered entry (for ``config --show``)."""
        return "; ".join(f"{n}: {e.description}" for n, e in self.table().items())

    def __call__(self, value: str) -> str:
        allowed = self.names()
        if value not in allowed:
            raise ValueError(f"expected {self.what} registered in {self.where} "
                             f"({', '.join(allowed)}), got {value!r}")
        return value


def _rtl_flavours() -> dict:
    from flow.hdl.flavours import FLAVOURS

    return FLAVOURS


def _default_rtl_flavours() -> list[str]:
    from flow.hdl.flavours import default_names

    return list(default_names())


def _losses() -> dict:
    from flow.core.losses import LOSSES

    return LOSSES


RTL_FLAVOUR = RegistryChoice("an RTL flavour", "flow/hdl/flavours.py", _rtl_flavours)
LOSS = RegistryChoice("a loss", "flow/core/losses.py", _losses)
RtlFlavourName = Annotated[str, AfterValidator(RTL_FLAVOUR)]
YosysKind = Literal["xilinx", "generic", "sky130"]
LossName = Annotated[str, AfterValidator(LOSS)]


def registry_choice(annotation, metadata=()) -> RegistryChoice | None:
    """The :class:`RegistryChoice` of a field: in its ``metadata`` (a plain ``LossName``
    field) or inside its annotation (``list[LossName]``)."""
    for arg in (*metadata, *get_args(annotation)):
        if isinstance(arg, AfterValidator) and isinstance(arg.func, RegistryChoice):
            return arg.func
        found = registry_choice(arg)
        if found is not None:
            return found
    return None


class DataPileupConfig(Section):
    """``data.synth.pileup``: pileup-200-like diffuse deposits of the generator."""

    wafers_per_layer: int = Field(4, ge=0)
    """Pileup-only wafers drawn per event and layer, uniform in area over the
    acceptance, in the endcap opposite to the electron."""
    clusters_per_wafer: float = Field(1.0, ge=0)
    """Mean number of pileup deposits per wafer at |eta| = 2 in the layer where
    pileup peaks."""
    eta_slope: float = Field(2.0, ge=0)
    """The deposit rate scales as ``exp(eta_slope * (|eta| - 2))`` (the particle
    density per unit area grows like sinh^2(eta), i.e. slope 2)."""
    cluster_mipt: float = Field(2.0, gt=0)
    """Mean transverse energy of one deposit in MIP_T (exponentially distributed)."""
    cluster_radius_cm: float = Field(1.0, gt=0)
    """Lateral scale of one deposit (same radial form as the shower core)."""
    depth_x0: float = Field(5.0, gt=0)
    """Depth (radiation lengths) where the pileup rate peaks (low-energy photons)."""
    depth_floor: float = Field(0.3, ge=0, le=1)
    """Minimum relative rate in deep layers (hadrons)."""


class DataSynthConfig(Section):
    """``data.synth``: the built-in electron + pileup generator (``docs/data.md``)."""

    pt_range: list[float] = Field(default_factory=lambda: [2.0, 35.0], min_length=2, max_length=2)
    """Electron transverse momentum range in GeV (flat)."""
    eta_range: list[float] = Field(default_factory=lambda: [1.6, 2.9], min_length=2, max_length=2)
    """Electron |eta| range (flat); both endcaps, random sign."""
    acceptance_eta: list[float] = Field(default_factory=lambda: [1.45, 3.05], min_length=2,
                                        max_length=2)
    """Wafers exist where the |eta| of their centre lies in this range."""
    wafer_size_cm: float = Field(16.7, gt=0)
    """Wafer (module) pitch, flat to flat, in cm."""
    z_first_cm: float = Field(322.1, gt=0)
    """|z| of layer 1 in cm."""
    layer_pitch_cm: float = Field(1.4, gt=0)
    """Distance between consecutive layers in cm."""
    x0_upstream: float = Field(1.0, ge=0)
    """Material in front of layer 1 in radiation lengths."""
    x0_per_layer: float = Field(0.93, gt=0)
    """Absorber per layer in radiation lengths (26 X0 over 28 CE-E layers)."""
    critical_energy_mev: float = Field(10.0, gt=0)
    """Critical energy E_c of the absorber: shower maximum at ln(E/E_c) - 0.5 X0."""
    tmax_sigma_x0: float = Field(1.0, ge=0)
    """Shower-to-shower Gaussian spread of the depth of the maximum (X0)."""
    moliere_radius_cm: float = Field(2.5, gt=0)
    """Moliere radius R_M in cm."""
    core_radius_rm: float = Field(0.2, gt=0)
    """Core radius in R_M at the shower maximum (radial form 2 r R^2 / (r^2 + R^2)^2)."""
    halo_radius_rm: float = Field(0.7, gt=0)
    """Halo radius in R_M at the shower maximum."""
    core_fraction: float = Field(0.8, gt=0, le=1)
    """Energy fraction in the core at the shower maximum (90 % within 1 R_M)."""
    mip_mev: float = Field(10.0, gt=0)
    """Shower energy per MIP-equivalent of signal in one layer (dE/dx weight)."""
    spot_mip: float = Field(2.0, gt=0)
    """Mean energy (MIP) of one deposited spot, exponentially distributed;
    sets the sampling fluctuations (about 20 %/sqrt(E/GeV) with the defaults)."""
    noise_mip: float = Field(0.15, ge=0)
    """Gaussian electronic noise per trigger cell, in MIP."""
    zs_threshold_mip: float = Field(0.5, ge=0)
    """Zero suppression: trigger cells below this charge (MIP) are sent as 0;
    a wafer with no cell above it is not read out."""
    shower_rings: int = Field(1, ge=0, le=3)
    """Rings of neighbouring wafers written around the wafer hit by the shower
    axis in each layer (1: 7 wafers)."""
    pileup: DataPileupConfig = Field(default_factory=DataPileupConfig)


class DataConfig(Section):
    """``data`` stage: where wafers come from and how the dataset is assembled."""

    source: Literal["synthetic", "root"] = "synthetic"
    """``synthetic``: generate ROOT ntuples with the built-in generator, then read
    them back; ``root``: read the user's ntuples given in ``root_files``."""
    root_files: list[str] = Field(default_factory=list)
    """Files or glob patterns of HGCAL trigger ntuples (``source: root``);
    relative paths are relative to the current directory."""
    tree: str = "FloatingpointThreshold0DummyHistomaxDummynTuple/HGCalTriggerNtuple"
    """Path of the TTree inside each file."""
    layout: Literal["auto", "per_tc", "per_wafer"] = "auto"
    """Ntuple layout (docs/reference.md section 7); ``auto`` detects it from the branches."""
    n_events: int = Field(1000, ge=1)
    """Synthetic events to generate (each gives many wafers)."""
    n_files: int = Field(1, ge=1)
    """Synthetic ROOT files to write (events are spread over them)."""
    chunk_size: int = Field(500, ge=1)
    """Events per chunk when generating and streaming ntuples (bounds memory)."""
    drop: Literal[1, 3] = 3
    """Front-end ``drop`` shift: 1 low-density, 3 high-density modules."""
    calvalue: int = Field(2048, ge=0, le=4095)
    """CALVALUE register of all 48 trigger cells (11 fractional bits: 2048 = 1.0)."""
    layers: list[int] = Field(default_factory=lambda: list(range(1, 28, 2)))
    """Layers kept (the generator simulates exactly these; CE-E is 1..28, the
    trigger reads the odd ones); empty: all layers of the input."""
    min_occupancy: int = Field(1, ge=0, le=48)
    """Keep wafers with at least this many TCs above 1 MIP_T."""
    min_sum_mipt: float = Field(0.0, ge=0)
    """Keep wafers whose CALQ sum is at least this many MIP_T."""
    split: list[float] = Field(default_factory=lambda: [0.7, 0.15, 0.15], min_length=3, max_length=3)
    """Train / validation / test fractions, split by event (no event in two splits)."""
    compress: bool = True
    """Deflate (level 1) the ``.npz`` members: about 6x smaller, +1 s to write and
    to load per 400k wafers."""
    synth: DataSynthConfig = Field(default_factory=DataSynthConfig)

    def model_post_init(self, _context: Any) -> None:
        def bad(key: str, want: str, got: Any) -> None:
            raise ValueError(f"data.{key}: expected {want}, got {got!r}")

        if any(f < 0 for f in self.split) or abs(sum(self.split) - 1.0) > 1e-6:
            bad("split", "three non-negative fractions summing to 1", self.split)
        if any(not 1 <= layer <= 52 for layer in self.layers):
            bad("layers", "layer numbers in 1..52", self.layers)
        if self.source == "root" and not self.root_files:
            bad("root_files", "at least one file or glob pattern with source: root", self.root_files)
        s = self.synth
        for key in ("pt_range", "eta_range", "acceptance_eta"):
            lo, hi = getattr(s, key)
            if not 0 <= lo < hi:
                bad(f"synth.{key}", "[low, high] with 0 <= low < high", [lo, hi])
        if s.eta_range[0] < s.acceptance_eta[0] or s.eta_range[1] > s.acceptance_eta[1]:
            bad("synth.eta_range", f"a range inside synth.acceptance_eta {s.acceptance_eta}",
                s.eta_range)
        if self.source == "synthetic" and any(layer > 28 for layer in self.layers):
            bad("layers", "CE-E layers 1..28 for source: synthetic", self.layers)
        if self.source == "synthetic" and self.n_files > self.n_events:
            bad("n_files", f"at most n_events = {self.n_events} files", self.n_files)


class EmdRayConfig(Section):
    """Ray scale-out of the ``emd`` stage (exact labelling and the grid search)."""

    enabled: bool = True
    """Use Ray; ``false`` runs everything serially in the stage's process."""
    address: str | None = None
    """Ray cluster to join (``auto``, ``ray://host:10001``); unset: start a local
    Ray with ``num_cpus`` CPUs (an already initialised Ray is reused)."""
    num_cpus: int | None = Field(None, ge=1)
    """CPUs of the local Ray (unset: all cores)."""
    chunk_pairs: int = Field(10000, ge=1)
    """Pairs per labelling task (keeps the per-task overhead negligible)."""


class EmdGridConfig(Section):
    """Hyper-parameter grid of the EMD CNN: the cartesian product of the lists."""

    filters: list[int] = Field(default_factory=lambda: [16, 32])
    """Conv2D filters F."""
    kernel: list[int] = Field(default_factory=lambda: [3, 5])
    """Conv2D kernel size k (k x k)."""
    n_conv: list[int] = Field(default_factory=lambda: [3, 4])
    """Number N of Conv2D-BatchNorm-ReLU blocks."""
    dense: list[int] = Field(default_factory=lambda: [128, 256])
    """Width D of the hidden Dense layer."""
    train_pairs: int | None = Field(None, ge=1)
    """Training pairs per trial (a fixed random subset; unset: all); the
    validation pairs are always all used."""
    epochs: int = Field(8, ge=1)
    """Maximum epochs per trial (early stopping may end it sooner)."""


class EmdConfig(Section):
    """``emd`` stage (part of ``train``): exact EMD labels and the EMD CNN."""

    wafers: Literal["aein", "calq"] = "aein"
    """Data-stage array whose wafers are paired: ``aein`` (the autoencoder's
    8-bit input, what the EMD loss sees) or ``calq`` (calibrated charges)."""
    n_pairs: int = Field(340000, ge=4)
    """Random input-wafer pairs for training + validation (paper: 340 000)."""
    val_fraction: float = Field(0.3, gt=0, lt=1)
    """Fraction of wafers (and of pairs) for validation; wafers are split first,
    pairs formed within a split only."""
    n_test_pairs: int = Field(30000, ge=2)
    """Held-out evaluation pairs formed from the data stage's ``test`` wafers."""
    cache_labels: bool = True
    """Keep labelled pairs in the checkpoint directory, keyed by the data
    artifact and the sampling settings, so a rerun does not relabel."""
    ray: EmdRayConfig = Field(default_factory=EmdRayConfig)
    grid: EmdGridConfig = Field(default_factory=EmdGridConfig)
    epochs: int = Field(30, ge=0)
    """Maximum epochs of the final training of the best architecture on all
    training pairs, warm-started from its grid trial (0: use the trial as is)."""
    batch_size: int = Field(256, ge=1)
    """Training batch size."""
    learning_rate: float = Field(1e-3, gt=0)
    """Adam learning rate (paper: 1e-3)."""
    loss: Literal["mse", "relative"] = "mse"
    """Training loss: ``mse`` (paper) or ``relative`` = mean(((pred - true) / (true + rel_eps))^2)."""
    rel_eps: float = Field(0.1, gt=0)
    """Regulariser of the relative loss (EMD units)."""
    patience: int = Field(5, ge=1)
    """Early stopping: epochs without a better validation loss."""
    lr_schedule: Literal["cosine", "plateau", "constant"] = "cosine"
    """Learning rate per epoch: ``cosine`` decay from ``learning_rate`` to
    ``min_lr`` over the maximum epochs of a training, ``plateau`` halving after
    ``lr_patience`` epochs without improvement, or ``constant``."""
    lr_patience: int = Field(2, ge=1)
    """``plateau``: epochs without improvement before halving the learning rate."""
    min_lr: float = Field(1e-5, gt=0)
    """Final (``cosine``) or smallest (``plateau``) learning rate."""
    select_on: Literal["rel_rms", "val_loss"] = "rel_rms"
    """Grid selection metric on the validation pairs: RMS of the relative
    difference (pred - true)/true, or the validation loss."""
    tf_threads: int | None = Field(None, ge=1)
    """TensorFlow threads of the stage's own process (final training, and the
    trials when Ray is off); unset: all cores.  Ray trials use 1 each."""
    eval_min_emd: float = Field(0.05, ge=0)
    """Pairs whose true EMD is below this are left out of relative-difference
    metrics (relative difference undefined at 0); they are counted."""
    progress: bool = Field(True, json_schema_extra={"affects_outputs": False})
    """Progress bars on stderr."""


class AutoencoderRayConfig(Section):
    """Ray scale-out of the ``autoencoder`` stage: the independent models (losses x
    seeds) train as Ray tasks, one CPU and one TensorFlow thread each."""

    enabled: bool = False
    """Train every model in its own 1-CPU Ray task (TensorFlow on one thread, whatever
    ``threads`` says); ``false`` trains them one after the other in the stage's process
    with ``threads`` threads.  The thread count changes the trained weights, so the
    two modes give different (equally valid) models; each is reproducible."""
    address: str | None = None
    """Ray cluster to join (``auto``, ``ray://host:10001``); unset: start a local Ray
    with ``num_cpus`` CPUs.  On a cluster, resuming an interrupted model needs the
    run's checkpoint directory on a filesystem every node shares."""
    num_cpus: int | None = Field(None, ge=1)
    """CPUs of the local Ray, i.e. models trained at once (unset: all cores)."""


class AutoencoderConfig(Section):
    """``autoencoder`` stage (part of ``train``): the quantized encoder."""

    losses: list[LossName] = Field(default_factory=lambda: list(LOSS.names()), min_length=1)
    """Losses to train with, one autoencoder each, for the side-by-side comparison."""
    conditional_losses: list[LossName] = Field(default_factory=list)
    """Losses also trained with the *conditional* decoder (it sees the module sum, layer
    and |eta| besides the latent code; the on-chip encoder is the same), compared in
    the same table as ``<loss>+cond``; never exported."""
    export_loss: LossName = "emd_cnn"
    """The loss whose encoder is exported to the hardware stages (must be in ``losses``)."""
    latent_bits: int = Field(9, ge=2, le=16)
    """Bits per latent value, ufixed<bits,1> (9 in the ASIC; 3/5/7 for fewer links)."""
    elinks: list[Literal[2, 3, 4, 5]] = Field(default_factory=lambda: [5], min_length=1)
    """eLink budgets the exported encoder is produced for; the latent width of a budget is
    3/5/7/9 bits for 2/3/4/5 eLinks (``encoder_file.ELINK_LATENT_BITS``).  The budget of
    ``latent_bits`` is the compared model itself; every other one is trained with
    ``export_loss`` under the same rule (to convergence, same wafers and learning rate),
    from the exported model (``elinks_init: finetune``) or from scratch, checked golden ==
    QKeras, evaluated, and exported to ``elinks/<n>/`` (``weights.bin`` + ``encoder.json``)."""
    elinks_init: Literal["finetune", "scratch"] = "finetune"
    """Start of the other budgets' trainings: the exported model's weights (fine-tuning to
    the narrower latent quantizer) or a fresh initialisation (to measure that both agree)."""
    epochs: int = Field(300, ge=1)
    """Epoch cap per model.  Every model trains until its validation loss stops
    improving (early stopping); one that reaches the cap instead is *not
    converged*, a FAIL in the report.  Choose a cap the run does not reach."""
    seeds: int = Field(1, ge=1)
    """Independent trainings per loss (different initialisation and shuffling); the
    comparison reports the median over seeds with the min-max spread."""
    batch_size: int = Field(512, ge=1)
    """Training batch size."""
    learning_rate: float = Field(1e-3, gt=0)
    """Initial Adam learning rate when ``lr_scan`` is empty; halved when the
    validation loss plateaus."""
    steps_per_execution: int = Field(1, ge=1)
    """Training batches per call into TensorFlow (Keras ``steps_per_execution``): fewer
    Python round trips per epoch.  The same batches in the same order, so the trained
    weights and the history are bit-identical to 1 (tested); only the cost changes
    (measured in ``docs/autoencoder.md``, "Cost of the fair comparison")."""
    jit_compile: bool = False
    """Compile the training and validation steps with XLA (Keras ``jit_compile``).
    Deterministic (the same seed gives the same weights, tested) but XLA fuses and
    reorders float operations, so the weights differ from ``false`` in the last bits:
    a different, equally valid model.  Measured cost in ``docs/autoencoder.md``."""
    lr_scan: list[Annotated[float, Field(gt=0)]] = Field(default_factory=list)
    """Candidate initial learning rates, the same rule for every loss: each is
    trained ``lr_scan_epochs`` epochs on ``lr_scan_wafers`` training wafers and the
    one with the lowest validation loss (the loss's own) is kept and recorded.
    Empty: ``learning_rate`` for all."""
    lr_scan_wafers: int = Field(20000, ge=1)
    """Training wafers of each learning-rate scan trial."""
    lr_scan_epochs: int = Field(4, ge=1)
    """Epochs of each learning-rate scan trial."""
    lr_patience: int = Field(2, ge=1)
    """The learning rate is halved after every ``lr_patience`` epochs without a relative
    validation improvement of ``early_stopping_min_delta`` (not below 1e-6)."""
    early_stopping_patience: int = Field(8, ge=1)
    """Epochs without a relative validation improvement of ``early_stopping_min_delta``
    before training stops; the best epoch's weights are restored."""
    early_stopping_min_delta: float = Field(1e-3, ge=0, lt=1)
    """Relative improvement of the validation loss that counts (the same for every
    loss, whatever its scale)."""
    refine_rounds: int = Field(0, ge=0)
    """Closed-loop rounds for the models whose loss is built from the EMD CNN (``emd_cnn``;
    ``needs_emd_cnn`` in ``flow/core/losses.py``), plain decoder: label their (input,
    reconstruction) pairs exactly, fine-tune the EMD CNN on random plus these pairs,
    continue training the autoencoder with it to convergence; the median exact EMD of
    every round is recorded (``refine`` in eval.json)."""
    refine_pairs: int = Field(20000, ge=10)
    """Training wafers whose (input, reconstruction) pairs are labelled per round."""
    refine_cnn_epochs: int = Field(3, ge=1)
    """Fine-tuning epochs of the EMD CNN per round (warm start from the current CNN)."""
    refine_cnn_lr: float = Field(1e-4, gt=0)
    """Learning rate of the EMD-CNN fine-tuning."""
    bootstrap: int = Field(200, ge=0)
    """Bootstrap resamples of the test set for the uncertainty of each median (0: none)."""
    cnn_check: bool = True
    """Compare EMD-CNN prediction and exact EMD on every model's own (input,
    reconstruction) test pairs: the regime the EMD-CNN loss is optimised in."""
    max_train_wafers: int = Field(0, ge=0)
    """Use at most this many training wafers (0: all)."""
    max_train_wafers_by_loss: dict[str, int] = Field(default_factory=dict)
    """Per-loss override of ``max_train_wafers`` (e.g. ``{sinkhorn: 100000}``: the
    Sinkhorn loss costs ~10x more per wafer than the others)."""
    eval_wafers: int = Field(0, ge=0)
    """Evaluate exact EMD on at most this many test wafers (0: all)."""
    sinkhorn_eps: float = Field(0.05, gt=0)
    """Target entropic regularisation of the Sinkhorn loss, in ground-distance units."""
    sinkhorn_iters: int = Field(40, ge=1)
    """Sinkhorn iterations (epsilon-scaling from 4.0 down to ``sinkhorn_eps``)."""
    kr_check_pairs: int = Field(256, ge=0)
    """Test wafers on which the KR-dual (NEEMo-style) estimate cross-checks exact EMD."""
    kr_steps: int = Field(400, ge=1)
    """Optimisation steps of the KR-dual estimator."""
    occupancy_bins: list[float] = Field(default_factory=lambda: [0, 2, 4, 6, 10, 15, 20, 30, 48])
    """Occupancy bin edges (TCs above 1 MIP_T) of the median-EMD comparison."""
    eta_bins: list[float] = Field(default_factory=lambda: [1.6, 1.8, 2.0, 2.2, 2.4, 2.6, 2.8, 3.0])
    """|eta| bin edges of the median-EMD comparison."""
    threads: int = Field(0, ge=0)
    """TensorFlow intra-op threads (0: all cores) of the stage's process: evaluation, and
    training when ``ray.enabled`` is false."""
    ray: AutoencoderRayConfig = Field(default_factory=AutoencoderRayConfig)
    """Train the models as Ray tasks (see ``docs/scale_out.md``)."""


class ConvertConfig(Section):
    """``convert`` stage: hls4ml projects and golden test vectors (``docs/convert_csim.md``)."""

    backends: list[Literal["Vitis", "Catapult"]] = Field(
        default_factory=lambda: ["Vitis", "Catapult"], min_length=1)
    """hls4ml backends to write a project for: ``Vitis`` (FPGA), ``Catapult`` (ASIC, as the
    ECON-T team used)."""
    io_type: Literal["io_parallel"] = "io_parallel"
    """hls4ml I/O type (the ASIC takes all 48 TCs every bunch crossing)."""
    strategy: Literal["Latency", "Resource"] = "Latency"
    """hls4ml strategy (``Latency``: fully parallel multipliers)."""
    reuse_factor: int = Field(1, ge=1)
    """hls4ml reuse factor; 1 targets an initiation interval of 1 (a new wafer every clock)."""
    clock_period_ns: float = Field(25.0, gt=0)
    """Target clock period (25 ns: the 40 MHz bunch-crossing clock)."""
    fpga_part: str = "xcvu13p-flga2577-2-e"
    """FPGA part of the Vitis project."""
    asic_libs: str = "nangate-45nm"
    """Technology libraries of the Catapult project (``setup_asic_libs`` in ``build_prj.tcl``)."""
    max_test_wafers: int = Field(0, ge=0)
    """Golden vectors taken from the data stage's test split, in file order (0: all)."""
    n_random: int = Field(20000, ge=0)
    """Corner set: wafers of uniformly random words over the full range 0..127."""
    n_sparse: int = Field(20000, ge=0)
    """Corner set: random sparse wafers (each wafer a random occupancy below 30 %)."""
    onehot_words: list[int] | None = None
    """Corner set: word values of the one-hot wafers (one at each of the 48 cells);
    unset: every word 1..127."""
    n_alt_registers: int = Field(1, ge=0, le=8)
    """Extra vector files ``vectors_regs<k>.npz`` (same layout) with random CALVALUE
    registers and the other ``drop``, to cover the calibration and both module densities."""
    alt_max_vectors: int = Field(20000, ge=1)
    """At most this many vectors in each extra register file (corner kinds first)."""
    tb_vectors: int = Field(100, ge=0)
    """Golden vectors written to each project's ``tb_data/`` for hls4ml's own testbench."""
    timeout_s: float = Field(1800.0, gt=0)
    """Time limit of one hls4ml conversion (a child process)."""

    def model_post_init(self, _context: Any) -> None:
        if self.onehot_words is not None and any(not 1 <= w <= 127 for w in self.onehot_words):
            raise ValueError(f"convert.onehot_words: expected word values in 1..127, "
                             f"got {self.onehot_words!r}")
        if len(set(self.backends)) != len(self.backends):
            raise ValueError(f"convert.backends: expected each backend once, got {self.backends!r}")


class CsimConfig(Section):
    """``csim`` stage: compile hls4ml projects, compare with the golden model (``docs/convert_csim.md``)."""

    backends: list[Literal["Vitis", "Catapult"]] | None = None
    """Projects to simulate; unset: every project the convert stage wrote."""
    cxx: str = "g++"
    """C++ compiler."""
    opt: Literal["-O0", "-O1", "-O2", "-O3"] = "-O2"
    """Optimisation level of the harness (compile time against simulation speed)."""
    jobs: int = Field(1, ge=1)
    """Translation units compiled in parallel."""
    max_vectors: int = Field(0, ge=0)
    """Simulate at most this many vectors of each vector file (0: all)."""
    report_mismatches: int = Field(20, ge=1)
    """Mismatches listed in each project's ``report.json``."""
    compile_timeout_s: float = Field(1800.0, gt=0)
    """Time limit of one compiler call."""
    run_timeout_s: float = Field(3600.0, gt=0)
    """Time limit of one simulation run."""


class RtlConfig(Section):
    """``rtl`` stage: Verilog of the ECON-T block (``docs/rtl_cosim.md``)."""

    flavours: list[RtlFlavourName] = Field(default_factory=_default_rtl_flavours, min_length=1)
    """Flavours to generate (default: every registered flavour not marked opt-in)."""
    clock_ns: float = Field(25.0, gt=0)
    """Clock period the latency is reported at (25 ns: the LHC bunch crossing)."""
    frontend_register: bool = True
    """Register the front-end result (latency 2 clocks); ``false``: only the output
    register (latency 1, front end and encoder in one clock)."""
    da4ml_search_all: bool = False
    """da4ml: search every decomposition depth of the constant matrices (a few per
    cent fewer adders, much slower); ``false``: da4ml's default depth only."""
    da4ml_hard_dc: int = Field(-1, ge=-1)
    """da4ml: extra adder depth allowed beyond the minimum (-1: unconstrained)."""
    yosys_check: bool = True
    """Elaborate every source set with Yosys (no latches) before finishing."""


class SeuSensitivityConfig(Section):
    """``cosim.seu_sensitivity``: physics sensitivity of every class of weight bit to a single
    upset, from the golden model and the decoder (no RTL), and a selective-TMR proposal
    (``flow/cosim/sensitivity.py``, ``docs/seu.md``).  Reads the autoencoder's ``encoder.json``,
    ``weights.bin`` and ``decoder.h5`` and the data stage's ``test.npz``.  Measured on the default run: 768
    flips x 1000 wafers, 545k exact EMDs, 4 min wall with 2 Ray workers on the shared 2-core
    machine (about 1 min on idle cores)."""

    enabled: bool = True
    """Run the analysis at the end of the cosim stage (``cosim/seu/``)."""
    n_wafers: int = Field(1000, ge=10)
    """Test wafers (a seeded random subset of the non-empty ones); the cost is about
    proportional."""
    n_bits_per_class: int = Field(32, ge=0)
    """Dense weights sampled per bit position (of 2048; 0: all, 12288 flips); the conv
    weights and biases and the dense biases are always measured bit by bit."""
    budgets: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=lambda: [0.05, 0.1, 0.25, 0.5], min_length=1)
    """TMR area budgets: fractions of the 12864 weight bits that may be triplicated."""
    metric: Literal["delta_median", "mean_delta"] = "delta_median"
    """Damage of an upset that ranks the bits: the change of the median EMD over the wafers
    (``delta_median``) or the mean per-wafer EMD change (``mean_delta``)."""
    voter_flops: float = Field(0.5, ge=0)
    """Area of one majority voter in flip-flop equivalents (sky130: maj3_1 / dfxtp_1 = 0.5)."""
    workers: int = Field(2, ge=1)
    """CPUs for the exact EMD (> 1: a local Ray, or the initialised one)."""
    seed: int | None = None
    """Seed of the wafer and bit samples (unset: the cosim stage's seed)."""


class CosimConfig(Section):
    """``cosim`` stage: cocotb testbenches on Verilator, Yosys resources."""

    flavours: list[RtlFlavourName] = Field(default_factory=_default_rtl_flavours, min_length=1)
    """Flavours to simulate and synthesize (each must have been generated by ``rtl``; default:
    every registered flavour not marked opt-in)."""
    max_vectors: int = Field(0, ge=0)
    """Golden vectors of the ``convert`` stage to stream (0: all)."""
    min_wafers: int = Field(100000, ge=0)
    """Stream at least this many wafers: the vectors plus the testbench's corner set
    are topped up with random wafers whose expectations the golden model computes."""
    corners: bool = True
    """Add the testbench's corner wafers (empty, full scale, every word value, ...)."""
    bubbles: int = Field(2000, ge=0)
    """Wafers streamed again with random gaps in ``valid_in``."""
    reload: int = Field(5000, ge=0)
    """Wafers streamed after reprogramming (new CALVALUEs and drop; ``prog``: a random
    weight set); then the job's configuration is reloaded and checked again."""
    alt_vectors: bool = True
    """Also stream ``convert``'s ``vectors_regs*.npz`` (other CALVALUEs and drop, loaded
    through the configuration port; ``max_vectors`` applies to each)."""
    elinks_vectors: int = Field(20000, ge=0)
    """Golden vectors of each other eLink budget's encoder (``convert/elinks/<n>/vectors.npz``,
    from ``autoencoder.elinks``) streamed through every flavour generated for that budget,
    spread evenly over the vector kinds (0: all), plus the testbench's corner wafers, up to
    ``bubbles`` and ``reload`` wafers (at most 500 each) and its default-register set."""
    first_mismatches: int = Field(20, ge=1)
    """Mismatching wafers listed in full in the report."""
    verilator_opt: Literal["-O0", "-O1", "-O2"] = "-O1"
    """C++ optimisation of the Verilator model: ``-O0`` builds fastest, ``-O1``
    simulates the programmable flavour about 10x faster (worth it above ~20k wafers)."""
    build_jobs: int = Field(2, ge=1)
    """Parallel C++ compile jobs of a Verilator build."""
    yosys: list[YosysKind] = Field(default_factory=lambda: ["xilinx", "generic", "sky130"])
    """Yosys (pyosys) resource estimates: ``xilinx`` (``synth_xilinx``: LUT/FF/CARRY4),
    ``generic`` (``synth``: gate count, transistor estimate, logic depth) and/or ``sky130``
    (SkyWater 130 nm ``sky130_fd_sc_hd`` cells: area in um^2, area only, no timing; it maps the
    ``generic`` run's netlist: about 20-27 % of that run's time, docs/rtl_cosim.md);
    empty: none."""
    yosys_skip: dict[RtlFlavourName, list[YosysKind]] = Field(
        default_factory=lambda: {"prog_tmr": ["xilinx"]})
    """Runs of ``yosys`` left out for some flavours (flavour -> kinds).  Default: no
    ``synth_xilinx`` of ``prog_tmr`` -- the costliest run of the resource step, and an FPGA LUT
    count says little about an ASIC-style TMR (docs/rtl_cosim.md, "sky130 area of the three
    flavours")."""
    yosys_dsp: bool = False
    """Let ``synth_xilinx`` map multipliers to DSP48 (default ``-nodsp``: all logic in LUTs)."""
    yosys_timeout_s: int = Field(7200, ge=60)
    """Wall-time limit of one Yosys run."""
    yosys_jobs: int = Field(2, ge=1, json_schema_extra={"affects_outputs": False})
    """Yosys runs (one pyosys child process per design and kind) at a time, the largest
    designs first; the results do not depend on it.  Each run needs up to a few GB
    (``peak_rss_mb`` in the cosim report)."""
    seu_upsets: int = Field(0, ge=0, le=60000)
    """Random single upsets of the RTL SEU campaign per programmable flavour (``prog``:
    configuration-register upsets through the configuration port, each held 16 clocks then
    rewritten, and pipeline-register upsets through its test build's injection hook;
    ``prog_tmr``: every upset through the hook, each must be corrected and counted);
    0: no campaign (``flow/cosim/seu.py``, ``docs/seu.md``; the default config
    asks for 10000, the smoke config for 200).  At most 60000: ``seu_count`` is 16 bits wide."""
    seu_sensitivity: SeuSensitivityConfig = Field(default_factory=SeuSensitivityConfig)
    """Weight-bit SEU sensitivity and selective TMR (golden model, no RTL)."""


class ReportConfig(Section):
    """``report`` stage: HTML/Markdown report of a run."""

    title: str = Field("ECON-T autoencoder co-design flow", min_length=1, max_length=200)
    """Heading of the report (the run name is appended); plain text."""
    notes: str = Field("", max_length=5000)
    """Free text shown under the heading (e.g. what the run was for); plain text."""


class HandoffConfig(Section):
    """``handoff`` stage: the archive for ASIC/FPGA engineers (RTL, register
    images, test vectors with expected outputs, standalone cocotb testbench)."""

    max_vectors: int = Field(4000, ge=0)
    """Golden vectors shipped from ``convert``'s ``vectors.npz`` (0: all), chosen
    evenly over the wafer kinds: the small corner kinds (empty, full scale, every
    word everywhere) whole, the rest (one-hot, random, test wafers) in equal shares."""
    alt_max_vectors: int = Field(1000, ge=0)
    """Vectors shipped from each of ``convert``'s ``vectors_regs*.npz`` (other
    CALVALUEs and drop; 0: all), chosen the same way."""
    alt_vectors: bool = True
    """Ship the ``vectors_regs*.npz`` sets (their registers are loaded through the
    configuration port by the testbench)."""
    reprogram_vectors: int = Field(1000, ge=0)
    """Programmable flavour: vectors with a second, random weight set (expected outputs
    from the golden model) that the testbench loads through the configuration port
    before the trained weights; 0: none."""
    self_check: bool = True
    """Unpack the archive into a temporary directory outside the repository and run its
    testbench there with ``flow`` not importable; any failure fails the stage."""
    self_check_jobs: int = Field(2, ge=1, json_schema_extra={"affects_outputs": False})
    """Parallel C++ compile jobs of the self-check's Verilator builds."""
    self_check_timeout_s: int = Field(3600, ge=60, json_schema_extra={"affects_outputs": False})
    """Wall-time limit of the self-check."""


class PhysicsConfig(Section):
    """``physics`` stage: electron trigger resolution after decoding, per ECON-T output
    algorithm and eLink budget (``docs/physics.md``)."""

    algorithms: list[Literal["uncompressed", "threshold_sum", "best_choice", "stc4", "stc16"]] = Field(
        default_factory=lambda: ["uncompressed", "threshold_sum", "best_choice", "stc4", "stc16"],
        min_length=1)
    """Non-autoencoder algorithms to evaluate (``uncompressed``: the lossless CALQ reference)."""
    elinks: list[Literal[2, 3, 4, 5]] = Field(default_factory=lambda: [2, 3, 4, 5], min_length=1)
    """eLink budgets (32 bits per BX each)."""
    autoencoder: bool = True
    """Also evaluate every autoencoder model of the ``autoencoder`` stage, at the eLink
    budget its latent width belongs to (9 bits: 5 eLinks; other budgets are reported as
    not available)."""
    min_gen_pt: float = Field(10.0, ge=0)
    """Generated-pT threshold (GeV) of the integrated and per-|eta| resolution and of the
    matching efficiency (the public study: 10 GeV)."""
    max_train_events: int = Field(4000, ge=0)
    """Training-split events used to fit the calibration (0: all)."""
    max_test_events: int = Field(0, ge=0)
    """Test-split events evaluated (0: all)."""
    emd_wafers: int = Field(20000, ge=0)
    """Test wafers on which the median exact EMD of every algorithm is computed (0: none)."""
    n_boot: int = Field(200, ge=2)
    """Bootstrap replicas of each resolution's uncertainty."""
    ts_max_truncated: float = Field(0.01, ge=0, le=1)
    """Threshold sum: the threshold (MIP_T) per budget is the smallest grid value whose
    frames are truncated for at most this fraction of the training wafers."""
    seed_cell: float = Field(0.01, gt=0)
    """Clustering: seed histogram cell in x/|z| and y/|z|."""
    radius: float = Field(0.03, gt=0)
    """Clustering: TCs within this projective distance of the seed form the cluster."""
    dr_match: float = Field(0.2, gt=0)
    """Matching: largest Delta R between cluster and generated electron."""
    min_per_eta_bin: int = Field(20, ge=2)
    """Calibration: |eta| bins with fewer training electrons use the global linear response."""


class SweepRayConfig(Section):
    """Ray scale-out of the ``sweep`` stage: every point is one 1-CPU Ray task."""

    enabled: bool = True
    """Run the points as Ray tasks (``false``: one after the other in the stage's process)."""
    address: str | None = None
    """Ray cluster to join (``auto``, ``ray://host:10001``); unset: a local Ray with
    ``num_cpus`` CPUs.  On a cluster the stage's checkpoint directory must be on a filesystem
    every node shares (a finished point is read from there, never recomputed)."""
    num_cpus: int | None = Field(None, ge=1)
    """CPUs of the local Ray, i.e. points run at once (unset: all cores)."""


class SweepConfig(Section):
    """``sweep`` stage (``make sweep``, not part of ``make all``): the co-design map of encoder
    designs, physics quality against area and latency (``docs/sweep.md``)."""

    grid: dict[Literal["filters", "weight_bits", "act_bits", "latent_bits"], list[int]] = Field(
        default_factory=lambda: {"filters": [4, 8, 16], "latent_bits": [3, 5, 7, 9]})
    """Values per axis; every combination is a point (an axis left out takes the ECON-T's
    value: 8 filters, 6-bit weights, 8-bit conv activations, 9-bit latents)."""
    loss: LossName = "emd_cnn"
    """Training loss of every point."""
    max_train_wafers: int = Field(50000, ge=1)
    """Training wafers of every point (the same wafers for all); the rest of the training rule
    (early stopping, learning-rate halving, learning rate, batch) is the ``autoencoder``
    section's, with the epoch cap ``epochs``."""
    epochs: int = Field(300, ge=1)
    """Epoch cap of every point: the fair-comparison rule trains until early stopping, so a
    point that reaches the cap is reported as NOT converged.  Choose a cap no point reaches
    (the default config's ``autoencoder.epochs`` of 20 is the default run's budget, not this)."""
    vectors: int = Field(2000, ge=1)
    """Test wafers sampled (spread over occupancy) for each point's csim and cosim; the corner
    set is always added (``cosim.corners``)."""
    flavours: list[RtlFlavourName] = Field(default_factory=lambda: ["prog"], min_length=1)
    """RTL flavours built, cosimulated and synthesized per point (``prog_tmr`` adds the TMR
    variant's area)."""
    yosys: list[Literal["generic", "sky130"]] = Field(default_factory=lambda: ["generic", "sky130"])
    """Area runs per point: ``generic`` (Yosys gate count) and ``sky130`` (cell area, no timing)."""
    csim: bool = True
    """Convert each point with hls4ml and check it bit-exact in C simulation."""
    csim_backend: Literal["Vitis", "Catapult"] = "Vitis"
    """hls4ml backend of the per-point C simulation."""
    physics: bool = True
    """Electron resolution per point (the ``physics`` settings; synthetic data only)."""
    ray: SweepRayConfig = Field(default_factory=SweepRayConfig)


class FlowConfig(Section):
    """A whole flow run."""

    name: str = Field("default", pattern=r"^[A-Za-z0-9_.-]+$")
    """Run name; outputs go to ``<workdir>/<name>/<stage>/``."""
    workdir: str = "build"
    """Root of all generated artifacts (relative paths are relative to the
    current directory)."""
    seed: int = 12345
    """Master seed; every stage derives its own seeds from it."""
    data: DataConfig = Field(default_factory=DataConfig)
    emd: EmdConfig = Field(default_factory=EmdConfig)
    autoencoder: AutoencoderConfig = Field(default_factory=AutoencoderConfig)
    convert: ConvertConfig = Field(default_factory=ConvertConfig)
    csim: CsimConfig = Field(default_factory=CsimConfig)
    rtl: RtlConfig = Field(default_factory=RtlConfig)
    cosim: CosimConfig = Field(default_factory=CosimConfig)
    physics: PhysicsConfig = Field(default_factory=PhysicsConfig)
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    handoff: HandoffConfig = Field(default_factory=HandoffConfig)

    @property
    def run_dir(self) -> Path:
        """Absolute: stages hand paths to tools that run in other directories
        (cocotb simulations, hls4ml child processes)."""
        return Path(self.workdir).resolve() / self.name

    def stage_dir(self, stage: str) -> Path:
        return self.run_dir / stage

    def section(self, name: str) -> dict[str, Any]:
        """The JSON-able settings a stage's outputs depend on: its own section and the
        seed, without presentation-only keys (fields marked ``affects_outputs: False``,
        such as progress bars), so toggling those does not make an artifact stale."""
        sec = getattr(self, name)
        skip = {k for k, f in type(sec).model_fields.items()
                if (f.json_schema_extra or {}).get("affects_outputs") is False}
        return {"seed": self.seed, name: sec.model_dump(mode="json", exclude=skip)}

    def section_hash(self, name: str) -> str:
        blob = json.dumps(self.section(name), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "value_error":      # cross-field checks carry their own full message
            lines.append(f"  {key}: {e['msg'].removeprefix('Value error, ')}")
        elif e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (got value {e['input']!r}); "
                         "check the spelling against `python -m flow config --show`")
        else:
            lines.append(f"  {key}: {e['msg']}; got {e['input']!r} "
                         f"({type(e['input']).__name__})")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "<dict>") -> FlowConfig:
    """Validate a dict (e.g. parsed YAML) into a :class:`FlowConfig`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"invalid configuration in {source}: expected a mapping at the top "
                          f"level, got {type(data).__name__}")
    try:
        return FlowConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> FlowConfig:
    """Load a YAML config; ``overrides`` are ``dotted.key=yaml-value`` strings."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"configuration file {path} is not valid YAML: {err}") from None
    if overrides and not isinstance(data, dict):
        return parse_config(data, str(path))  # reports the bad top level
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r}: expected KEY=VALUE (e.g. data.n_events=100)")
        key, value = ov.split("=", 1)
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {ov!r}: {p} is not a section")
        node[parts[-1]] = yaml.safe_load(value)
    source = str(path) + (f" (with overrides {overrides})" if overrides else "")
    return parse_config(data, source)


def describe(model: type[BaseModel] = FlowConfig, prefix: str = "") -> list[str]:
    """Human-readable list of every key, its type, default and documentation."""
    out = []
    for name, f in model.model_fields.items():
        key = f"{prefix}{name}"
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.append(f"{key}:  # {ann.__doc__.strip() if ann.__doc__ else ''}")
            out.extend(describe(ann, key + "."))
            continue
        default = f.get_default(call_default_factory=True)
        tname = (ann.__name__ if isinstance(ann, type) else str(ann)).replace("typing.", "")
        doc = " ".join((f.description or "").split())
        choice = registry_choice(ann, f.metadata)
        if choice is not None:
            tname = "list[str]" if tname.startswith("list[") else "str"
            doc += f" One of ({choice.where}): {choice.describe()}."
        out.append(f"{key} ({tname}) = {default!r}  # {doc}")
    return out
