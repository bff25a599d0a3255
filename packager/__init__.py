"""Builds the AgentRun code package (a zip with the app at its root and its dependencies in `python/`).

Run it as `./scripts/package` (or `python -m packager --help`). The package is named `packager`, not
`packaging`, so it never shadows the PyPI `packaging` library that our dependencies import.
"""
