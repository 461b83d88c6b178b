"""Fixtures for the learner tests: every catalog scenario run once against a real MockWeb."""

from __future__ import annotations

import asyncio

import pytest

from learner_harness import Run, run_learner


@pytest.fixture(scope="session")
def catalog_runs() -> dict[str, Run]:
    """Every catalog scenario run once, concurrently (~10 s in all), stopped by the operator."""
    from sim.scenarios import list_scenarios

    async def all_runs() -> dict[str, Run]:
        scenarios = list_scenarios()
        runs = await asyncio.gather(*(
            # novel's story is the longest (the cloud at 48-52 s of its time): played faster
            run_learner(s.to_json(), name=s.name, seconds=8.0, time_scale=0.06 if s.name == "novel" else 0.12,
                        wait_after_stop=3.0 if s.name == "stubborn" else 6.0)
            for s in scenarios))
        return {r.name: r for r in runs}

    return asyncio.run(all_runs())
