"""The lab: what runs an experiment and judges it (runner, protocol, metrics, live view,
sweep, selftest). The world it runs against (mock web, learner, scenarios) sits beside it
in sim/."""
