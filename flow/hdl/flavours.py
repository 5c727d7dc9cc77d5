"""The RTL flavour registry: every fact about a flavour in one table entry.

A *flavour* is one way of building the same ECON-T block: the same ports,
register map, timing and outputs (``docs/rtl_cosim.md``), with the encoder
(and the storage of its weights) built differently.  The stages read what they
need from :data:`FLAVOURS` and never branch on a flavour's name:

* ``config``: ``rtl.flavours`` / ``cosim.flavours`` accept exactly the names
  registered here (an unknown name is a ``ConfigError`` listing them);
* ``rtl``: calls the entry's generator (a ``"module:function"`` path, imported
  only when the flavour is generated) and names the top module ``top``;
* ``cosim``: builds ``top`` and tells the testbench whether the weights are
  ``programmable`` (it then loads and reprograms them through the
  configuration port);
* ``handoff``: documents ``top``, ``encoder`` and the weight storage in the
  archive's ``INTERFACE.md`` and ships the reprogramming vector set to the
  programmable flavours.

Adding a flavour is one generator module (``flow/rtl_<name>.py``) plus one
entry below: ``docs/extending.md``, "Add an RTL flavour".

The generator contract: ``generate(g: GeneratorInputs) -> FlavourSources``.
The ``rtl`` stage writes the shared hand-written sources
(``flow/resources/rtl``), then the generator's ``files`` in their order, then
the top module (``<top>.v``, last in ``filelist.f``); ``info`` lands in the
flavour's record of ``rtl.json`` (numbers in it also become ``rtl`` metrics
``<flavour>_<key>`` when listed in ``flow.rtl.stage.METRIC_KEYS``).
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flow.runner.errors import ConfigError

if TYPE_CHECKING:
    from flow.core.encoder import EncoderWeights


#: the values of ``RtlFlavour.seu_hook``: which registers the test-build injection hook reaches
#: (every top built with :func:`flow.hdl.top.top_source` has the hook, at least on the pipeline)
SEU_HOOKS = ("pipeline", "all")


@dataclass(frozen=True)
class RtlFlavour:
    """One registered RTL flavour."""

    name: str
    """Config and directory name (``rtl/<name>/``), also the key in every report."""
    top: str
    """Top-level module (``rtl/<name>/<top>.v``, last in ``filelist.f``)."""
    programmable: bool
    """The weights sit in registers behind the configuration port (reset to the trained
    image); otherwise they are fixed at generation and weight writes are ignored."""
    generator: str
    """``"module:function"`` of the generator (see the module docstring for its contract)."""
    description: str
    """One line: what the flavour is (the top module's header comment, the config docs)."""
    encoder: str
    """How the encoder is built (the "encoder" column of the archive's ``INTERFACE.md``)."""
    seu_hook: str = "pipeline"
    """The registers the SEU injection hook ``seu_inj_*`` of its test build (Verilog macro
    ``ECONT_SEU_INJECT``) reaches: ``"pipeline"`` (the shell's pipeline registers; the SEU
    campaign, ``flow/cosim/seu.py``, reaches the configuration registers through the
    configuration port) or ``"all"`` (every register: configuration and pipeline)."""
    tmr: bool = False
    """Its registers are triplicated with voters: every single upset is corrected and
    counted on ``seu_count`` (the SEU campaign's pass criterion, and the handoff self-check's
    ``seu_inject`` test)."""
    in_defaults: bool = True
    """Part of ``rtl.flavours`` / ``cosim.flavours`` when a config does not list them (and so of
    the ``handoff`` archive, which ships every generated flavour); ``False``: opt-in, generated
    only when a config names it."""

    def __post_init__(self):
        if self.seu_hook not in SEU_HOOKS:
            raise ConfigError(f"RTL flavour {self.name!r}: seu_hook expected one of {SEU_HOOKS}, "
                              f"got {self.seu_hook!r}")

    def load_generator(self) -> Callable[[GeneratorInputs], FlavourSources]:
        mod, _, func = self.generator.partition(":")
        if not mod or not func:
            raise ConfigError(f"RTL flavour {self.name!r}: generator expected as 'module:function', "
                             f"got {self.generator!r}")
        return getattr(importlib.import_module(mod), func)


@dataclass(frozen=True)
class GeneratorInputs:
    """Everything a flavour generator may use."""

    flavour: RtlFlavour
    weights: EncoderWeights
    """The trained weights (the defaults of a programmable flavour)."""
    latent_bits: int
    fe_reg: bool
    """Register the front-end result (latency 2) or not (latency 1)."""
    cal_image: int
    """Default CALVALUE image (48 x 12 bit, TC t at bits [12t +: 12])."""
    drop_default: int
    weight_image: int
    """The trained weight image as an integer (little-endian; 12864 bits for the ECON-T's
    architecture, ``weights.arch.image_bits`` in general)."""
    solver_options: dict | None = None
    """da4ml solver options (flavours that trace constants with da4ml)."""
    check_trace: int = 4096
    """Random wafers of a generator self-check against the golden model (0: none)."""
    seed: int = 0

    @property
    def arch(self):
        """The encoder architecture (:class:`flow.core.encoder.EncoderArch`) of ``weights``."""
        return self.weights.arch


@dataclass
class FlavourSources:
    """What a generator returns: its own source files and the top module."""

    files: dict[str, str]
    """File name -> Verilog, in compile order (after the shared hand-written files)."""
    top: str
    """Verilog of the top module ``RtlFlavour.top``."""
    info: dict[str, Any] = field(default_factory=dict)
    """Facts for the flavour's record in ``rtl.json`` (e.g. da4ml cost, self-check size)."""


#: the table: adding a flavour = one entry here + its generator module
FLAVOURS: dict[str, RtlFlavour] = {f.name: f for f in (
    RtlFlavour(
        name="const", top="econt_ae_const", programmable=False, generator="flow.hdl.const:generate",
        description="constant (trained) weights, da4ml distributed arithmetic",
        encoder="da4ml distributed arithmetic: shift-add trees of the trained constants"),
    RtlFlavour(
        name="prog", top="econt_ae_prog", programmable=True, generator="flow.hdl.prog:generate",
        description="reprogrammable weights (register image behind the configuration port)",
        encoder="one 8 x 6-bit multiplier per connection (680 conv + 2048 dense), adder trees"),
    RtlFlavour(
        name="prog_tmr", top="econt_ae_prog_tmr", programmable=True,
        generator="flow.hdl.prog_tmr:generate",
        description="reprogrammable weights in triplicated registers with voters",
        encoder="as prog; configuration and pipeline registers triplicated (TMR, voters, refresh)",
        seu_hook="all", tmr=True,
        # not in the flavours of a config that lists none (tests, small configs): a third
        # Verilator build; configs/default.yaml lists it (its cosim cost: docs/seu.md)
        in_defaults=False),
)}


def names() -> tuple[str, ...]:
    """Registered flavour names, in table order."""
    return tuple(FLAVOURS)


def get(name: str) -> RtlFlavour:
    """The entry of ``name``; a :class:`~flow.runner.errors.ConfigError` naming the registered
    flavours otherwise."""
    try:
        return FLAVOURS[name]
    except KeyError:
        raise ConfigError(unknown_message(name)) from None


def unknown_message(name) -> str:
    return (f"expected an RTL flavour registered in flow/hdl/flavours.py ({', '.join(FLAVOURS)}), "
            f"got {name!r}")


def default_names() -> tuple[str, ...]:
    """The flavours of a config that does not list them (``in_defaults``), in table order."""
    return tuple(n for n, f in FLAVOURS.items() if f.in_defaults)


def programmable_names() -> tuple[str, ...]:
    return tuple(n for n, f in FLAVOURS.items() if f.programmable)


def fixed_names() -> tuple[str, ...]:
    return tuple(n for n, f in FLAVOURS.items() if not f.programmable)


def generator_modules() -> tuple[str, ...]:
    """The modules of every registered generator (imported lazily by the ``rtl`` stage)."""
    return tuple(dict.fromkeys(f.generator.partition(":")[0] for f in FLAVOURS.values()))
