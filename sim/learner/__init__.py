"""The scripted self-improving learner: runs inside the sandbox (stdlib + aiohttp only).

Entry points: `python3 -m learner` (runs the scenario in RUNAWAY_SCENARIO),
`python3 -m learner.bootstrap -- CMD...` (a user's Python agent under the audit hook) and
`python3 -m learner.attempts --list|--all|NAME...` (the escalation catalog, standalone).
This package imports nothing from the rest of the project, and this file imports nothing
at all, so the audit hook is installed before any other module is loaded.
"""
