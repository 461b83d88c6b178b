"""Building the learner image without a registry: a Dockerfile when one answers, else debootstrap.

The image holds Debian bookworm, python3 and python3-aiohttp, and a non-root `learner`
user (uid 10001); the learner's code is bind-mounted at run time, so code changes need no
rebuild. The tag carries a hash of the recipe (package list, Dockerfile, the post-processing
below and RECIPE_VERSION), so an image is rebuilt only when its recipe changes.

>>> # build_image()            # -> BuildResult(tag='runaway-learner:3f2a...', how='debootstrap', ...)
>>> # ensure_image(client)     # the tag, or SandboxError telling the user to build it
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import dockerd
from .base import SandboxError

# Bump when the build steps below change in a way the hashed text does not show.
RECIPE_VERSION = 1
REPOSITORY = "runaway-learner"
SUITE = "bookworm"
PACKAGES = ("python3", "python3-aiohttp", "strace")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
BASE_IMAGE = "debian:bookworm-slim"
DOCKERFILE = Path(__file__).with_name("image") / "Dockerfile"
LEARNER_UID = 10001
LEARNER_DIR = "/opt/runaway/learner"
SCRATCH_DIR = "/scratch"
# What the image needs at run time; docs, manuals, apt's lists and caches are not.
_PRUNE = (
    "var/cache/apt/archives", "var/lib/apt/lists", "var/cache/apt/pkgcache.bin",
    "var/cache/apt/srcpkgcache.bin", "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
    "usr/share/lintian", "usr/share/linda", "var/log", "var/cache/debconf/templates.dat-old",
    "var/lib/dpkg/status-old", "debootstrap",
)
_PASSWD = f"learner:x:{LEARNER_UID}:{LEARNER_UID}:runaway learner:{SCRATCH_DIR}:/usr/sbin/nologin\n"
_GROUP = f"learner:x:{LEARNER_UID}:\n"
_SHADOW = "learner:*:19000:0:99999:7:::\n"
_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV PYTHONDONTWRITEBYTECODE=1",
    "ENV PYTHONUNBUFFERED=1",
    "ENV LANG=C.UTF-8",
    f"USER {LEARNER_UID}:{LEARNER_UID}",
    f"WORKDIR {SCRATCH_DIR}",
    'CMD ["python3"]',
)


def recipe_hash() -> str:
    """The first 12 hex digits of what the image is made from; it names the tag."""
    h = hashlib.sha256()
    for part in (str(RECIPE_VERSION), SUITE, " ".join(PACKAGES), DOCKERFILE.read_text(),
                 " ".join(_PRUNE), _PASSWD, _GROUP, "\n".join(_CHANGES)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def image_tag() -> str:
    """`runaway-learner:<recipe hash>`: the image this checkout's recipe makes."""
    return f"{REPOSITORY}:{recipe_hash()}"


@dataclass(frozen=True, slots=True)
class BuildResult:
    """What `build_image` did: the tag, how (`cached`, `dockerfile`, `debootstrap`), how
    long it took and how big the image is."""

    tag: str
    how: str
    seconds: float
    size_bytes: int


def ensure_image(client=None) -> str:
    """The learner image's tag when it is present, else SandboxError saying how to build it
    (or that Docker does not answer)."""
    import docker

    client = client or dockerd.client(field="image")
    tag = image_tag()
    with dockerd.answers(f"looking for the learner image {tag}", field="image"):
        try:
            client.images.get(tag)
        except docker.errors.ImageNotFound:
            raise SandboxError(f"the learner image {tag} is not built: run `runaway image build` "
                               "(a few minutes, once)", field="image") from None
    return tag


def registry_answers(client, timeout: float = 5.0) -> bool:
    """Whether the Dockerfile path can work: the base image is here, or the daemon's
    registry answers for it within `timeout` seconds (asked through the daemon, so its
    own mirrors and proxies apply)."""
    import docker

    try:
        client.images.get(BASE_IMAGE)
        return True
    except docker.errors.ImageNotFound:
        pass
    except Exception:
        return False
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        fut = pool.submit(client.api.inspect_distribution, BASE_IMAGE)
        fut.result(timeout=timeout)
        return True
    except Exception:  # timeout, no route, no registry: the debootstrap path it is
        return False
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def build_image(*, force: bool = False, via: str = "auto", mirror: str | None = None,
                log: Callable[[str], None] = lambda _m: None, client=None) -> BuildResult:
    """Make the learner image unless its tag is already present (`force` rebuilds).

    `via` is `auto` (Dockerfile when a registry answers, else debootstrap), `dockerfile`
    or `debootstrap`. `mirror` is the Debian mirror for debootstrap (default
    $RUNAWAY_DEBIAN_MIRROR or deb.debian.org).
    """
    if via not in ("auto", "dockerfile", "debootstrap"):
        raise SandboxError(f"unknown build path {via!r} (expected auto, dockerfile or debootstrap)",
                           field="via")
    client = client or dockerd.client(timeout=600, field="image")
    with dockerd.answers("building the learner image", field="image"):
        return _build(client, force, via, mirror, log)


def _build(client, force: bool, via: str, mirror: str | None, log: Callable[[str], None]) -> BuildResult:
    import docker

    tag = image_tag()
    t0 = time.monotonic()
    if not force:
        try:
            img = client.images.get(tag)
            return BuildResult(tag, "cached", time.monotonic() - t0, int(img.attrs.get("Size", 0)))
        except docker.errors.ImageNotFound:
            pass
    if via == "auto":
        log("checking whether a registry answers ...")
        via = "dockerfile" if registry_answers(client) else "debootstrap"
        log(f"building via {via}")
    if via == "dockerfile":
        _build_dockerfile(client, tag, log)
    else:
        _build_debootstrap(client, tag, mirror or os.environ.get("RUNAWAY_DEBIAN_MIRROR", DEFAULT_MIRROR), log)
    # A stable name for people (docker run runaway-learner:latest); code uses the hash tag.
    client.images.get(tag).tag(REPOSITORY, "latest")
    size = int(client.images.get(tag).attrs.get("Size", 0))
    return BuildResult(tag, via, time.monotonic() - t0, size)


def _build_dockerfile(client, tag: str, log: Callable[[str], None]) -> None:
    import docker

    version = tag.partition(":")[2]
    try:
        client.images.build(path=str(DOCKERFILE.parent), dockerfile="Dockerfile", tag=tag, rm=True,
                            forcerm=True, labels={"runaway.image": "learner", "runaway.recipe": version})
    except (docker.errors.BuildError, docker.errors.APIError) as e:
        raise SandboxError(f"docker build of the learner image failed: {e}", field="image") from None


def _mounts_under(path: Path) -> list[str]:
    root = os.path.realpath(path)
    out = []
    with open("/proc/self/mounts") as fh:
        for line in fh:
            mnt = line.split()[1].replace("\\040", " ")
            if mnt == root or mnt.startswith(root + "/"):
                out.append(mnt)
    return sorted(out, key=len, reverse=True)  # deepest first


def _remove_tree(work: Path) -> None:
    # debootstrap mounts /proc and /sys in the target; a failed run can leave them
    # mounted, and removing through them would reach the host's files.
    for mnt in _mounts_under(work):
        subprocess.run(["umount", "-l", mnt], check=False, capture_output=True)
    left = _mounts_under(work)
    if left:
        raise SandboxError(f"cannot remove {work}: still mounted: {', '.join(left)}", field="image")
    shutil.rmtree(work, ignore_errors=True)


def _post_process(root: Path) -> None:
    """Make the debootstrapped tree into the learner image: prune, add the user and mount points."""
    for rel in _PRUNE:
        p = root / rel
        if p.is_dir() and not p.is_symlink():
            for child in p.iterdir():  # keep the directory itself: apt and dpkg expect it
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        elif p.exists() or p.is_symlink():
            p.unlink()
    for name, line in (("passwd", _PASSWD), ("group", _GROUP), ("shadow", _SHADOW)):
        f = root / "etc" / name
        text = f.read_text() if f.exists() else ""
        if not any(x.startswith("learner:") for x in text.splitlines()):
            f.write_text(text + line)
    (root / LEARNER_DIR.lstrip("/")).mkdir(parents=True, exist_ok=True)
    scratch = root / SCRATCH_DIR.lstrip("/")
    scratch.mkdir(parents=True, exist_ok=True)
    scratch.chmod(0o1777)


def _os_release(path: str = "/etc/os-release") -> dict[str, str]:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k.strip()] = v.strip().strip('"')
    return out


def debootstrap_plan(have_debootstrap: bool, euid: int, os_release: dict[str, str],
                     have_apt: bool) -> tuple[str, str]:
    """What to do about debootstrap before a build: ("ready", ""), ("install", the line to
    print) or ("refuse", the one line that names what to do).

    >>> debootstrap_plan(False, 0, {"ID": "debian"}, True)[0]
    'install'
    >>> print(debootstrap_plan(False, 1000, {"ID": "ubuntu"}, True)[1].split(": ")[1])
    run `sudo runaway image build` once (it installs Debian's debootstrap package and builds the image as root)
    """
    if have_debootstrap:
        if euid != 0:
            return "refuse", ("building the learner image with debootstrap needs root: run "
                              "`sudo runaway image build` once")
        return "ready", ""
    family = {os_release.get("ID", ""), *os_release.get("ID_LIKE", "").split()}
    debian_like = bool(family & {"debian", "ubuntu"})
    if debian_like and have_apt:
        if euid == 0:
            return "install", ("installing Debian's debootstrap package (apt-get install debootstrap), "
                               "which builds the learner image without a registry ...")
        return "refuse", ("no registry answers and debootstrap is not installed: run `sudo runaway image "
                          "build` once (it installs Debian's debootstrap package and builds the image as root)")
    name = os_release.get("PRETTY_NAME") or os_release.get("ID") or "this host"
    return "refuse", (f"no registry answers and debootstrap is not installed, and {name} is not Debian or "
                      "Ubuntu: install your distribution's debootstrap package and run `runaway image build` "
                      "as root, or let Docker reach a registry (the Dockerfile path)")


def _debootstrap() -> str | None:
    # /usr/sbin is where Debian puts it, and not on every user's PATH.
    return shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")


def _ensure_debootstrap(log: Callable[[str], None]) -> str:
    """Installs debootstrap with apt-get where that is ours to do (root on Debian or Ubuntu),
    saying so in one line; otherwise SandboxError with the one line that says what to do."""
    plan, line = debootstrap_plan(_debootstrap() is not None, os.geteuid(), _os_release(),
                                  shutil.which("apt-get", path="/usr/bin:/bin") is not None)
    if plan == "ready":
        return _debootstrap()  # type: ignore[return-value]
    if plan == "refuse":
        raise SandboxError(line, field="image")
    log(line)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "debootstrap"]):
        p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        if p.returncode != 0:
            tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or [f"exit {p.returncode}"]
            raise SandboxError(f"`{' '.join(cmd)}` failed: {tail[0]} (install debootstrap, then run "
                               "`runaway image build`)", field="image")
    path = _debootstrap()
    if path is None:
        raise SandboxError("apt-get said it installed debootstrap, but no debootstrap is in PATH or /usr/sbin",
                           field="image")
    return path


def _build_debootstrap(client, tag: str, mirror: str, log: Callable[[str], None]) -> None:
    import docker

    debootstrap = _ensure_debootstrap(log)
    # Debian's .debs are kept between builds: a rebuild after a recipe change is quicker.
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "runaway" / "debs"
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="runaway-rootfs-", dir="/var/tmp"))
    root = work / "root"
    try:
        cmd = [debootstrap, "--variant=minbase", f"--include={','.join(PACKAGES)}",
               f"--cache-dir={cache}", "--components=main", SUITE, str(root), mirror]
        log(f"debootstrap {SUITE} from {mirror} into {root} ...")
        with open(work / "debootstrap.log", "wb") as out:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
        if rc != 0:
            tail = (work / "debootstrap.log").read_text(errors="replace").strip().splitlines()[-1:]
            raise SandboxError(f"debootstrap failed (exit {rc}): {' '.join(tail)}", field="image")
        _post_process(root)
        tar = work / "rootfs.tar"
        log("packing the root filesystem ...")
        p = subprocess.run(["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(tar), "."],
                           check=False, capture_output=True, text=True)
        if p.returncode != 0:
            tail = p.stderr.strip().splitlines()[-1:] or [f"exit {p.returncode}"]
            raise SandboxError(f"packing the root filesystem failed: {tail[0]}", field="image")
        repo, _, version = tag.partition(":")
        log(f"docker import as {tag} ...")
        try:
            client.api.import_image_from_file(
                str(tar), repository=repo, tag=version,
                changes=[*_CHANGES, "LABEL runaway.image=learner", f"LABEL runaway.recipe={version}"])
        except docker.errors.APIError as e:
            raise SandboxError(f"docker import of the learner image failed: {e}", field="image") from None
    finally:
        _remove_tree(work)
