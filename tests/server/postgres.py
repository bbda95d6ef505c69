"""A throwaway PostgreSQL server for tests: ``initdb`` into a temporary folder, ``pg_ctl`` on a free loopback port.

Debian's ``postgresql`` package puts the binaries in /usr/lib/postgresql/<version>/bin;
they are looked up there when not on PATH. PostgreSQL refuses to run as root, so under
root (CI) both commands run as the ``postgres`` user the package creates.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dream.server.process import free_port


def pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return candidates[-1] if candidates else None


def missing() -> str | None:
    """Why a PostgreSQL server cannot be started here, or None."""
    for name in ("initdb", "pg_ctl"):
        if pg_binary(name) is None:
            return f"{name} not found on PATH or in /usr/lib/postgresql/*/bin (apt-get install postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'dream-engine[postgres]')"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run the server as"
    return None


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yields its SQLAlchemy URL (database ``postgres``, user ``dream``, trust auth)."""
    initdb, pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
    assert initdb and pg_ctl
    as_user: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="dream-pg-"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", free_port()
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "dream", "--auth=trust", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True)
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "server.log"), "-w", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://dream@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
