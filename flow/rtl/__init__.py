"""The rtl stage: Verilog of the ECON-T block for each flavour.

Imports nothing: a module of this package pulls in only what it imports itself."""
