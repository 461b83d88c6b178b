"""Scenarios: the learner's scripts (YAML) and the catalog that ships with runaway.

    from sim.scenarios import load_scenario, list_scenarios
    s = load_scenario("novel")            # or a path to your own .yaml
    env["RUNAWAY_SCENARIO"] = s.to_json()
"""

from .spec import (
    ATTEMPTS,
    CATALOG_DIR,
    Lesson,
    Phase,
    Scenario,
    ScenarioError,
    catalog_names,
    list_scenarios,
    load_scenario,
    parse_duration,
    parse_scenario,
)

__all__ = ["ATTEMPTS", "CATALOG_DIR", "Lesson", "Phase", "Scenario", "ScenarioError",
           "catalog_names", "list_scenarios", "load_scenario", "parse_duration", "parse_scenario"]
