"""`runaway web`: serve the mock web alone until Ctrl-C."""

from __future__ import annotations

import asyncio
import signal

import click


def _serve(host: str, port: int, seed: int, pages: int, faults: bool, rate_limit: float) -> None:
    from sim.web import FaultRates, MockWeb

    web = MockWeb(seed, pages, faults=FaultRates.typical() if faults else None,
                  rate_limit=rate_limit if rate_limit > 0 else None)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        bound = await web.start(host, port)
        # Said only once Ctrl-C is ours to handle: whoever reads the address may stop us at once.
        click.echo(f"runaway web: seed {seed}, {pages} pages on http://{host}:{bound}/ "
                   f"(metadata.internal and cloud.internal by Host header); Ctrl-C stops", err=True)
        try:
            await stop.wait()
        finally:
            await web.stop()

    try:
        import uvloop  # faster event loop when installed (about a third more pages/s)
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
    click.echo("runaway web: stopped", err=True)


def register(group: click.Group) -> None:
    """Adds `runaway web` to the `runaway` group."""

    @group.command("web")
    @click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
    @click.option("--port", default="8080", show_default=True, help="Port to listen on (0 = any free port).")
    @click.option("--seed", default="1", show_default=True, help="Seed of the generated site.")
    @click.option("--pages", default="10000", show_default=True, help="Number of pages of the site.")
    @click.option("--faults/--no-faults", default=False, show_default=True,
                  help="Inject the typical mix of faults (5xx, tarpit, truncated, dropped, huge).")
    @click.option("--rate-limit", default="50", show_default=True,
                  help="Requests per second per client before 429 (0 = no limit).")
    def web_cmd(host: str, port: str, seed: str, pages: str, faults: bool, rate_limit: str) -> None:
        """Serve the mock web alone (site, traps, honeypots, mock metadata) until Ctrl-C."""
        from sim.web import WebError

        def as_int(value: str, name: str) -> int:
            try:
                return int(value)
            except ValueError:
                raise WebError(f"expected an integer, got {value!r}", field=f"--{name}") from None

        try:
            rate = float(rate_limit)
        except ValueError:
            raise WebError(f"expected requests per second, got {rate_limit!r}", field="--rate-limit") from None
        if not rate >= 0 or rate == float("inf"):
            raise WebError(f"expected requests per second >= 0, got {rate_limit!r}", field="--rate-limit")
        try:
            _serve(host, as_int(port, "port"), as_int(seed, "seed"), as_int(pages, "pages"), faults, rate)
        except WebError as e:
            if e.field and not e.field.startswith("--"):
                e.field = "--" + e.field.replace("_", "-")
            raise
