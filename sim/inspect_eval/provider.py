"""The `runaway` sandbox provider for Inspect AI (found through the `inspect_ai` entry point).

Each sample gets its own runaway run (sim/inspect_eval/run.py): `sample_init` starts it,
`exec`, `read_file` and `write_file` run inside its sandbox as the sandbox's user,
`sample_cleanup` ends it and records its scorecard in the sample's metadata, and
`task_cleanup` removes whatever is still labelled with the task's runs. docs/inspect.md
says what is watched and how the errors reach the agent.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
from typing import Any, Literal, Union, overload

from inspect_ai.util import (
    ExecResult,
    OutputLimitExceededError,
    SandboxEnvironment,
    SandboxEnvironmentConfigType,
    SandboxConnection,
    SandboxEnvironmentLimits,
    SandboxUnavailableError,
    SandboxUserUnsupportedError,
    sandboxenv,
)
from pydantic import BaseModel

from policies.model import record_to_dict
from sandbox import ExecTimeout, SandboxUnavailable

from .config import RunawaySandboxConfig, load_config
from .run import SampleRun, inspect_identity

logger = logging.getLogger(__name__)

# Run ids each task started, so that `task_cleanup` removes what a failed sample left.
_TASK_RUNS: dict[str, set[str]] = {}


@sandboxenv(name="runaway")
class RunawaySandboxEnvironment(SandboxEnvironment):
    """A sample's tool calls run inside a runaway sandbox, under its caps and guards."""

    def __init__(self, run: SampleRun) -> None:
        super().__init__()
        self.run = run

    # -- configuration --------------------------------------------------------------

    @classmethod
    def config_deserialize(cls, config: dict[str, Any]) -> BaseModel:
        return RunawaySandboxConfig.model_validate(config)

    @classmethod
    def default_concurrency(cls) -> int | None:
        # As Inspect's own Docker provider: each sandbox is capped, so a few per core are
        # safe; `--max-sandboxes` says otherwise.
        import os

        return 2 * len(os.sched_getaffinity(0))

    # -- lifecycle ------------------------------------------------------------------

    @classmethod
    async def task_init(cls, task_name: str, config: SandboxEnvironmentConfigType | None) -> None:
        """Check the config and the policy before any sample starts; build the learner
        image if it is missing (once; minutes the first time)."""
        import os

        from sandbox import choose_profile

        cfg = load_config(config)
        if cfg.guards and cfg.policy:
            from policies import load_policy

            load_policy(cfg.policy)
        choose_profile(cfg.profile, float(len(os.sched_getaffinity(0))))  # refuses one that does not fit
        if cfg.backend == "docker":
            from sandbox import SandboxError, docker_available
            from sandbox.image import build_image

            why = docker_available()
            if why is not None:
                raise SandboxError(f"the runaway sandbox needs a Docker daemon: {why}", field="backend")
            await asyncio.to_thread(build_image)

    @classmethod
    async def sample_init(cls, task_name: str, config: SandboxEnvironmentConfigType | None,
                          metadata: dict[str, str]) -> dict[str, SandboxEnvironment]:
        run = SampleRun(task_name, load_config(config), inspect_identity())
        try:
            await run.start()
        finally:
            if run.run_id:
                _TASK_RUNS.setdefault(task_name, set()).add(run.run_id)
        return {"default": cls(run)}

    @classmethod
    async def sample_cleanup(cls, task_name: str, config: SandboxEnvironmentConfigType | None,
                             environments: dict[str, SandboxEnvironment], interrupted: bool) -> None:
        for env in environments.values():
            if not isinstance(env, RunawaySandboxEnvironment):
                continue
            await env.run.finish("interrupted" if interrupted else "sample_end")
            env._tell_transcript()
            _record_in_sample(env.run.record())

    @classmethod
    async def task_cleanup(cls, task_name: str, config: SandboxEnvironmentConfigType | None,
                           cleanup: bool) -> None:
        runs = _TASK_RUNS.pop(task_name, set())
        if cleanup and runs:
            from sandbox import clean

            for run_id in sorted(runs):
                await asyncio.to_thread(clean, run_id)

    @classmethod
    async def cli_cleanup(cls, id: str | None) -> None:
        from sandbox import clean

        await asyncio.to_thread(clean, id)

    async def connection(self, *, user: str | None = None) -> SandboxConnection:
        """A shell in the running sandbox (Docker), as its user: for `inspect view` and people."""
        sb = self.run.sandbox
        name = getattr(getattr(sb, "container", None), "name", None)
        if name is None or getattr(sb, "backend", "") != "docker":
            raise NotImplementedError("only the docker backend has a container to connect to")
        who = user or self.run.exp.spec.user
        return SandboxConnection(type="runaway", command=f"docker exec -it --user {who} {name} bash -l",
                                 container=name)

    # -- commands -------------------------------------------------------------------

    async def exec(self, cmd: list[str], input: str | bytes | None = None, cwd: str | None = None,
                   env: dict[str, str] | None = None, user: str | None = None, timeout: int | None = None,
                   timeout_retry: bool = True, concurrency: bool = True) -> ExecResult[str]:
        limit = SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE
        self._tell_transcript()
        try:
            res = await self.run.sandbox.exec(cmd, input=input, cwd=cwd, env=env, user=user,
                                              timeout=timeout, output_limit=limit)
        except PermissionError as e:
            raise SandboxUserUnsupportedError(str(e)) from None
        except ExecTimeout as e:
            err = TimeoutError(f"Command timed out after {timeout} seconds")
            partial = (e.stdout + e.stderr).decode("utf-8", "replace")
            if partial:
                setattr(err, "truncated_output", partial)
            raise err from None
        except SandboxUnavailable as e:
            self._tell_transcript()
            raise SandboxUnavailableError(self.run.why_unavailable(str(e))) from None
        finally:
            self._tell_transcript()
        stdout = res.stdout.decode("utf-8", "replace")
        stderr = res.stderr.decode("utf-8", "replace")
        if res.truncated:
            raise OutputLimitExceededError(SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE_STR, stdout + stderr)
        return ExecResult(success=res.returncode == 0, returncode=res.returncode, stdout=stdout, stderr=stderr)

    def _allowed(self, file: str) -> str:
        """The absolute path of `file` (relative: under the scratch dir), if it lies under a
        directory the harness may read and write (the scratch dir); else PermissionError."""
        spec = self.run.exp.spec
        base = spec.workdir.rstrip("/") or "/"
        path = posixpath.normpath(posixpath.join(base, file))
        if path != base and not path.startswith(base + "/"):
            raise PermissionError(f"runaway: {file!r} is outside the sandbox's scratch dir {base}; "
                                  "read_file and write_file reach only that")
        return path

    async def write_file(self, file: str, contents: str | bytes) -> None:
        path = self._allowed(file)
        data = contents.encode("utf-8") if isinstance(contents, str) else contents
        # The missing parents one by one by absolute path (not `mkdir -p`, whose relative
        # mkdirat calls a syscall observer must resolve): each a plain mkdir the observers read.
        parents = [p for p in _parents(path) if p != "/"]
        res = await self._exec_raw(["sh", "-c", 'f=$1; shift; for d in "$@"; do [ -d "$d" ] || mkdir -- "$d" || exit 1; '
                                    'done; cat > "$f"', "sh", path, *parents], input=data)
        if res.returncode != 0:
            _raise_for(res.stderr.decode("utf-8", "replace"), file)

    @overload
    async def read_file(self, file: str, text: Literal[True] = True) -> str: ...

    @overload
    async def read_file(self, file: str, text: Literal[False]) -> bytes: ...

    async def read_file(self, file: str, text: bool = True) -> Union[str | bytes]:
        path = self._allowed(file)
        limit = SandboxEnvironmentLimits.MAX_READ_FILE_SIZE
        res = await self._exec_raw(["sh", "-c", 'test -d "$1" && { echo "$1: Is a directory" >&2; exit 1; }; '
                                    'exec cat -- "$1"', "sh", path], limit=limit)
        if res.returncode != 0:
            _raise_for(res.stderr.decode("utf-8", "replace"), file)
        if res.truncated:
            raise OutputLimitExceededError(SandboxEnvironmentLimits.MAX_READ_FILE_SIZE_STR, None)
        # newline="" semantics: bytes decoded as they are, CRLF kept.
        return res.stdout.decode("utf-8") if text else res.stdout

    async def _exec_raw(self, argv: list[str], *, input: bytes | None = None, limit: int | None = None) -> Any:
        try:
            return await self.run.sandbox.exec(argv, input=input, output_limit=limit, timeout=120)
        except ExecTimeout as e:
            raise TimeoutError(str(e)) from None
        except SandboxUnavailable as e:
            raise SandboxUnavailableError(self.run.why_unavailable(str(e))) from None

    # -- what the eval sees of the guards ---------------------------------------------

    def _tell_transcript(self) -> None:
        """Each verdict and action since the last call, as an info event in the sample's
        transcript, where the tool call it concerns is."""
        news = self.run.watcher.news()
        if not news:
            return
        try:
            from inspect_ai.log import transcript

            for rec in news:
                transcript().info(record_to_dict(rec), source="runaway")
        except Exception as e:  # outside a sample (a test calling the provider directly)
            logger.debug("no transcript to tell: %s", e)


def _parents(path: str) -> list[str]:
    """The directories above an absolute path, outermost first."""
    out: list[str] = []
    d = posixpath.dirname(path)
    while d not in ("", "/"):
        out.append(d)
        d = posixpath.dirname(d)
    return out[::-1]


def _raise_for(stderr: str, file: str) -> None:
    text = stderr.strip()
    if "No such file" in text:
        raise FileNotFoundError(f"{file}: no such file in the sandbox")
    if "Is a directory" in text:
        raise IsADirectoryError(f"{file}: is a directory")
    if "Permission denied" in text or "Read-only file system" in text:
        raise PermissionError(f"{file}: {text.splitlines()[-1] if text else 'permission denied'}")
    raise RuntimeError(f"{file}: {text or 'the command failed'}")


def _record_in_sample(record: dict[str, Any]) -> None:
    """The run's record in the sample's metadata (`metadata["runaway"]`), which Inspect logs
    after this cleanup; in its store too, under the same key."""
    try:
        from inspect_ai.solver._task_state import sample_state  # not public: the logged metadata

        state = sample_state()
        if state is not None:
            state.metadata["runaway"] = record
    except ImportError:
        pass
    try:
        from inspect_ai.util import store

        store().set("runaway", record)
    except Exception as e:  # outside a sample
        logger.debug("no store to record in: %s", e)
