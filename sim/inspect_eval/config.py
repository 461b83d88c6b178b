"""What the `runaway` sandbox of an Inspect task is configured with.

    Task(..., sandbox=("runaway", RunawaySandboxConfig(profile="ci", policy="policy.yaml")))
    Task(..., sandbox=("runaway", "runaway.yaml"))     # the same fields, from a YAML file
    Task(..., sandbox="runaway")                       # every default
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from policies.errors import RunawayError


class InspectConfigError(RunawayError):
    """A `runaway` sandbox configuration that cannot be used (file, field, what was expected)."""


class RunawaySandboxConfig(BaseModel):
    """One sample's runaway run: the sandbox's caps, the guards over it, its world, where
    its trace and report go."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profile: str | None = Field(
        default=None, description="novel, laptop or ci (default: the largest that fits this host)")
    policy: str | None = Field(default=None, description="a guard policy file (default: the shipped one)")
    guards: bool = Field(default=True, description="false: watch and record, never act")
    web: bool = Field(default=True, description="the mock web on the sandbox's network (off: it reaches nothing)")
    run_dir: str = Field(default="runs/inspect", description="where each sample's run directory goes")
    backend: Literal["docker", "process", "auto"] = Field(
        default="docker", description="process is NOT a security boundary")
    metrics_port: int | None = Field(
        default=0, description="the Prometheus exporter's port (0: any free one; null: none)")
    max_duration_s: float = Field(default=3600.0, gt=0, description="a sample's run ends at the latest here")
    seed: int = Field(default=0, description="the mock web's seed")


def load_config(config: Any) -> RunawaySandboxConfig:
    """The config an Inspect task gave: None (defaults), a RunawaySandboxConfig, a mapping,
    or the path of a YAML file holding one. A bad one raises InspectConfigError naming the
    file and field."""
    if config is None:
        return RunawaySandboxConfig()
    if isinstance(config, RunawaySandboxConfig):
        return config
    where: str | None = None
    if isinstance(config, str):
        import yaml

        where = config
        try:
            text = Path(config).read_text(encoding="utf-8")
        except OSError as e:
            raise InspectConfigError(f"cannot read the sandbox config: {e.strerror}", file=config) from None
        try:
            config = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            raise InspectConfigError(f"not valid YAML: {getattr(e, 'problem', e)}", file=where,
                                     line=mark.line + 1 if mark else None) from None
    if isinstance(config, BaseModel):
        config = config.model_dump()
    if not isinstance(config, dict):
        raise InspectConfigError(f"expected a mapping of settings, got {type(config).__name__}", file=where)
    try:
        return RunawaySandboxConfig.model_validate(config)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(x) for x in err["loc"]) or None
        raise InspectConfigError(err["msg"], file=where, field=field) from None
