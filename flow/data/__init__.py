"""The data stage: wafers from ROOT ntuples (synthetic by default) -> dataset splits.

Imports nothing: a module of this package pulls in only what it imports itself."""
