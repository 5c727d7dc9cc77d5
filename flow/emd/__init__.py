"""The emd stage: exact EMD labels (POT) and the EMD CNN.

Imports nothing: a module of this package pulls in only what it imports itself."""
