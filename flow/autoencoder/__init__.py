"""The autoencoder stage: the quantized encoder trained with each loss.

Imports nothing: a module of this package pulls in only what it imports itself."""
