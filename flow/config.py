"""Typed, documented configuration of a flow run.

A run is described by one YAML file (``configs/default.yaml`` for the real
job, ``configs/smoke.yaml`` for tests and CI).  Every section is a frozen,
strictly typed pydantic model: an unknown key, a value of the wrong type or
an out-of-range value is a :class:`~flow.errors.ConfigError` that names the
key (``data.n_events``), what was expected and what arrived.  Keys left out
take the defaults documented below (the attribute docstrings are the
documentation; ``python -m flow config --show`` prints them).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True,
                              use_attribute_docstrings=True)


class DataConfig(Section):
    """``data`` stage: where wafers come from and how the dataset is assembled."""

    source: Literal["synthetic", "root"] = "synthetic"
    """``synthetic``: generate ROOT ntuples with the built-in generator, then read
    them back; ``root``: read the user's ntuples given in ``root_files``."""
    root_files: list[str] = Field(default_factory=list)
    """Files or glob patterns of HGCAL trigger ntuples (``source: root``)."""
    tree: str = "FloatingpointThreshold0DummyHistomaxDummynTuple/HGCalTriggerNtuple"
    """Path of the TTree inside each file."""
    layout: Literal["auto", "per_tc", "per_wafer"] = "auto"
    """Ntuple layout (econt.md section 7); ``auto`` detects it from the branches."""
    n_events: int = Field(1000, ge=1)
    """Synthetic events to generate (each gives many wafers)."""
    n_files: int = Field(1, ge=1)
    """Synthetic ROOT files to write (events are spread over them)."""
    chunk_size: int = Field(2000, ge=1)
    """Events per chunk when streaming ntuples (bounds memory)."""
    drop: Literal[1, 3] = 3
    """Front-end ``drop`` shift: 1 low-density, 3 high-density modules."""
    split: list[float] = Field(default_factory=lambda: [0.7, 0.15, 0.15])
    """Train / validation / test fractions, split by event (no event in two splits)."""


class EmdConfig(Section):
    """``emd`` stage (part of ``train``): exact EMD labels and the EMD CNN."""


class AutoencoderConfig(Section):
    """``autoencoder`` stage (part of ``train``): the quantized encoder."""


class ConvertConfig(Section):
    """``convert`` stage: hls4ml projects and golden test vectors."""


class CsimConfig(Section):
    """``csim`` stage: compile hls4ml projects, compare with the golden model."""


class RtlConfig(Section):
    """``rtl`` stage: Verilog of the ECON-T block."""


class CosimConfig(Section):
    """``cosim`` stage: cocotb testbenches on Verilator, Yosys resources."""


class ReportConfig(Section):
    """``report`` stage: HTML/Markdown report of a run."""


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
    report: ReportConfig = Field(default_factory=ReportConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.workdir) / self.name

    def stage_dir(self, stage: str) -> Path:
        return self.run_dir / stage

    def section(self, name: str) -> dict[str, Any]:
        """The JSON-able settings a stage depends on (its own section + globals)."""
        return {"seed": self.seed, name: getattr(self, name).model_dump(mode="json")}

    def section_hash(self, name: str) -> str:
        blob = json.dumps(self.section(name), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
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
        out.append(f"{key} ({tname}) = {default!r}  # {doc}")
    return out
