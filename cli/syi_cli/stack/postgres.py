"""A local PostgreSQL cluster: the system's initdb/pg_ctl, a folder and a port of our own.

PostgreSQL refuses to run as root; when we are root the cluster is owned and run by the
`postgres` system user, in a folder under /tmp that user can reach.
"""

from __future__ import annotations

import glob
import signal
import os
import shutil
import subprocess
import time
from pathlib import Path

from syi_cli.stack.processes import ManagedProcess

DATABASE = "stableyield"
USER = "syi"
PASSWORD = "syi"


def local_dsn(port: int) -> str:
    """The DSN of the local stack's cluster on `port`."""
    return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}"


def pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    raise SystemExit(
        "PostgreSQL server binaries not found. Install them (Debian: apt-get install -y postgresql), "
        "or run `make setup`, which does it."
    )


def _as_root() -> bool:
    return os.geteuid() == 0


class PostgresCluster:
    def __init__(self, state_dir: Path, port: int = 5432):
        self.port = port
        self.state_dir = state_dir
        # root cannot run postgres: keep the cluster where the postgres user can reach it
        self.home = Path(f"/tmp/syi-postgres-{port}") if _as_root() else state_dir / "postgres"
        self.data = self.home / "data"
        self.bindir = pg_bindir()

    @property
    def dsn(self) -> str:
        return local_dsn(self.port)

    def _run(self, *args: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess:
        command = list(args)
        if _as_root():
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=capture, text=True)

    def init(self, say=print) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        say(f"creating PostgreSQL cluster in {self.data}")
        self.home.mkdir(parents=True, exist_ok=True)
        if _as_root():
            shutil.chown(self.home, "postgres", "postgres")
            os.chmod(self.home, 0o700)
        pwfile = self.home / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if _as_root():
            shutil.chown(pwfile, "postgres", "postgres")
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", USER, "-A", "scram-sha-256",
            f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
            capture=True,
        )
        pwfile.unlink()
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.home}'\n"
                "fsync = on\nmax_connections = 200\nshared_buffers = 128MB\n"
            )

    def process(self) -> ManagedProcess:
        command = [str(self.bindir / "postgres"), "-D", str(self.data)]
        if _as_root():
            command = ["runuser", "-u", "postgres", "--", *command]
        # SIGINT is PostgreSQL's fast shutdown (SIGTERM would wait for clients to leave)
        return ManagedProcess(
            name="postgres", command=command, state_dir=self.state_dir, ready=self.accepting, stop_signal=signal.SIGINT
        )

    def accepting(self) -> bool:
        result = subprocess.run(
            [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"], check=False
        )
        return result.returncode == 0

    def ensure_database(self) -> None:
        env = {**os.environ, "PGPASSWORD": PASSWORD}
        psql = [str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", "postgres",
                "-tAc"]
        for _ in range(20):
            exists = subprocess.run([*psql, f"SELECT 1 FROM pg_database WHERE datname='{DATABASE}'"],
                                    capture_output=True, text=True, env=env)
            if exists.returncode == 0:
                break
            time.sleep(0.5)
        if exists.stdout.strip() != "1":
            subprocess.run([*psql, f"CREATE DATABASE {DATABASE}"], check=True, env=env, capture_output=True)
