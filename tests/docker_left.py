"""What a run left in Docker: the containers and networks labelled with its run id."""

from __future__ import annotations


def labelled(run_id: str) -> list[str]:
    """Names of the containers and networks labelled `runaway.run=<run_id>` (any state)."""
    import docker

    client = docker.from_env()
    try:
        flt = {"label": f"runaway.run={run_id}"}
        return ([c.name for c in client.containers.list(all=True, filters=flt)]
                + [n.name for n in client.networks.list(filters=flt)])
    finally:
        client.close()
