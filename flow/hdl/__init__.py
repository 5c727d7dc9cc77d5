"""Verilog generators, the RTL flavour registry and synthesis (Yosys, sky130 area).

Imports nothing: a module of this package pulls in only what it imports itself."""
