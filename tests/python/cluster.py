"""Processes of a distributed Switchyard for the end-to-end suite: real `etcd` and `nats-server`
(Debian packages, installed by scripts/test.sh) on free loopback ports, `switchyard frontend`
and `switchyard worker` processes. Everything is killed at the end of the test that made it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from support import MODEL_DIR, MODEL_NAME, REPO_ROOT, Server, ServerError, _live_processes, free_port, server_binary

STARTUP_TIMEOUT_S = 30.0


def _which(program: str) -> str:
    for d in ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"):
        p = Path(d) / program
        if p.exists():
            return str(p)
    found = shutil.which(program)
    if found:
        return found
    raise AssertionError(f"{program} not found: install its Debian package (scripts/test.sh does)")


def _wait_port(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited during start-up with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{what} did not listen on 127.0.0.1:{port} within {STARTUP_TIMEOUT_S}s")


class _Daemon:
    """A server process on fixed ports that can be killed and restarted on the same ports."""

    name = "daemon"
    port: int
    proc: subprocess.Popen | None = None

    def args(self) -> list[str]:
        raise NotImplementedError

    def start(self):
        self.proc = subprocess.Popen(
            self.args(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _live_processes.append(self.proc)
        _wait_port(self.port, self.proc, self.name)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()


class Etcd(_Daemon):
    name = "etcd"

    def __init__(self) -> None:
        self.port = free_port()
        self.peer_port = free_port()
        self.data = tempfile.mkdtemp(prefix="switchyard-etcd-")

    def args(self) -> list[str]:
        client = f"http://127.0.0.1:{self.port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [
            _which("etcd"),
            "--name=test",
            f"--data-dir={self.data}/etcd",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=test={peer}",
            "--log-level=error",
        ]

    @property
    def url(self) -> str:
        return f"etcd://127.0.0.1:{self.port}"

    def stop(self) -> None:
        super().stop()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)


class Nats(_Daemon):
    name = "nats-server"

    def __init__(self) -> None:
        self.port = free_port()

    def args(self) -> list[str]:
        return [_which("nats-server"), "-a", "127.0.0.1", "-p", str(self.port)]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


@dataclass
class Frontend(Server):
    """`switchyard frontend` (no engines), ready when /live answers (workers come later)."""

    discovery: str = ""
    event_plane: str | None = None
    ready: str = "live"

    def command(self) -> list[str]:
        cmd = [
            str(server_binary()),
            "frontend",
            "--http-host",
            "127.0.0.1",
            "--http-port",
            str(self.port),
            "--discovery",
            self.discovery,
        ]
        if self.event_plane:
            cmd += ["--event-plane", self.event_plane]
        return cmd + self.extra_args


@dataclass
class Worker:
    """`switchyard worker`; started when its log says its request plane listens."""

    name: str
    discovery: str
    event_plane: str | None = None
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    address: str = ""
    worker_id: str = ""

    def command(self) -> list[str]:
        cmd = [
            str(server_binary()),
            "worker",
            "--model-path",
            str(MODEL_DIR),
            "--model-name",
            MODEL_NAME,
            "--discovery",
            self.discovery,
            "--lease-ttl",
            "2",
        ]
        if self.event_plane:
            cmd += ["--event-plane", self.event_plane]
        return cmd + self.extra_args

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def start(self) -> "Worker":
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
        env.update({"NO_COLOR": "1", "RUST_BACKTRACE": "1"})
        fd, log = tempfile.mkstemp(prefix=f"switchyard-{self.name}-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log)
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                self.command(), cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file
            )
        _live_processes.append(self.proc)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        marker = "worker registered"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"[{self.name}] exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            for line in self.log().splitlines():
                if marker in line:
                    self.address = line.split("address=")[1].split()[0] if "address=" in line else ""
                    self.worker_id = line.split("worker=")[1].split()[0] if "worker=" in line else ""
                    return self
            time.sleep(0.05)
        self.kill()
        raise ServerError(f"[{self.name}] did not register within {STARTUP_TIMEOUT_S}s:\n{self.log()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no deregistration, no goodbye; its lease has to expire."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def wait_until(condition, what: str, timeout: float = 10.0, interval: float = 0.02) -> float:
    """Polls `condition` until true; returns the seconds it took. Fails after `timeout`."""
    start = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"never happened within {timeout}s: {what}")
        time.sleep(interval)


def health(frontend: Server) -> tuple[int, dict]:
    r = httpx.get(frontend.url("/health"), timeout=5, trust_env=False)
    return r.status_code, r.json()
