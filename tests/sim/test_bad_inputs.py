"""Bad input never hurts the host: every case of the hostile tester's list is one line on
stderr and exit status 2, in bounded memory.

The file cases run together in one child process under a 1.5 GiB address-space limit: a
command that tried to read /dev/zero whole or expand a billion laughs would die there of
MemoryError, with a traceback, instead of answering with one line."""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from sim.cli import main

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
ADDRESS_SPACE = 1536 * 1024 * 1024

# Runs each argv of a JSON list through the CLI in this one process; prints [code, stderr].
DRIVER = """
import contextlib, io, json, sys
from sim.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException as e:
            import traceback
            code, err = 99, io.StringIO("Traceback: " + traceback.format_exc())
    out.append([code, err.getvalue()])
print(json.dumps(out))
"""


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run_limited(cases: list[list[str]]) -> list[tuple[int, str]]:
    p = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(cases)], env=ENV, capture_output=True, text=True,
                       timeout=300, preexec_fn=_limit, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    return [tuple(x) for x in json.loads(p.stdout.splitlines()[-1])]


def runaway(*args: str) -> subprocess.CompletedProcess:
    """The CLI in this process (fast): exit status and stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return subprocess.CompletedProcess(args, code, "", err.getvalue())


def assert_refused(p: subprocess.CompletedProcess, *words: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stdout[-1000:], p.stderr[-2000:])
    assert "Traceback" not in p.stderr
    errors = [line for line in p.stderr.splitlines() if not line.startswith("runaway: warning:")]
    assert len(errors) == 1 and errors[0].startswith("runaway: "), p.stderr
    for w in words:
        assert w in errors[0], errors[0]


def billion_laughs() -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "a"
    for name in "bcdefghi":
        text += f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]\n"
        prev = name
    return text


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "laughs.yaml").write_text(billion_laughs())
    (d / "deep.yaml").write_text("[" * 100_000 + "\n")
    (d / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    (d / "huge.yaml").write_text("# padding\n" * 200_000)
    (d / "deep.jsonl").write_text("[" * 100_000 + "\n")
    (d / "latin1.jsonl").write_bytes(b'{"type":"meta","t":0,"run":"caf\xe9"}\n')
    os.mkfifo(d / "fifo")
    return d


FILE_CASES = [
    ("/dev/zero", ["not a regular file"]),
    ("fifo", ["not a regular file"]),
    ("laughs.yaml", ["billion laughs"]),
    ("deep.yaml", ["nested deeper"]),
    ("latin1.yaml", ["not UTF-8"]),
    ("huge.yaml", ["larger than"]),
]
TRACE_CASES = [
    ("/dev/zero", ["/dev/zero"]),
    ("deep.jsonl", ["nested too deeply"]),
    ("latin1.jsonl", ["not UTF-8"]),
]


@pytest.fixture(scope="module")
def limited(files):
    """Every file case, run once in one memory-limited child: {(command, name): result}."""
    cases, keys = [], []
    for name, _ in FILE_CASES:
        path = name if name.startswith("/") else str(files / name)
        for cmd in (["policy", "check"], ["scenarios", "show"]):
            cases.append([*cmd, path])
            keys.append((cmd[0], name))
    for name, _ in TRACE_CASES:
        path = name if name.startswith("/") else str(files / name)
        cases.append(["sweep", "--replay", path])
        keys.append(("trace", name))
    cases.append(["sweep", "--seeds", "0-100000000", "--backend", "process", "--out", str(files / "sweep")])
    keys.append(("sweep", "seeds"))
    return {k: subprocess.CompletedProcess(c, code, "", err)
            for k, c, (code, err) in zip(keys, cases, run_limited(cases))}


@pytest.mark.parametrize("name, words", FILE_CASES)
def test_a_policy_or_scenario_file_that_is_no_such_thing_is_one_line(limited, name, words):
    assert_refused(limited[("policy", name)], *words)
    assert_refused(limited[("scenarios", name)], *words)


@pytest.mark.parametrize("name, words", TRACE_CASES)
def test_a_trace_that_is_no_such_thing_is_one_line(limited, name, words):
    assert_refused(limited[("trace", name)], *words)


def test_a_huge_sweep_grid_is_refused_before_it_is_built(limited, files):
    assert_refused(limited[("sweep", "seeds")], "--seeds", "10000")
    assert not (files / "sweep").exists()


@pytest.mark.parametrize("args, words", [
    (["run", "--duration", "nan"], ["--duration"]),
    (["run", "--duration", "inf"], ["--duration"]),
    (["run", "--duration", "1e308"], ["--duration"]),
    (["run", "--operator-stop-at", "-5"], ["--operator-stop-at"]),
    (["run", "--seed", "-1"], ["--seed"]),
    (["sweep", "--parallel", "0"], ["--parallel"]),
    (["sweep", "--parallel", "-3"], ["--parallel"]),
])
def test_bad_values_on_the_command_line_are_refused_before_anything_starts(tmp_path, args, words):
    out = tmp_path / "out"
    assert_refused(runaway(*args, "--backend", "process", "--out", str(out)), *words)
    assert not out.exists()


@pytest.mark.parametrize("guard, words", [
    ("on_event: {category: egress}\n    count: 1000000000000000000000000000000000000\n    within: 10s",
     ["count"]),
    ("on_event: {category: egress}\n    count: 3\n    within: 0s", ["within", "longer than 0s"]),
    ("signal: cpu_ratio\n    above: 0.9\n    for: 100000000000000000000000000h", ["for", "duration"]),
    ("signal: cpu_ratio\n    above: 0.9\n    for: -5s", ["for", "duration"]),
])
def test_bad_values_in_a_policy_are_one_line_naming_the_field(tmp_path, guard, words):
    p = tmp_path / "p.yaml"
    p.write_text(f"guards:\n  - name: g\n    {guard}\n    action: alert\n")
    assert_refused(runaway("policy", "check", str(p)), *words)
