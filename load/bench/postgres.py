"""A private PostgreSQL cluster for the benchmark: Debian's server binaries, a temp directory,
a free port, default durable settings (fsync on, synchronous_commit on, full_page_writes on).

The only settings changed are where it listens and `max_connections` (three variants' pools).
As root, every server command runs as the `postgres` user (`runuser`), in a directory owned by
it. `stop()` is `pg_ctl stop -m fast` on our own data directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

MAX_CONNECTIONS = 200


def server_bin() -> Path:
    """The newest installed PostgreSQL server's bin directory."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
    return Path(found[-1]).parent


class PostgresCluster:
    def __init__(self, port: int) -> None:
        self.port = port
        self.bin = server_bin()
        self.root = Path(tempfile.mkdtemp(prefix="capsvc-bench-pg-"))
        self.data = self.root / "data"
        self.version = self.bin.parts[-2]
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            pg = pwd.getpwnam("postgres")
            os.chown(self.root, pg.pw_uid, pg.pw_gid)

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        subprocess.run([*prefix, *command], check=True, cwd=self.root,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> PostgresCluster:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U",
                  "postgres", "-E", "UTF8", "--no-sync")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\n# capsvc benchmark: listening only; durability settings stay default\n"
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\n"
                f"max_connections = {MAX_CONNECTIONS}\n"
            )
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.root / "server.log"), "-w", "-t", "60", "start")
        return self

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def setting(self, name: str) -> str:
        out = subprocess.run(
            [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-Atc", f"SHOW {name}"], check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                      "stop")
        shutil.rmtree(self.root, ignore_errors=True)
