"""The handoff stage: the archive for ASIC engineers and its self-check.

Imports nothing: a module of this package pulls in only what it imports itself."""
