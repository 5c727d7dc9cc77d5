"""Shared cores: formats, geometry, front end, golden encoder, datasets, vector files, EMD, losses.

Imports nothing: a module of this package pulls in only what it imports itself."""
