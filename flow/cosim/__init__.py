"""The cosim stage: cocotb/Verilator cosimulation, SEU campaign, Yosys resources.

Imports nothing: a module of this package pulls in only what it imports itself."""
