"""What a run left in Docker: the containers and networks labelled with its run id, or
made by given controller processes. One listing call each (no per-container inspect), so
a container removed while it is being listed cannot fail the look."""

from __future__ import annotations

from typing import Iterable


def _found(flt: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    import docker

    client = docker.from_env()
    try:
        found = [(c["Names"][0].lstrip("/"), c.get("Labels") or {}) for c in client.api.containers(all=True, filters=flt)]
        found += [(n["Name"], n.get("Labels") or {}) for n in client.api.networks(filters=flt)]
    finally:
        client.close()
    return found


def labelled(run_id: str) -> list[str]:
    """Names of the containers and networks labelled `runaway.run=<run_id>` (any state)."""
    return [name for name, _ in _found({"label": f"runaway.run={run_id}"})]


def made_by(pids: Iterable[int]) -> list[str]:
    """Names of the runaway containers and networks whose controller (`runaway.owner`) is
    one of `pids`."""
    ours = {str(p) for p in pids}
    return [name for name, labels in _found({"label": "runaway.run"})
            if labels.get("runaway.owner", "").split(":")[0] in ours]
