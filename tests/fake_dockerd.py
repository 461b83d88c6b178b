"""A Docker daemon that does not answer, for tests: a unix socket server on a temp path.

It accepts every connection and never replies, or replies to the first requests a
client makes (`answer`: the version and ping that opening a Docker client asks for)
and then goes silent: a daemon that stops answering half-way. Point DOCKER_HOST (or a
`docker.DockerClient(base_url=...)`) at `url`.

>>> # with FakeDockerd(answer=OPENING) as d:
>>> #     subprocess.run(["runaway", "clean"], env={**os.environ, "DOCKER_HOST": d.url})
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Sequence

API = "1.41"
# What opening a client and `docker_available()` ask first; answering these and nothing
# else makes a daemon that stops answering half-way.
OPENING = ("/version", "/_ping")
_ANSWERS = {
    "/version": json.dumps({"ApiVersion": API, "MinAPIVersion": "1.12", "Version": "20.10.0",
                            "Os": "linux", "Arch": "amd64"}).encode(),
    "/_ping": b"OK",
}


class FakeDockerd:
    """See the module docstring. A context manager; `requests` lists the paths asked for."""

    def __init__(self, answer: Sequence[str] = ()) -> None:
        self.answer = tuple(answer)
        # A short path: a unix socket's name is limited to 107 bytes.
        self._dir = Path(tempfile.mkdtemp(prefix="rw-dockerd-", dir="/tmp"))
        self.path = self._dir / "docker.sock"
        self.url = f"unix://{self.path}"
        self.requests: list[str] = []
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._server: socket.socket | None = None

    def __enter__(self) -> "FakeDockerd":
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(self.path))
        self._server.listen(64)
        self._server.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True, name="fake-dockerd").start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for c in [self._server, *self._conns]:
            if c is not None:
                c.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except (socket.timeout, OSError):
                continue
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
                path = target.split("?", 1)[0]
                self.requests.append(path)
                known = next((k for k in _ANSWERS if path.endswith(k)), None)
                if known is None or not any(path.endswith(a) for a in self.answer):
                    self._stop.wait()  # silent from here on: the client's read times out
                    return
                body = _ANSWERS[known]
                kind = "application/json" if body.startswith(b"{") else "text/plain"
                conn.sendall(b"HTTP/1.1 200 OK\r\nApi-Version: " + API.encode() + b"\r\nContent-Type: "
                             + kind.encode() + b"\r\nContent-Length: " + str(len(body)).encode()
                             + b"\r\n\r\n" + body)
        except OSError:
            return
