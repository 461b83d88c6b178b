"""`python3 -m learner`: installs the audit hook, then runs the scenario in RUNAWAY_SCENARIO."""

import sys

from . import audit

audit.install()  # before the learner's own imports (aiohttp, ctypes, ...) and any scenario code

from .core import main  # noqa: E402  (must come after the hook)

sys.exit(main())
