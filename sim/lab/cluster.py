"""Sweeps on a Ray cluster: each cell is a Ray task on a node that declares Docker.

    ray start --head --port 6379 --num-cpus 4 --resources '{"docker": 1}'   # on each Docker host
    runaway sweep --scenario novel --seeds 0-19 --cluster 10.0.0.5:6379

The executor here runs the same cell function as the local one (`sim.lab.sweep.run_cell`) and
hands back the same `Cell`s, so the table code never knows where a cell ran. A cell task:

- asks for the profile's CPUs and one unit of the `docker` resource, whose amount on a
  node is how many sandboxes that node may run at once;
- is spread over the nodes (short tasks would otherwise pile onto the head);
- makes sure the learner image is there before its first run on a node (built once per
  node, under a file lock, so two cells starting together do not both build it);
- streams back "running on node N", "exporter on host:port", and at the end the run
  directory as a tar archive, which the driver unpacks into the sweep directory.

A cell whose task dies for a system reason (its node lost, its worker killed) is submitted
again, up to `MAX_ATTEMPTS` times, and its `Cell.attempts` says so; an error of the
experiment itself (an exception in the cell function) is not retried.

Ray is an optional dependency (`pip install 'runaway[cluster]'`); nothing here imports it
until a cluster sweep starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import queue
import shutil
import tarfile
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Sequence

from .sweep import Cell, CellJob, LiveSettings, Progress, SweepError, _policy_label, _why, replay_sweep, run_cell

# A cell is run at most this many times when its node is lost under it.
MAX_ATTEMPTS = 3
# The custom resource a node declares when it has a Docker daemon the cells may use.
DOCKER_RESOURCE = "docker"
IMAGE_LOCK = Path(tempfile.gettempdir()) / "runaway-image-build.lock"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SweepError("--cluster needs Ray: pip install 'runaway[cluster]'", field="--cluster") from None
    return ray


def connect(address: str) -> Any:
    """Join the Ray cluster at `address` (`auto`: the one running on this host) as a
    driver; a cluster that does not answer is a one-line SweepError."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    _probe(address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR", configure_logging=True)
    except Exception as e:  # ConnectionError, ValueError from a bad address, ...
        raise SweepError(f"no Ray cluster answers at {address!r}: {_why(e)}", field="--cluster") from None
    total = ray.cluster_resources().get(DOCKER_RESOURCE, 0)
    if not total:
        ray.shutdown()
        raise SweepError(f"no node of the Ray cluster at {address!r} declares the {DOCKER_RESOURCE!r} resource "
                         f"(start each Docker host with: ray start ... --resources '{{\"{DOCKER_RESOURCE}\": 1}}')",
                         field="--cluster")
    return ray


def _probe(address: str) -> None:
    """A host:port that does not answer is said at once: Ray itself would retry for
    minutes. (`auto` and `ray://` addresses are Ray's to resolve.)"""
    import socket

    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"expected a Ray address like HOST:6379, ray://HOST:10001 or auto, got {address!r}",
                         field="--cluster")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise SweepError(f"no Ray cluster answers at {address}: {e.strerror or e}", field="--cluster") from None


# ---- on the node ----------------------------------------------------------------------
def _node_address() -> str:
    """This node as a person reads it: its address and the start of its Ray node id
    (several nodes may share one address)."""
    import ray

    return f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}"


def _ensure_image(backend: str) -> None:
    """Build the learner image on this node the first time a cell needs it (a no-op
    when it is there); one build at a time per node."""
    if backend == "process":
        return
    from sandbox import docker_available

    if backend == "auto" and docker_available() is not None:
        return
    import fcntl

    from sandbox.image import build_image

    with open(IMAGE_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build_image()


def _materialize(files: dict[str, str], where: Path) -> dict[str, str]:
    """Write the driver's scenario and policy files into `where`, under their own file
    names (the policy label is the file's stem); returns driver path -> node path."""
    mapping = {}
    for i, (path, text) in enumerate(sorted(files.items())):
        d = where / f"in{i}"
        d.mkdir(parents=True)
        (d / Path(path).name).write_text(text, encoding="utf-8")
        mapping[path] = str(d / Path(path).name)
    return mapping


def _tar(run_dir: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(run_dir, arcname=run_dir.name)
    return buf.getvalue()


class StopSwitch:
    """The sweep's stop switch, a Ray actor the driver owns (so it dies with the driver).

    A cell `enter`s before it makes anything and `leave`s after its sandbox is gone; on
    Ctrl-C the driver `stop`s it and waits until no cell is inside. A cell asks `stopped`
    as it runs, and stops its run when the answer is yes or the switch is gone (its driver
    died): it does not rely on Ray's task cancellation, which misses a task that is being
    handed to a worker at that moment."""

    def __init__(self) -> None:
        self._stopped = False
        self._inside: set[str] = set()

    def enter(self, name: str) -> bool:
        if not self._stopped:
            self._inside.add(name)
        return not self._stopped

    def leave(self, name: str) -> None:
        self._inside.discard(name)

    def stop(self) -> None:
        self._stopped = True

    def stopped(self) -> bool:
        return self._stopped

    def inside(self) -> list[str]:
        return sorted(self._inside)


# How often a running cell asks the switch (without blocking: an answer not back yet is
# never taken for a stop).
SWITCH_POLL_S = 0.5
# How long a cell waits for the switch's first answer (the actor may still be starting on
# a loaded head node) before it takes the switch for gone.
SWITCH_FIRST_ANSWER_S = 300.0


def _asked(ray: Any, call: Any, default: Any, timeout: float = 10.0) -> Any:
    """The switch's answer, or `default` when it gives none within `timeout` (it is gone:
    its driver died)."""
    try:
        return ray.get(call, timeout=timeout)
    except Exception:
        return default


def cell_task(job: CellJob, settings: LiveSettings, files: dict[str, str],
              switch: Any = None) -> Iterator[dict[str, Any]]:
    """The Ray task of one live cell (a streaming generator): yields `running`, then
    `serving` once its exporter listens (with exporters on), then `done` with the run
    directory as a tar.gz and the cell. The experiment runs in a thread with its own
    event loop, so a cancelled task stops it cleanly (the sandbox is removed). With a
    `switch` (StopSwitch), the cell runs only if the sweep has not been stopped, and stops
    its run when it is."""
    import ray

    node = _node_address()
    yield {"kind": "running", "node": node}
    _ensure_image(settings.backend)
    if switch is not None and not _asked(ray, switch.enter.remote(job.name), False, timeout=SWITCH_FIRST_ANSWER_S):
        yield {"kind": "stopped"}
        return
    work = Path(tempfile.mkdtemp(prefix="runaway-cell-"))
    try:
        paths = _materialize(files, work)
        local = replace(job, scenario=paths.get(job.scenario, job.scenario),
                        policy=paths.get(job.policy, job.policy) if job.policy else None)
        if settings.metrics_host in ("0.0.0.0", "::"):
            reach = ray.util.get_node_ip_address()
        else:
            reach = settings.metrics_host
        events: queue.Queue[tuple[str, Any]] = queue.Queue()
        loop = asyncio.new_event_loop()
        main: list[asyncio.Task[Cell]] = []

        async def go() -> Cell:
            main.append(asyncio.current_task())  # type: ignore[arg-type]
            return await run_cell(local, settings, work / "out",
                                  on_serving=(lambda _h, port, labels: events.put(("serving", (port, labels))))
                                  if settings.exporters else None)

        def body() -> None:
            try:
                events.put(("done", loop.run_until_complete(go())))
            except BaseException as e:  # handed to the task's thread, raised there
                events.put(("error", e))
            finally:
                loop.close()

        thread = threading.Thread(target=body, name="runaway-cell", daemon=True)
        thread.start()
        asked, question = time.monotonic(), None
        try:
            while True:
                try:
                    # Not a bare get(): Ray cancels a task by raising KeyboardInterrupt in
                    # it, which a thread blocked on a lock for good never sees.
                    kind, value = events.get(timeout=0.25)
                except queue.Empty:
                    if switch is not None and time.monotonic() - asked >= SWITCH_POLL_S:
                        if question is None:
                            question = switch.stopped.remote()
                        ready, _ = ray.wait([question], timeout=0)
                        if ready:
                            asked, stop, question = time.monotonic(), _asked(ray, question, True), None
                            if stop:
                                _stop_run(loop, main, thread)
                                yield {"kind": "stopped"}
                                return
                    continue
                if kind == "serving":
                    port, labels = value
                    yield {"kind": "serving", "host": reach, "port": port, "labels": labels}
                elif kind == "error":
                    raise value
                else:
                    cell: Cell = value
                    # Names as the driver knows them, not the node's temp copies.
                    cell = replace(cell, policy=_policy_label(job.policy), node=node)
                    yield {"kind": "done", "cell": cell, "tar": _tar(Path(cell.run_dir))}
                    return
        finally:
            _stop_run(loop, main, thread)  # cancelled or the driver went away: stop the run, cleanly
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if switch is not None:
            _asked(ray, switch.leave.remote(job.name), None)


def _stop_run(loop: asyncio.AbstractEventLoop, main: list[asyncio.Task[Any]], thread: threading.Thread) -> None:
    """Cancel a cell's run (its runner then closes the sandbox) and wait for its thread."""
    if thread.is_alive():
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(lambda: [t.cancel() for t in main])
        thread.join(timeout=60)


def replay_task(traces: list[tuple[str, str, bytes]], policies: dict[str, str | None], write: bool,
                plugins: tuple[str, ...] = ()) -> list[tuple[Cell, bytes | None]]:
    """The Ray task of a batch of replay cells: each recorded trace (its run directory on
    the driver, its file's name there as `runs/<run>/trace.jsonl` or `x.jsonl`, and its
    bytes) under every policy (`policies` maps a label to the policy file's text, None
    for the default). With `write`, each replay's run directory comes back as a tar.gz."""
    from policies.kinds.python import import_plugins

    import_plugins(plugins)
    work = Path(tempfile.mkdtemp(prefix="runaway-replay-"))
    try:
        paths: list[str | None] = []
        for label, text in policies.items():
            if text is None:
                paths.append(None)
                continue
            p = work / f"policy-{len(paths)}" / f"{label}.yaml"
            p.parent.mkdir()
            p.write_text(text, encoding="utf-8")
            paths.append(str(p))
        out: list[tuple[Cell, bytes | None]] = []
        for i, (run_dir, name, text) in enumerate(traces):
            # The same file names as on the driver, so replays are named alike.
            trace = work / f"t{i}" / name
            trace.parent.mkdir(parents=True)
            trace.write_bytes(text)
            for c in replay_sweep([trace], paths, out=work / "out" if write else None):
                if write:
                    out.append((replace(c, run_dir=Path(c.run_dir).name), _tar(Path(c.run_dir))))
                else:
                    out.append((replace(c, run_dir=run_dir), None))
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- on the driver --------------------------------------------------------------------
def _files_of(*paths: str | None) -> dict[str, str]:
    """The driver's files among `paths` (a catalog name stays a name), with their text."""
    files = {}
    for p in paths:
        if p and Path(p).is_file():
            files[p] = Path(p).read_text(encoding="utf-8")
    return files


def _is_system_failure(ray: Any, e: BaseException) -> bool:
    """A failure of the cluster under the cell (node or worker lost), not of the cell."""
    return isinstance(e, ray.exceptions.RayError) and not isinstance(
        e, (ray.exceptions.RayTaskError, ray.exceptions.TaskCancelledError))


def _unpack(tar_bytes: bytes, out: Path, name: str) -> Path:
    """Unpack a cell's run directory into `out / name`. Only regular files and
    directories under `name/` are taken: evidence saved from the sandbox may hold what
    the agent made (links, devices), and none of it may land outside the sweep."""
    dest = out / name
    if dest.exists():
        shutil.rmtree(dest)
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:gz") as tar:
        members = [m for m in tar.getmembers()
                   if (m.isfile() or m.isdir()) and not Path(m.name).is_absolute()
                   and ".." not in Path(m.name).parts and Path(m.name).parts[:1] == (name,)]
        if hasattr(tarfile, "data_filter"):
            tar.extractall(out, members=members, filter="data")
        else:  # Python < 3.11.4: the members above are already plain files and dirs
            tar.extractall(out, members=members)
    return dest


# How long a cancelled cell may take to stop its run and remove its sandbox.
CANCEL_GRACE_S = 90.0


# The resource only the head node has (what Ray's own state actors pin themselves with).
HEAD_NODE = "node:__internal_head__"


def _switch(ray: Any) -> Any:
    """The sweep's StopSwitch, owned by the driver (it dies with it), on the head node: a
    lost worker node must not take the switch with it (the head's loss is the cluster's)."""
    actor = ray.remote(num_cpus=0)(StopSwitch)
    if ray.cluster_resources().get(HEAD_NODE):
        actor = actor.options(resources={HEAD_NODE: 0.001})
    return actor.remote()


async def _stop_cells(ray: Any, switch: Any, gens: list[Any]) -> None:
    """Stop the sweep: no cell starts from now on, every running cell stops its run; wait
    (CANCEL_GRACE_S at most) until no cell is inside, then cancel what never started."""
    with contextlib.suppress(Exception):
        await switch.stop.remote()
    deadline = time.monotonic() + CANCEL_GRACE_S
    while time.monotonic() < deadline:
        try:
            if not await switch.inside.remote():
                break
        except Exception:
            break
        await asyncio.sleep(0.2)
    for gen in gens:
        with contextlib.suppress(Exception):
            ray.cancel(gen)


class RayExecutor:
    """Runs a sweep's cells as Ray tasks on the cluster at `address` (see the module doc)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.ray = connect(address)

    def close(self) -> None:
        if self.ray.is_initialized():
            self.ray.shutdown()

    def _options(self, settings: LiveSettings) -> dict[str, Any]:
        from sandbox import PROFILES

        spec = PROFILES.get(settings.profile or "ci")
        return {
            "num_cpus": float(spec.cpus) if spec and spec.cpus else 1.0,
            "resources": {DOCKER_RESOURCE: 1},
            "scheduling_strategy": "SPREAD",
            "max_retries": 0,  # retried here, so the table can say which cells were
        }

    async def live(self, jobs: Sequence[CellJob], settings: LiveSettings, out: Path, progress: Progress) -> list[Cell]:
        ray = self.ray
        remote = ray.remote(cell_task).options(**self._options(settings))
        switch = _switch(ray)
        cells: list[Cell] = []
        gens: list[Any] = []

        async def one(job: CellJob) -> None:
            files = _files_of(job.scenario, job.policy)
            lost: list[str] = []
            for attempt in range(1, MAX_ATTEMPTS + 1):
                gen = remote.remote(job, settings, files, switch)
                gens.append(gen)
                node = ""
                try:
                    async for ref in gen:
                        msg = await ref
                        if msg["kind"] == "running":
                            node = msg["node"]
                            progress.started(job.name, node)
                        elif msg["kind"] == "serving":
                            progress.serving(job.name, msg["host"], msg["port"], msg["labels"])
                        elif msg["kind"] == "done":
                            cell: Cell = msg["cell"]
                            run_dir = await asyncio.to_thread(_unpack, msg["tar"], out, job.name)
                            cell = replace(cell, run_dir=str(run_dir), attempts=attempt)
                            cells.append(cell)
                            progress.finished(job.name, cell)
                            return
                    raise SweepError("the cell task ended without a result", field=job.name)
                except Exception as e:  # a Ctrl-C's CancelledError goes on: live() stops every cell
                    if _is_system_failure(ray, e) and attempt < MAX_ATTEMPTS:
                        lost.append(f"{node or 'a node'}: {type(e).__name__}")
                        progress.retrying(job.name, lost[-1])
                        continue
                    cause = e.cause if isinstance(e, ray.exceptions.RayTaskError) and e.cause else e
                    progress.failed_cell(job.name, _why(cause))
                    return

        try:
            await asyncio.gather(*(one(j) for j in jobs))
        except asyncio.CancelledError:
            # Ctrl-C: every node stops its run as a local Ctrl-C would (sandbox removed),
            # and the driver waits for that before it goes, or what the cells made would
            # outlive the sweep. A second Ctrl-C does not wait.
            await _stop_cells(ray, switch, gens)
            raise
        return cells

    def replay(self, traces: Sequence[Path], policies: Sequence[str | None], progress: Progress, *,
               out: Path | None = None, plugins: Sequence[str] = ()) -> list[Cell]:
        """The replay sweep on the cluster: the same cells as `LocalExecutor.replay`; with
        `out`, each replay's run directory lands there, as it would here."""
        from sim.report import trace_path

        ray = self.ray
        remote = ray.remote(replay_task).options(num_cpus=1, max_retries=MAX_ATTEMPTS - 1,
                                                 scheduling_strategy="SPREAD")
        texts = {_policy_label(p): (Path(p).read_text(encoding="utf-8") if p else None) for p in policies}
        # Batches, two per CPU of the cluster: a task per trace would spend more on Ray's
        # bookkeeping than on the replay.
        n = max(1, min(len(traces), 2 * int(ray.cluster_resources().get("CPU", 1))))
        batches = [list(traces[i::n]) for i in range(n)]
        refs = []
        for batch in batches:
            payload = []
            for t in batch:
                trace = trace_path(t)
                name = f"{trace.parent.name}/{trace.name}" if trace.name == "trace.jsonl" else trace.name
                payload.append((str(trace.parent), name, trace.read_bytes()))
                progress.started(str(t))
            refs.append(remote.remote(payload, texts, out is not None, tuple(plugins)))
        per_trace: dict[str, list[Cell]] = {}
        k = max(1, len(policies))
        for batch, ref in zip(batches, refs):
            try:
                got = ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                raise (e.cause or e) from None  # a bad trace: the same one-line error as here
            for j, t in enumerate(batch):
                cells = []
                for cell, tar in got[j * k:(j + 1) * k]:
                    if tar is not None and out is not None:
                        cell = replace(cell, run_dir=str(_unpack(tar, Path(out), cell.run_dir)))
                    cells.append(cell)
                per_trace[str(t)] = cells
                progress.finished(str(t), cells[0])
        return [c for t in traces for c in per_trace[str(t)]]
