"""Background processes the stack owns: one pid file and one log file each.

`down` stops exactly what `up` started (by pid), and `up` twice does not start a second copy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ManagedProcess:
    name: str
    command: Sequence[str]
    state_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    ready: Callable[[], bool] | None = None
    stop_timeout: float = 20.0
    stop_signal: int = signal.SIGTERM

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "pids" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def start(self) -> tuple[int, bool]:
        """Start unless already running; returns (pid, started_now)."""
        running = self.pid()
        if running:
            return running, False
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_file.open("ab")
        process = subprocess.Popen(
            list(self.command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.cwd,
            env={**os.environ, **self.env},
            start_new_session=True,  # outlives the CLI; its own process group for a clean stop
        )
        log.close()
        self.pid_file.write_text(f"{process.pid}\n")
        return process.pid, True

    def wait_ready(self, timeout: float, on_wait: Callable[[float], None] | None = None) -> None:
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        while True:
            if self.pid() is None:
                raise RuntimeError(f"{self.name} exited during start-up; see {self.log_file}:\n{self.tail(20)}")
            if self.ready is None or self.ready():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready after {timeout:.0f} s; see {self.log_file}:\n{self.tail(20)}")
            if on_wait:
                on_wait(time.monotonic() - started)
            time.sleep(0.5)

    def stop(self) -> bool:
        """SIGTERM the process group, SIGKILL after the timeout; returns whether it was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        _signal_group(pid, self.stop_signal)
        deadline = time.monotonic() + self.stop_timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            _signal_group(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    def last_output_age(self) -> float | None:
        try:
            return time.time() - self.log_file.stat().st_mtime
        except FileNotFoundError:
            return None

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log yet)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
