"""The physics stage: electron trigger resolution per compression algorithm.

Imports nothing: a module of this package pulls in only what it imports itself."""
