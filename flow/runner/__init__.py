"""The runner and its infrastructure: stage contract, manifests, config, errors, tools.

Imports nothing: a module of this package pulls in only what it imports itself."""
