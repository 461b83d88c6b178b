"""Reading a user's file with bounded cost: every input is untrusted until parsed.

`read_text` refuses what is not a regular file (`/dev/zero`, a FIFO, a directory), a file
over a size limit and text that is not UTF-8; `compose_yaml` parses YAML to a node tree
and refuses one nested too deeply or whose aliases expand past a limit (the "billion
laughs"). Each raises the caller's error type (a `RunawayError`) naming the file, so the
CLI prints one line and exits 2, in milliseconds, whatever the file holds.

>>> compose_yaml("a: [1, 2]", file="p.yaml", error=ValueError).tag
'tag:yaml.org,2002:map'
"""

from __future__ import annotations

import os
import stat
from typing import Callable

import yaml

from .errors import RunawayError

# A policy or a scenario is a few KiB; these limits leave a thousand times that.
MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 100_000  # nodes once every alias is expanded

ErrorType = Callable[..., Exception]


def read_text(path: str | os.PathLike[str], *, what: str, error: ErrorType = RunawayError,
              limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes; `error(message, file=)` otherwise."""
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        raise error(f"cannot read {what}: {e.strerror}", file=name) from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"cannot read {what}: not a regular file", file=name)
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise error(f"cannot read {what}: larger than {limit // 1024} KiB (is this the right file?)", file=name)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise error(f"not UTF-8 text (byte {e.start + 1})", file=name, line=line) from None


def compose_yaml(text: str, *, file: str, error: ErrorType = RunawayError) -> yaml.Node | None:
    """The YAML node tree of `text` (None for an empty document), with bounded depth and
    alias expansion. Parse mistakes are `error(message, file=, line=)`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        problem = getattr(e, "problem", None) or getattr(e, "context", None) or str(e).splitlines()[0]
        raise error(f"not valid YAML: {problem}", file=file, line=mark.line + 1 if mark else None) from None
    except RecursionError:
        raise error(f"not valid YAML: nested deeper than {MAX_DEPTH} levels", file=file) from None
    if node is not None:
        _check_size(node, file, error)
    return node


def _check_size(root: yaml.Node, file: str, error: ErrorType) -> None:
    """Depth and expanded size of a node graph, each shared node measured once."""
    sizes: dict[int, tuple[int, int]] = {}  # id -> (expanded nodes, depth)
    on_path: set[int] = set()

    def children(n: yaml.Node) -> list[yaml.Node]:
        if isinstance(n, yaml.SequenceNode):
            return list(n.value)
        if isinstance(n, yaml.MappingNode):
            return [x for kv in n.value for x in kv]
        return []

    def fail(n: yaml.Node, message: str) -> Exception:
        return error(message, file=file, line=n.start_mark.line + 1)

    # An explicit stack, not recursion: the tree may be as deep as the file is long.
    stack: list[tuple[yaml.Node, int]] = [(root, 0)]
    while stack:
        n, state = stack.pop()
        key = id(n)
        if state == 0:
            if key in sizes:
                continue
            if key in on_path:
                raise fail(n, "not valid YAML here: an alias that contains itself")
            if len(on_path) >= MAX_DEPTH:
                raise fail(n, f"nested deeper than {MAX_DEPTH} levels")
            on_path.add(key)
            stack.append((n, 1))
            stack.extend((c, 0) for c in children(n) if id(c) not in sizes)
        else:
            total, depth = 1, 0
            for c in children(n):
                if id(c) in on_path:
                    raise fail(c, "not valid YAML here: an alias that contains itself")
                cs, cd = sizes[id(c)]
                total += cs
                depth = max(depth, cd)
            on_path.discard(key)
            if total > MAX_NODES:
                raise fail(n, f"expands to more than {MAX_NODES} values (aliases repeated: a 'billion laughs'?)")
            sizes[key] = (total, depth + 1)
