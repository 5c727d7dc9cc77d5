"""The convert stage: hls4ml projects and golden test vectors.

Imports nothing: a module of this package pulls in only what it imports itself."""
