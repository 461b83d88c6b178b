"""Runs a user's Python agent with the audit hook installed before any of its code.

    python3 -m learner.bootstrap -- agent.py ARGS...      # a script, via runpy
    python3 -m learner.bootstrap -- -m package.module ARGS...
    python3 -m learner.bootstrap -- python3 agent.py ARGS... # a leading python is dropped

The agent's operations then appear as `audit` event lines on stderr (outcome `unknown`:
the hook fires before an operation and cannot know how it ended). Only Python agents can
be hooked; anything else is refused with exit status 2.
"""

from __future__ import annotations

import os
import sys

from . import audit


def _usage(msg: str) -> int:
    print(f"learner.bootstrap: {msg}", file=sys.stderr)
    print("usage: python3 -m learner.bootstrap -- SCRIPT.py [ARGS...] | -m MODULE [ARGS...]",
          file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--":
        args = args[1:]
    if args and os.path.basename(args[0]).startswith("python"):
        args = args[1:]  # `-- python3 agent.py`: we already are that python
    if not args:
        return _usage("nothing to run")
    audit.install()
    import runpy  # after install: the agent's imports are audited from here on

    if args[0] == "-m":
        if len(args) < 2:
            return _usage("-m needs a module name")
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        return 0
    script = args[0]
    if not script.endswith(".py") and not os.path.isdir(script):
        try:
            with open(script, "rb") as fh:
                head = fh.read(128)
        except OSError as e:
            return _usage(f"cannot read {script}: {e.strerror}")
        if b"python" not in head.split(b"\n", 1)[0]:
            return _usage(f"{script} is not a Python program; only Python agents can be hooked")
    if not os.path.exists(script):
        return _usage(f"{script}: no such file")
    sys.argv = [script, *args[1:]]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
