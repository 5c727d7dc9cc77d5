"""hls4ml projects of the encoder: precisions, conversion in a subprocess, project files.

The conversion itself (TensorFlow, QKeras, hls4ml) runs in a child process,
``python -m flow.core.hls <spec.json>``, one per backend: hls4ml can abort
the interpreter (C++ asserts, bad configurations), and a child keeps the
stage's own process free of TensorFlow.  :func:`run_logged` turns every
child failure into a :class:`~flow.runner.errors.FlowError` naming what failed, the
log file and the last lines of output.

Per-layer precisions (:func:`layer_precisions`) come from the encoder's architecture
(:class:`~flow.core.encoder.EncoderArch`: filters, weight and conv-activation widths; the
ECON-T's by default), whose formats the child checks the model's QKeras quantizers against,
and from exact worst-case bounds of the accumulators, set explicitly with
``granularity='name'``: hls4ml's own inference reads the input quantizer
``quantized_bits(8,1,keep_negative=False)`` as ``fixed<8,2>`` (it ignores
``keep_negative``), which is not bit-exact.

After hls4ml writes a project, :func:`finish_project` adds our C++ (the
front end, the ``econt_top`` wrapper, the csim testbench and its build
script, from ``flow/resources/hls/``) and a README.  For the Catapult
backend it also removes hls4ml's ``.txt`` weight loading (see
:func:`patch_catapult_weights`) so that C simulation compiles the very weight
headers that synthesis reads.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np

from flow.core import encoder as E
from flow.core.hls_harness import CXX_STD, HARNESS_SOURCES, build_script, include_flags, run_logged
from flow.runner.errors import FlowError

BACKENDS = ("Vitis", "Catapult")
#: layers of the encoder as hls4ml must see them after conversion (name, hls4ml class)
EXPECTED_LAYERS = (("aein", "Input"), ("input_q", "Activation"), ("conv", "Conv2D"),
                   ("conv_act", "Activation"), ("flatten", "Reshape"), ("dense", "Dense"),
                   ("latent", "Activation"))
#: our C++ added to every project: resource name -> path inside the project
ECONT_SOURCES = {
    "econt_types.h": "firmware/econt_types.h",
    "econt_frontend.h": "firmware/econt_frontend.h",
    "econt_top.h": "firmware/econt_top.h",
    "econt_top.cpp": "firmware/econt_top.cpp",
    "econt_csim_tb.cpp": "econt_csim_tb.cpp",
}


# --------------------------------------------------------------- precisions
def accum_format(n_terms: int, x, w, b):
    """Smallest signed format holding every ``sum_{n_terms} x*w + b`` exactly.

    ``x``, ``w``, ``b`` are :class:`~flow.core.fixedpoint.FixedFormat`; the bound is
    over all codes (the weights are reprogrammable registers in the ASIC).
    """
    from flow.core.fixedpoint import FixedFormat

    frac = max(x.frac_bits + w.frac_bits, b.frac_bits)
    prods = [xc * wc for xc in (x.min_code, x.max_code) for wc in (w.min_code, w.max_code)]
    scale_p = 1 << (frac - x.frac_bits - w.frac_bits)
    scale_b = 1 << (frac - b.frac_bits)
    lo = n_terms * min(prods) * scale_p + b.min_code * scale_b
    hi = n_terms * max(prods) * scale_p + b.max_code * scale_b
    width = max((-lo - 1).bit_length() if lo < 0 else 0, hi.bit_length()) + 1
    return FixedFormat(width, width - frac, True)


def layer_formats(latent_bits: int, arch: E.EncoderArch = E.ECONT_ARCH) -> dict[str, dict[str, object]]:
    """The per-layer number formats (FixedFormat) of an encoder of architecture ``arch``
    (default: the ECON-T's), by hls4ml layer name and quantity."""
    from flow.core.fixedpoint import FixedFormat

    wf, af = arch.weight_fmt, arch.conv_act_fmt
    w = FixedFormat(wf.width, wf.int_bits, True)                       # exact constants: TRN/WRAP
    conv_acc = accum_format(E.KERNEL * E.KERNEL, E.INPUT_FMT, wf, wf)
    dense_acc = accum_format(arch.n_hidden, af, wf, wf)
    return {
        "aein": {"result": FixedFormat(E.INPUT_FMT.width, E.INPUT_FMT.int_bits, False)},
        "input_q": {"result": E.INPUT_FMT},
        "conv": {"weight": w, "bias": w, "accum": conv_acc, "result": conv_acc},
        "conv_linear": {"result": conv_acc},
        "conv_act": {"result": af},
        "dense": {"weight": w, "bias": w, "accum": dense_acc, "result": dense_acc},
        "dense_linear": {"result": dense_acc},
        "latent": {"result": E.latent_format(latent_bits)},
    }


def layer_precisions(latent_bits: int, arch: E.EncoderArch = E.ECONT_ARCH) -> dict[str, dict[str, str]]:
    """:func:`layer_formats` as hls4ml precision strings (``hls_config['LayerName']``)."""
    return {layer: {k: f.to_hls4ml_string() for k, f in q.items()}
            for layer, q in layer_formats(latent_bits, arch).items()}


# ------------------------------------------------------------------- worker
def _check_model(model, latent_bits: int | None,
                 arch: E.EncoderArch | None = None) -> tuple[int, E.EncoderArch]:
    """The model is the flow's encoder (:func:`flow.core.encoder.build_qkeras_encoder`) with
    the quantizers of its architecture (:func:`flow.core.encoder.arch_of`), which must be
    ``arch`` if given, and ``latent_bits`` latent bits if given; returns (latent bits, arch)."""
    from flow.core.fixedpoint import FixedFormat

    not_ours = "the encoder model is not the flow's encoder (flow.core.encoder.build_qkeras_encoder)"
    names = [layer.name for layer in model.layers]
    missing = [n for n, _ in EXPECTED_LAYERS if n not in names]
    if missing:
        raise FlowError(f"{not_ours}: layers {missing} are missing; its layers: {names}")
    try:
        got_arch = E.arch_of(model)
        quantizers = {
            "input_q": model.get_layer("input_q").quantizer,
            "conv kernel": model.get_layer("conv").kernel_quantizer_internal,
            "conv bias": model.get_layer("conv").bias_quantizer_internal,
            "conv_act": model.get_layer("conv_act").quantizer,
            "dense kernel": model.get_layer("dense").kernel_quantizer_internal,
            "dense bias": model.get_layer("dense").bias_quantizer_internal,
            "latent": model.get_layer("latent").quantizer,
        }
        got = {what: FixedFormat.from_qkeras(q) for what, q in quantizers.items()}
    except FlowError as err:
        raise FlowError(f"{not_ours}: {err}") from None
    except (AttributeError, TypeError) as err:      # e.g. a Keras layer where a QKeras one belongs
        classes = {la.name: type(la).__name__ for la in model.layers}
        raise FlowError(f"{not_ours}: {err} (its layers: {classes})") from None
    lat = got["latent"]
    wf = got_arch.weight_fmt
    want = {"input_q": E.INPUT_FMT, "conv kernel": wf, "conv bias": wf, "conv_act": got_arch.conv_act_fmt,
            "dense kernel": wf, "dense bias": wf, "latent": E.latent_format(lat.width)}
    for what, fmt in want.items():
        if got[what] != fmt:
            raise FlowError(f"encoder quantizer {what}: expected the format {fmt} of the flow's encoder "
                            f"({got_arch.describe()}), got {got[what]} (from {quantizers[what]})")
    if arch is not None and got_arch != arch:
        raise FlowError(f"the encoder model has {got_arch.describe()}, expected {arch.describe()} "
                        f"(the architecture of its encoder.json / register image)")
    if latent_bits is not None and lat.width != latent_bits:
        raise FlowError(f"encoder latent quantizer has {lat.width} bits, expected "
                        f"autoencoder.latent_bits = {latent_bits}")
    return lat.width, got_arch


def _precision_str(p) -> str:
    return str(p).replace(" ", "")


def _verify_graph(hm, precisions: dict[str, dict[str, str]]) -> list[dict]:
    """The converted graph has exactly the expected layers and precisions; returns its summary."""
    from flow.core.fixedpoint import FixedFormat

    layers = list(hm.get_layers())
    got = [(layer.name, layer.class_name) for layer in layers]
    if tuple(got) != EXPECTED_LAYERS:
        raise FlowError(f"hls4ml produced the layers {got}, expected {list(EXPECTED_LAYERS)} "
                        "(an extra layer, e.g. a linear activation with its own precision, breaks "
                        "bit-exactness)")
    summary = []
    for layer in layers:
        types = {}
        for tname, t in layer.get_layer_precision().items():
            types[tname] = _precision_str(t.precision)
        want = precisions.get(layer.name, {})
        out_t = layer.get_output_variable().type
        checks = {"result": _precision_str(out_t.precision)}
        if "accum" in want:
            checks["accum"] = _precision_str(layer.get_attr("accum_t").precision)
        for key in ("weight", "bias"):
            if key in want and key in layer.weights:
                checks[key] = _precision_str(layer.weights[key].type.precision)
        for key, prec in checks.items():
            if key in want and FixedFormat.from_ap_string(prec) != FixedFormat.from_ap_string(want[key]):
                raise FlowError(f"hls4ml layer {layer.name}: {key} precision is {prec}, "
                                f"expected {want[key]}")
        summary.append({"name": layer.name, "class": layer.class_name,
                        "result_type": out_t.name, "precisions": checks, "types": types,
                        "reuse_factor": layer.get_attr("reuse_factor"),
                        "strategy": layer.get_attr("strategy")})
    return summary


def worker(spec: dict) -> dict:
    """Convert the encoder with hls4ml and write the project (runs in the child process)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    t0 = time.perf_counter()
    import hls4ml
    from qkeras.utils import load_qmodel

    t_import = time.perf_counter() - t0
    model = load_qmodel(spec["model"], compile=False)
    arch = E.EncoderArch.from_dict(spec["arch"], "conversion spec arch") if "arch" in spec else E.ECONT_ARCH
    latent_bits, arch = _check_model(model, spec.get("latent_bits"), arch)
    if spec.get("weights_image"):
        want = E.EncoderWeights.from_image(Path(spec["weights_image"]).read_bytes(), arch)
        got = E.EncoderWeights.from_keras(model)
        diff = int(np.sum(got.to_vector() != want.to_vector()))
        if diff:
            raise FlowError(f"the encoder model's quantized weights differ from the register image "
                            f"{spec['weights_image']} at {diff} of {arch.n_params} positions")
    backend = spec["backend"]
    precisions = spec["precisions"]
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=backend)
    cfg["Model"]["ReuseFactor"] = spec["reuse_factor"]
    cfg["Model"]["Strategy"] = spec["strategy"]
    for name, lcfg in cfg["LayerName"].items():
        if "ReuseFactor" in lcfg:
            lcfg["ReuseFactor"] = spec["reuse_factor"]
        for key, prec in precisions.get(name, {}).items():
            lcfg.setdefault("Precision", {})[key] = prec
    kw = dict(backend=backend, output_dir=spec["output_dir"], project_name="myproject",
              io_type=spec["io_type"], clock_period=spec["clock_period"], hls_config=cfg)
    if spec.get("tb_input"):
        kw.update(input_data_tb=spec["tb_input"], output_data_tb=spec["tb_output"])
    if backend == "Vitis":
        kw.update(part=spec["fpga_part"], write_weights_txt=False)
    elif backend == "Catapult":
        kw.update(tech="asic", asiclibs=spec["asic_libs"])
    else:
        raise FlowError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    hm = hls4ml.converters.convert_from_keras_model(model, **kw)
    layers = _verify_graph(hm, precisions)
    hm.write()
    return {"backend": backend, "latent_bits": latent_bits, "arch": arch.to_dict(), "layers": layers,
            "hls4ml": hls4ml.__version__, "import_s": round(t_import, 3),
            "convert_s": round(time.perf_counter() - t0 - t_import, 3)}


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    try:
        info = worker(spec)
    except FlowError as err:
        print(f"ERROR: {err}", flush=True)
        return 3
    Path(spec["result"]).write_text(json.dumps(info, indent=2) + "\n")
    print(f"converted: {spec['backend']} -> {spec['output_dir']}", flush=True)
    return 0


# ------------------------------------------------------------ parent side
def convert_backend(backend: str, *, model: Path, weights_image: Path | None, projects_dir: Path,
                    settings, latent_bits: int, log: Path, tb: tuple[np.ndarray, np.ndarray] | None = None,
                    extra_env: dict | None = None, arch: E.EncoderArch = E.ECONT_ARCH) -> dict:
    """Convert the encoder for one backend into ``projects_dir/<backend>``; returns the worker's info
    (with the encoder's ``arch`` as :meth:`~flow.core.encoder.EncoderArch.to_dict`).

    ``arch`` is the encoder's architecture (its ``encoder.json``'s): the precisions are computed
    for it and the child refuses a model or register image of another one.

    The hls4ml output directory is given relative to ``projects_dir`` (the
    child runs there), so the project holds no absolute path of this build.
    """
    if backend not in BACKENDS:
        raise FlowError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    projects_dir = Path(projects_dir).resolve()
    projects_dir.mkdir(parents=True, exist_ok=True)
    if (projects_dir / backend).exists():
        shutil.rmtree(projects_dir / backend)
    work = projects_dir / f".{backend}.work"
    work.mkdir(exist_ok=True)
    spec = {
        "model": str(Path(model).resolve()),
        "weights_image": str(Path(weights_image).resolve()) if weights_image else None,
        "backend": backend, "output_dir": backend, "io_type": settings.io_type,
        "clock_period": settings.clock_period_ns, "reuse_factor": settings.reuse_factor,
        "strategy": settings.strategy, "fpga_part": settings.fpga_part,
        "asic_libs": settings.asic_libs, "latent_bits": latent_bits, "arch": arch.to_dict(),
        "precisions": layer_precisions(latent_bits, arch),
        "result": str((work / "result.json").resolve()),
    }
    if tb is not None:
        np.save(work / "tb_input.npy", tb[0])
        np.save(work / "tb_output.npy", tb[1])
        spec.update(tb_input=str((work / "tb_input.npy").resolve()),
                    tb_output=str((work / "tb_output.npy").resolve()))
    (work / "spec.json").write_text(json.dumps(spec, indent=2) + "\n")
    (projects_dir / f"{backend}.tar.gz").unlink(missing_ok=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1",
               **(extra_env or {}))
    t0 = time.perf_counter()
    try:
        run_logged([sys.executable, "-m", "flow.core.hls", work / "spec.json"], log,
                   f"hls4ml conversion for the {backend} backend", cwd=projects_dir,
                   timeout=settings.timeout_s, env=env)
        info = json.loads((work / "result.json").read_text())
    finally:
        for p in work.iterdir():
            p.unlink()
        work.rmdir()
        # hls4ml's Catapult writer also packs the project into <output_dir>.tar.gz: not wanted
        (projects_dir / f"{backend}.tar.gz").unlink(missing_ok=True)
    info["wall_s"] = round(time.perf_counter() - t0, 3)
    return info


_CATAPULT_EXTERN = re.compile(
    r"#ifndef __SYNTHESIS__\n(?://[^\n]*\n)?extern [^\n]*;\n#else\n(?P<def>[^\n]*= \{[^\n]*\};)\n#endif\n")
_CATAPULT_LOAD = re.compile(
    r"#ifndef __SYNTHESIS__\n\s*static bool loaded_weights = false;.*?\n#endif\n", re.S)
_CATAPULT_DECL = re.compile(
    r"(// hls-fpga-machine-learning insert declare weights\n)((?:\w+ \w+\[\d+\];\n)+)")


def patch_catapult_weights(prj: Path) -> None:
    """Make C simulation of a Catapult project use the weight headers, as synthesis does.

    hls4ml 1.3.0's Catapult writer declares the weights ``extern`` outside
    synthesis and loads them from ``firmware/weights/*.txt`` at run time (the
    arrays are defined in the testbench), so C simulation and synthesis read
    different files.  This keeps only the initialised definitions of the
    headers, removes the run-time loading from ``myproject.cpp``,
    ``myproject_test.cpp`` and ``myproject_bridge.cpp`` and deletes the
    ``.txt`` copies.  Raises :class:`FlowError` if the writer's output does
    not have the expected form (another hls4ml version).
    """
    def sub(path: Path, pattern: re.Pattern, repl, what: str) -> None:
        text = path.read_text()
        new, n = pattern.subn(repl, text)
        if n == 0:
            raise FlowError(f"cannot patch the Catapult project: no {what} in {path} (expected the "
                            "output of hls4ml 1.3.0's Catapult writer)")
        path.write_text(new)

    note = "// econt-flow: weights are defined, initialised, in firmware/weights/*.h\n"
    for h in sorted((prj / "firmware" / "weights").glob("*.h")):
        sub(h, _CATAPULT_EXTERN, lambda m: m["def"] + "\n", "extern weight declaration")
    sub(prj / "firmware" / "myproject.cpp", _CATAPULT_LOAD, note, "run-time weight loading")
    for name in ("myproject_test.cpp", "myproject_bridge.cpp"):
        p = prj / name
        if p.exists():
            sub(p, _CATAPULT_DECL, lambda m: m[1] + note, "weight array definitions")
            text = p.read_text()
            p.write_text(_CATAPULT_LOAD.sub(note, text))
    for t in (prj / "firmware" / "weights").glob("*.txt"):
        t.unlink()


def _arch_note(arch: E.EncoderArch, sep: str = " ") -> str:
    """Empty for the ECON-T's architecture (its texts stay as they were), else one sentence
    (``sep`` between its two halves, e.g. a line break)."""
    if arch == E.ECONT_ARCH:
        return ""
    return (f"encoder architecture {arch.describe()} ({arch.n_params} parameters, a {arch.image_bits}-bit "
            f"register image),{sep}not the ECON-T ASIC's ({E.ECONT_ARCH.describe()})")


def econt_params_h(latent_bits: int, arch: E.EncoderArch = E.ECONT_ARCH) -> str:
    from flow.core.geometry import REMAP_8X8

    remap = ", ".join(str(int(i)) for i in REMAP_8X8)
    note = _arch_note(arch, "\n// ")
    return ("// Generated by the econt-flow `convert` stage: parameters of econt_top.\n"
            + (f"// The {note}:\n// conv weights and biases {arch.weight_fmt.to_ap_string()}, conv ReLU "
               f"{arch.conv_act_fmt.to_ap_string()} (econt_top does not depend on them).\n" if note else "")
            + "#ifndef ECONT_PARAMS_H_\n#define ECONT_PARAMS_H_\n\n"
            f"#define ECONT_N_LATENT {E.N_LATENT}\n"
            f"#define ECONT_LATENT_BITS {latent_bits}\n\n"
            "namespace econt {\n"
            "// flattened 8x8 position of each TC (encoding A, econt.md section 1)\n"
            f"static const int remap_8x8[48] = {{{remap}}};\n"
            "}  // namespace econt\n\n#endif\n")


def _table(rows: list[list[str]], head: list[str]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _info_arch(info: dict) -> E.EncoderArch:
    """The architecture the worker converted (its info's ``arch``; the ECON-T's if absent)."""
    return E.EncoderArch.from_dict(info["arch"], "conversion info arch") if "arch" in info else E.ECONT_ARCH


def readme(backend: str, info: dict, settings, latent_bits: int, weights_sha256: str,
           csim_opt: str) -> str:
    arch = _info_arch(info)
    wb, note = arch.weight_bits, _arch_note(arch, "\n  ")
    arch_line = f"* {note[0].upper()}{note[1:]};\n" if note else ""
    rows = []
    for layer in info["layers"]:
        for key, prec in layer["precisions"].items():
            rows.append([layer["name"], layer["class"], key, f"`{prec}`"])
    if backend == "Vitis":
        target = f"FPGA part `{settings.fpga_part}`"
        synth = ("Vitis HLS (2023.2 or later; `vitis-run` on the PATH):\n\n"
                 "```bash\n"
                 "# choose the steps in build_opt.tcl (csim, synth, cosim, export, vsynth), then\n"
                 "vitis-run --tcl build_prj.tcl --mode hls\n"
                 "# older installs: vitis_hls -f build_prj.tcl\n"
                 "```\n\n"
                 "Reports go to `myproject_prj/solution1/syn/report/`.  `vivado_synth.tcl` runs "
                 "logic synthesis of the exported RTL (`vsynth 1`).")
    else:
        target = f"ASIC, technology libraries `{settings.asic_libs}` (Catapult `setup_asic_libs`)"
        synth = ("Siemens Catapult HLS (the ECON-T team's tool):\n\n"
                 "```bash\n"
                 "catapult -product ultra -shell -f build_prj.tcl \\\n"
                 "  -eval 'set ::argv \"reset=True csim=True synth=True cosim=False vsynth=False\"'\n"
                 "```\n\n"
                 "`catapult_synth.tcl` drives the downstream logic synthesis.  Change the library "
                 "in the `setup_asic_libs` calls of `build_prj.tcl` for another technology.")
    ours = "\n".join(f"* `{dst}`" for dst in [*ECONT_SOURCES.values(), "firmware/econt_params.h",
                                               "build_econt_csim.sh"])
    patch = ""
    if backend == "Catapult":
        patch = ("\n## Change to hls4ml's output\n\n"
                 "hls4ml 1.3.0's Catapult writer declares the weight arrays `extern` outside "
                 "synthesis and loads them from `firmware/weights/*.txt` at run time, so C "
                 "simulation and synthesis would read different files.  The flow keeps only the "
                 "initialised definitions in `firmware/weights/*.h`, removed the run-time loading "
                 "from `myproject.cpp`, `myproject_test.cpp` and `myproject_bridge.cpp` and deleted "
                 "the `.txt` copies: C simulation compiles exactly the weights synthesis reads.\n")
    return f"""# ECON-T encoder: hls4ml project, {backend} backend

Generated by the econt-flow `convert` stage (`make convert`) with hls4ml {info['hls4ml']}
from the trained QKeras encoder (`autoencoder/encoder.h5`, weight image sha256
`{weights_sha256}`).

* top function `myproject` (hls4ml): 8x8x1 AEin (`ufixed<8,1>`) -> 16 latent values
  (`ufixed<{latent_bits},1>`): Conv2D {arch.filters}x3x3 stride 2 'same' -> ReLU -> Dense 16 -> ReLU;
{arch_line}* `io_type: {settings.io_type}`, strategy `{settings.strategy}`, reuse factor
  {settings.reuse_factor} (II = 1 target), clock period {settings.clock_period_ns} ns;
* target: {target}.

## Precisions (set per layer, `granularity='name'`)

From the QKeras quantizers (input `quantized_bits(8,1,keep_negative=False)` ->
`ufixed<8,1,RND_CONV,SAT>`, weights and biases `quantized_bits({wb},0)` -> `fixed<{wb},1>`,
activations `quantized_relu` -> `ufixed<.,1,RND_CONV,SAT>`) and exact worst-case bounds
of the accumulators over all {wb}-bit weight codes (the weights are reprogrammable
registers), so no value of any input or weight set can overflow:

{_table(rows, ['layer', 'hls4ml class', 'quantity', 'precision'])}

## The ECON-T block around the encoder (our C++)

{ours}

`econt_top` = `econt::frontend` (48 x 7-bit TC words, CALVALUE registers, drop ->
AEin codes and the 9-bit module sum; econt.md section 4, written in synthesizable HLS
style for both ap_types and ac_types) -> remap of the 48 TCs onto the 8x8 image ->
`myproject`.  Outputs: 16 latent values and the 9-bit module sum.

## Synthesis with the vendor tool

No vendor tool was run by the flow.  {synth}

The hls4ml scripts synthesize `myproject` (the encoder).  To synthesize the whole block,
add `firmware/econt_top.cpp` to the design files and make `econt_top` the top function.
{patch}
## C simulation (how the flow runs it)

`make csim` compiles `{' '.join(HARNESS_SOURCES)}` with g++ (`{csim_opt} {CXX_STD}`,
include paths as in `build_econt_csim.sh`) into one binary that streams the golden
vector file (`convert/vectors.npz` converted to the binary format described in
`econt_csim_tb.cpp`) through `econt_top` and writes latent codes, module sums and AEin
codes; the flow compares them with the Python golden model (front end +
`flow.core.encoder.golden_encode`) on integer codes.  Results: `csim/{backend}/report.json`.
By hand: `./build_econt_csim.sh && build/econt_csim vectors.bin results.bin`.
`tb_data/` holds a few golden vectors (AEin values in, latent values out) for hls4ml's
own testbench `myproject_test.cpp`.
"""


def finish_project(prj: Path, backend: str, info: dict, settings, latent_bits: int,
                   weights_sha256: str, csim_opt: str) -> None:
    """Add our C++, the harness build script and the README to a written hls4ml project."""
    if backend == "Catapult":
        patch_catapult_weights(prj)
    src = resources.files("flow").joinpath("resources/hls")
    for name, dst in ECONT_SOURCES.items():
        (prj / dst).write_text(src.joinpath(name).read_text())
    (prj / "firmware" / "econt_params.h").write_text(econt_params_h(latent_bits, _info_arch(info)))
    script = prj / "build_econt_csim.sh"
    script.write_text(build_script(backend, csim_opt))
    script.chmod(0o755)
    (prj / "README.md").write_text(readme(backend, info, settings, latent_bits, weights_sha256, csim_opt))
    (prj / "econt_project.json").write_text(json.dumps(
        {"backend": backend, "latent_bits": latent_bits, "top": "econt_top", "hls_top": "myproject",
         "harness_sources": list(HARNESS_SOURCES), "include_flags": include_flags(backend),
         "layers": info["layers"], "hls4ml": info["hls4ml"]}, indent=2) + "\n")


if __name__ == "__main__":  # pragma: no cover - the child process
    sys.exit(main(sys.argv[1:]))
