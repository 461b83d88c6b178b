"""Inspect AI evals inside runaway: the `runaway` sandbox provider and containment scorers.

    from inspect_ai import Task
    from sim.inspect_eval import RunawaySandboxConfig, contained, detected

    Task(dataset=..., solver=react(tools=[bash()]), scorer=[contained(), detected()],
         sandbox=("runaway", RunawaySandboxConfig(profile="ci", policy="policy.yaml")))

Needs the optional extra: `pip install -e '.[inspect]'`. Inspect finds the provider
through the `inspect_ai` entry point (`sim.inspect_eval._registry`). docs/inspect.md.
"""

from __future__ import annotations

from .config import InspectConfigError, RunawaySandboxConfig, load_config
from .provider import RunawaySandboxEnvironment
from .scorers import contained, detected

__all__ = ["RunawaySandboxConfig", "RunawaySandboxEnvironment", "InspectConfigError", "load_config",
           "contained", "detected"]
