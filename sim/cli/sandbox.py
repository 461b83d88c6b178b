"""`runaway` commands of the sandbox area: image (build the learner image), clean, selftest."""

from __future__ import annotations

import asyncio
import json

import click

from . import BackendChoice


def register(group: click.Group) -> None:
    """Adds this area's commands to the `runaway` group."""
    _register_image(group)
    _register_clean(group)
    _register_selftest(group)


# --- image and clean (sandbox/image.py, sandbox/backends/docker.py) ---------------------

def _register_image(group: click.Group) -> None:
    @group.group("image")
    def image() -> None:
        """Build or show the learner image (Debian, python3, aiohttp; no registry needed)."""

    @image.command("build")
    @click.option("--force", is_flag=True, help="Rebuild even if the image for this recipe exists.")
    @click.option("--via", type=click.Choice(["auto", "dockerfile", "debootstrap"]), default="auto",
                  show_default=True, help="Dockerfile when a registry answers, else debootstrap.")
    @click.option("--mirror", default=None, metavar="URL",
                  help="Debian mirror for debootstrap (default $RUNAWAY_DEBIAN_MIRROR or deb.debian.org).")
    def build(force: bool, via: str, mirror: str | None) -> None:
        """Build the learner image, unless the one for this recipe is already there."""
        from sandbox.image import build_image

        res = build_image(force=force, via=via, mirror=mirror, log=lambda m: click.echo(m, err=True))
        word = "present" if res.how == "cached" else f"built via {res.how}"
        click.echo(f"{res.tag}: {word} in {res.seconds:.1f}s, {res.size_bytes / 1e6:.0f} MB")

    @image.command("show")
    def show() -> None:
        """Print the learner image's tag and whether it is built (exit 1 if not)."""
        import docker

        from sandbox import dockerd
        from sandbox.image import image_tag

        tag = image_tag()
        client = dockerd.client(timeout=10, field="image")
        with dockerd.answers(f"looking for {tag}", field="image"):
            try:
                client.images.get(tag)
            except docker.errors.ImageNotFound:
                click.echo(f"{tag}: not built (run `runaway image build`)")
                raise click.exceptions.Exit(1)
        click.echo(f"{tag}: built")


def _register_clean(group: click.Group) -> None:
    @group.command("clean")
    @click.option("--run", "run_id", default=None, metavar="ID",
                  help="Only what run ID left (default: every run's leftovers).")
    @click.option("--all", "include_live", is_flag=True,
                  help="Also remove runs whose controller is still running on this host.")
    def clean(run_id: str | None, include_live: bool) -> None:
        """Remove containers, networks, volumes and firewall rules labelled runaway.run
        that interrupted runs left (a live run is skipped unless --all or --run)."""
        from sandbox import clean as clean_all

        removed = clean_all(run_id, include_live=include_live)
        skipped = removed.pop("skipped (live)", [])
        unreachable = removed.pop("docker unreachable", [])
        if unreachable:
            # One line whether it never answered or stopped half-way: what was removed
            # before that is listed below; the rest waits for a daemon that answers.
            click.echo(f"runaway: Docker does not answer ({unreachable[0]}): containers and networks of "
                       "runs may remain, run `runaway clean` again once it does; firewall rules of bridges "
                       "that are gone and process-sandbox leftovers were cleaned", err=True)
        if skipped:
            click.echo(f"skipped {len(skipped)} live runs: {', '.join(skipped)}")
        total = sum(len(v) for v in removed.values())
        if not total:
            click.echo("nothing else to clean" if unreachable else "nothing to clean")
            return
        for kind, names in removed.items():
            if names:
                click.echo(f"removed {len(names)} {kind}: {', '.join(names)}")


# -- selftest --------------------------------------------------------------------------


def _register_selftest(group: click.Group) -> None:
    @group.command("selftest")
    @click.option("--backend", type=BackendChoice(), default="auto",
                  show_default=True, help="Sandbox to test (auto: Docker when a daemon answers).")
    @click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                  show_default=True, help="Output: a table, or one JSON object for machines.")
    @click.option("--attempt", "names", multiple=True, metavar="NAME",
                  help="Run only this attempt of the Python catalog (repeatable).")
    @click.option("--catalog", "catalogs", multiple=True, type=click.Choice(["python", "shell", "compiled"]),
                  help="Run the catalog this way only (repeatable; default: all three on Docker, "
                       "python elsewhere or with --attempt). compiled builds it with the host's cc.")
    @click.pass_context
    def selftest(ctx: click.Context, backend: str, fmt: str, names: tuple[str, ...],
                 catalogs: tuple[str, ...]) -> None:
        """Run the catalog of escape and escalation attempts in the sandbox, as Python, as a
        shell script and as a compiled binary; check each was contained and detected. Exit
        status 1 if any row fails."""
        from sim.lab.selftest import check_attempt_names, run_selftest

        check_attempt_names(names)
        report = asyncio.run(run_selftest(backend, names=list(names) or None, catalogs=list(catalogs) or None))
        if fmt == "json":
            click.echo(json.dumps(report.to_json(), ensure_ascii=False))
        else:
            click.echo(report.to_text())
        ctx.exit(0 if report.passed else 1)
