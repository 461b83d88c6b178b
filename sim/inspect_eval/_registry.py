"""Imported by Inspect through the `inspect_ai` entry point: registers the `runaway` sandbox."""

from .provider import RunawaySandboxEnvironment  # noqa: F401  (registration is the import)
