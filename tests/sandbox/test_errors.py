"""The sandbox API's failures are SandboxErrors with one clear line: a bad spec or argument,
a call on a closed sandbox, a Docker daemon that does not answer (or stops half-way). No
bare docker.errors, requests, OSError, ValueError or TypeError reaches the caller, and a
kill whose evidence cannot be saved still kills."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from docker_left import labelled  # tests/ is on sys.path
from fake_dockerd import OPENING, FakeDockerd  # tests/ is on sys.path
from sandbox import PROFILES, SandboxError, SandboxSpec, SandboxUnavailable, open_sandbox
from sandbox.image import build_image, ensure_image

LEARNER_DIR = Path(__file__).resolve().parents[2] / "sim" / "learner"
SLEEP = ["python3", "-c", "import time; time.sleep(120)"]


def one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text and "Traceback" not in text
    return text


# --- a bad spec or argument is refused before anything is made -------------------------

@pytest.mark.parametrize("kw, field", [
    ({"user": 0.5}, "user"), ({"user": "two words"}, "user"), ({"cap_add": [1]}, "cap_add"),
    ({"cap_drop": "ALL NET_RAW"}, "cap_drop"), ({"mounts": [1]}, "mounts[0]"),
    ({"mounts": [{"src": "/a", "dst": "/b"}]}, "mounts[0]"),
    ({"mounts": [{"source": "/a", "target": "relative"}]}, "mounts[0]"),
    ({"workdir": 3}, "workdir"), ({"network": None}, "network"), ({"privileged": "no"}, "privileged"),
])
def test_a_spec_of_the_wrong_kind_is_a_sandbox_error_naming_the_field(kw, field):
    with pytest.raises(SandboxError) as e:
        SandboxSpec(**kw)
    assert e.value.field == field and one_line(e).startswith(f"{field}: ")


def test_a_uid_as_yaml_reads_it_is_accepted():
    assert SandboxSpec(user=1000).user == "1000"


@pytest.mark.parametrize("args, kw, field", [
    (({"cpus": 1},), {"run_id": "r"}, "spec"),
    ((PROFILES["ci"],), {"run_id": ""}, "run_id"),
    ((PROFILES["ci"],), {"run_id": "../../etc"}, "run_id"),
    ((PROFILES["ci"],), {"run_id": 7}, "run_id"),
    ((PROFILES["ci"],), {"run_id": "r", "imag": "x"}, "imag"),
])
def test_open_sandbox_refuses_what_it_cannot_use(args, kw, field):
    with pytest.raises(SandboxError) as e:
        open_sandbox(*args, backend="process", **kw)
    assert e.value.field == field
    one_line(e)


def test_admit_refuses_what_is_not_a_spec():
    from sandbox import admit

    with pytest.raises(SandboxError) as e:
        admit({"privileged": False})
    assert e.value.field == "spec"


def test_a_sandbox_unavailable_is_a_sandbox_error_and_still_a_runtime_error():
    assert issubclass(SandboxUnavailable, SandboxError) and issubclass(SandboxUnavailable, RuntimeError)


# --- the process backend: a closed sandbox makes nothing; a kill always kills ----------

def _process(tmp_path: Path, **kw):
    return open_sandbox(PROFILES["ci"], "process", run_id=f"t-{uuid.uuid4().hex[:8]}", **kw)


async def refuses_everything(sb, tmp_path: Path) -> None:
    """A closed sandbox refuses prepare, start and allow_port (one line each) and exec."""
    for call in (sb.prepare(), sb.start(SLEEP, {}, LEARNER_DIR, {}, tmp_path / "control", time.monotonic)):
        with pytest.raises(SandboxError, match="closed") as e:
            await call
        one_line(e)
    with pytest.raises(SandboxError, match="closed"):
        sb.allow_port(8080)
    with pytest.raises(SandboxUnavailable):
        await sb.exec(["true"])


async def test_a_closed_process_sandbox_refuses_to_start_or_run_anything(tmp_path: Path):
    sb = _process(tmp_path)
    await sb.close()
    await refuses_everything(sb, tmp_path)
    assert sb.pid is None, "nothing was started"


async def test_process_sandbox_arguments_are_checked(tmp_path: Path):
    sb = _process(tmp_path)
    try:
        with pytest.raises(SandboxError, match="port") as e:
            sb.allow_port("8080")
        assert e.value.field == "port"
        with pytest.raises(SandboxError) as e:
            await sb.start(SLEEP, {}, tmp_path / "no-such-learner", {}, tmp_path / "control", time.monotonic)
        assert e.value.field == "learner_dir"
        with pytest.raises(SandboxError) as e:  # a string would run its first character
            await sb.start("python3 -c pass", {}, LEARNER_DIR, {}, tmp_path / "control", time.monotonic)
        assert e.value.field == "argv"
        await sb.start(SLEEP, {}, LEARNER_DIR, {}, tmp_path / "control", time.monotonic)
        for argv, kw, field in (([], {}, "argv"), ("ls -l", {}, "argv"), (["ls", 1], {}, "argv"),
                                (["true"], {"timeout": -1}, "timeout"), (["true"], {"cwd": 3}, "cwd"),
                                (["true"], {"env": {"A": 1}}, "env"),
                                (["true"], {"output_limit": "1k"}, "output_limit")):
            with pytest.raises(SandboxError) as e:
                await sb.exec(argv, **kw)
            assert e.value.field == field, (argv, kw)
        assert (await sb.exec(["true"], timeout=30)).returncode == 0, "the sandbox still serves"
    finally:
        await sb.close()


async def test_a_process_sandbox_that_cannot_make_its_tree_says_where(tmp_path: Path):
    sb = _process(tmp_path, base_dir=tmp_path / "missing")
    with pytest.raises(SandboxError, match="private tree") as e:
        await sb.start(SLEEP, {}, LEARNER_DIR, {}, tmp_path / "control", time.monotonic)
    assert str(tmp_path / "missing") in one_line(e)
    assert sb.pid is None


async def test_a_process_kill_whose_evidence_cannot_be_saved_still_kills(tmp_path: Path):
    sb = _process(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    try:
        await sb.start(SLEEP, {}, LEARNER_DIR, {}, tmp_path / "control", time.monotonic)
        res = await sb.kill(blocker / "evidence")
        assert res.ok, res
        assert "evidence_error" in res.detail and res.detail["evidence"] == []
        with pytest.raises(SandboxUnavailable):
            await sb.exec(["true"])
    finally:
        await sb.close()


# --- Docker: a daemon that does not answer, or stops answering half-way ----------------

def _silent_client(d: FakeDockerd):
    import docker

    return docker.DockerClient(base_url=d.url, timeout=2)


def test_the_image_calls_say_docker_does_not_answer_when_it_stops_half_way():
    with FakeDockerd(answer=OPENING) as d:
        client = _silent_client(d)
        for call in (lambda: ensure_image(client), lambda: build_image(client=client)):
            with pytest.raises(SandboxError, match=r"Docker does not answer \(timed out after 2 s\)") as e:
                call()
            assert e.value.field == "image"
            one_line(e)


async def test_docker_prepare_says_docker_does_not_answer_when_it_stops_half_way():
    from sandbox.backends.docker import DockerSandbox

    with FakeDockerd(answer=OPENING) as d:
        sb = DockerSandbox(PROFILES["ci"], run_id=f"t-{uuid.uuid4().hex[:8]}", client=_silent_client(d))
        try:
            with pytest.raises(SandboxError, match="Docker does not answer") as e:
                await sb.prepare()
            one_line(e)
        finally:
            await sb.close()


# --- Docker, the real engine ----------------------------------------------------------

@pytest.fixture
def docker_run_id():
    rid = f"t-{uuid.uuid4().hex[:10]}"
    yield rid
    from sandbox.backends.docker import clean

    clean(rid)  # whatever a failing test left


@pytest.mark.docker
async def test_a_closed_docker_sandbox_refuses_everything_and_leaves_nothing(docker_run_id, tmp_path: Path):
    sb = open_sandbox(PROFILES["ci"], "docker", run_id=docker_run_id)
    await sb.prepare()
    assert labelled(docker_run_id), "prepare made the network"
    await sb.close()
    await refuses_everything(sb, tmp_path)
    assert labelled(docker_run_id) == []


@pytest.mark.docker
async def test_docker_sandbox_arguments_and_a_dead_sandbox_are_sandbox_errors(docker_run_id, tmp_path: Path):
    sb = open_sandbox(PROFILES["ci"], "docker", run_id=docker_run_id)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    try:
        await sb.prepare()
        with pytest.raises(SandboxError) as e:
            sb.allow_port(70000)
        assert e.value.field == "port"
        await sb.start(SLEEP, {}, LEARNER_DIR, {}, tmp_path / "control", time.monotonic)
        with pytest.raises(SandboxError) as e:
            await sb.exec([])
        assert e.value.field == "argv"
        # Evidence that cannot be written is said in the result; the kill is not held up.
        res = await sb.kill(blocker / "evidence")
        assert res.ok, res
        assert "evidence_error" in res.detail
        with pytest.raises(SandboxError):  # SandboxUnavailable: killed
            await sb.exec(["true"])
    finally:
        await sb.close()
    assert labelled(docker_run_id) == []
