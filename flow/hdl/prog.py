"""Generator of the ``prog`` RTL flavour (registry entry in ``flow/hdl/flavours.py``).

The weights in a register image (12864 bits for the ECON-T) behind the configuration port
(:func:`flow.hdl.top.weight_registers`, reset to the trained image) feeding the
programmable encoder ``econt_encoder_prog``
(:func:`flow.hdl.datapath.prog_encoder_source`: one multiplier per connection,
adder trees) and its hand-written helpers.
"""
from __future__ import annotations

from flow.hdl.datapath import hand_written_dir, prog_encoder_source
from flow.hdl.flavours import FlavourSources, GeneratorInputs
from flow.hdl.top import address_map, top_source, weight_registers

#: hand-written modules of the programmable encoder (``flow/resources/rtl``)
HAND_WRITTEN = ("econt_mul_us.v", "econt_qrelu.v")
#: global bit index (injection hook) of the weight image's bit 0; the shell's registers follow it
WEIGHT_INJ_OFFSET = 0
ENCODER_INSTANCE = "    econt_encoder_prog u_enc (.aein(enc_aein), .weights(weights), .latent(enc_latent));\n"


def generate(g: GeneratorInputs, *, tmr: bool = False) -> FlavourSources:
    """The flavour's sources; ``tmr``: its registers triplicated (the ``prog_tmr`` flavour)."""
    hw = hand_written_dir()
    files = {name: (hw / name).read_text() for name in HAND_WRITTEN}
    files["econt_encoder_prog.v"] = prog_encoder_source(g.latent_bits, g.arch)
    regs = weight_registers(g.weight_image, address_map(g.arch), tmr=tmr, inj_offset=WEIGHT_INJ_OFFSET)
    return FlavourSources(files=files, top=top_source(g, ENCODER_INSTANCE, regs, tmr=tmr))
