"""The csim stage: hls4ml C simulation against the golden model.

Imports nothing: a module of this package pulls in only what it imports itself."""
