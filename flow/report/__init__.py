"""The report stage: HTML and Markdown report of a run.

Imports nothing: a module of this package pulls in only what it imports itself."""
