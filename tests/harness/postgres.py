"""A real PostgreSQL server for the test suite, with nothing set up by hand.

Usage (sync, e.g. from a session-scoped fixture)::

    with start_postgres(tmp_path_factory.mktemp("pg")) as server:
        url = server.create_database(unique_database_name())
        ...  # postgresql+asyncpg://postgres@127.0.0.1:PORT/NAME

or ``server = start_postgres(path)`` ... ``server.stop()``.

Where the server comes from:

* ``MEDIA_TEST_DATABASE_URL`` set (``postgresql://user[:pw]@host:port/db``): that
  server is used; ``stop()`` drops the databases this harness created on it.
* Otherwise a throwaway cluster is made with this machine's PostgreSQL server
  binaries (``pg_config --bindir``, then ``/usr/lib/postgresql/*/bin`` newest
  first, then ``PATH``): ``initdb`` into a private directory, then ``postgres`` on a
  free 127.0.0.1 port with fsync/full_page_writes/synchronous_commit off.
  ``stop()`` does an immediate shutdown (SIGQUIT) and removes the directory.
  PostgreSQL refuses to run as root, so as root both programs run as the
  ``postgres`` system user (or ``nobody``), which then owns the directory.
  A small watchdog process stops the server and removes the directory if the
  test process dies without calling ``stop()``.
* Neither available: ``RuntimeError`` naming what is missing. Never a skip.

Every method works both from plain sync code and from inside a running event
loop (the admin work runs on a private loop in a short-lived thread); the
``a``-prefixed coroutines do the same work on the caller's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.engine import make_url

__all__ = [
    "ENV_DATABASE_URL",
    "PostgresServer",
    "find_postgres_bindir",
    "start_postgres",
    "unique_database_name",
]

ENV_DATABASE_URL = "MEDIA_TEST_DATABASE_URL"

_DEBIAN_BINDIR_GLOB = "/usr/lib/postgresql/*/bin"
_SUPERUSER = "postgres"
_HOST = "127.0.0.1"
_SERVICE_USERS = ("postgres", "nobody")  # who runs initdb/postgres when we are root
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with the trailing NUL
_DB_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_BIND_ERRORS = ("could not bind", "Address already in use", "could not create any TCP/IP")
_SERVER_SETTINGS = {
    "listen_addresses": _HOST,
    # Test speed: durability is worthless for a throwaway cluster.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "jit": "off",
    # Deterministic output whatever the machine's zone is.
    "timezone": "UTC",
    "log_timezone": "UTC",
}

T = TypeVar("T")

# Runs as a separate process: when the test process goes away (normally or not)
# its end of the pipe closes, and this stops the server and removes its files.
_WATCHDOG_SOURCE = r"""
import os, shutil, signal, sys, time
pid, root = int(sys.argv[1]), sys.argv[2]
for s in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
    signal.signal(s, signal.SIG_IGN)
sys.stdin.buffer.read()
def alive():
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
if alive():
    try:
        os.kill(pid, signal.SIGQUIT)
    except OSError:
        pass
    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
shutil.rmtree(root, ignore_errors=True)
"""


# --------------------------------------------------------------------------- helpers


def _free_port(host: str = _HOST) -> int:
    """A TCP port that was free a moment ago (the caller retries on a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _run_on_private_loop(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a fresh loop in a fresh thread.

    Works whether or not the calling thread has a running (or merely installed)
    event loop, and never touches that loop.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-harness") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def _version_key(bindir: str) -> tuple[int, ...]:
    name = Path(bindir).parent.name
    try:
        return tuple(int(part) for part in name.split("."))
    except ValueError:
        return (-1,)


def _candidate_bindirs() -> list[Path]:
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
    candidates.extend(
        Path(d) for d in sorted(glob.glob(_DEBIAN_BINDIR_GLOB), key=_version_key, reverse=True)
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    unique: list[Path] = []
    for c in candidates:
        if c not in unique:
            unique.append(c)
    return unique


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_postgres_bindir() -> Path | None:
    """The first directory holding both ``initdb`` and ``postgres``, or None."""
    for bindir in _candidate_bindirs():
        if _is_executable(bindir / "initdb") and _is_executable(bindir / "postgres"):
            return bindir
    return None


def _missing_binaries_error() -> RuntimeError:
    looked = ", ".join(str(p) for p in _candidate_bindirs()) or (
        f"nothing: no pg_config or initdb on PATH, no {_DEBIAN_BINDIR_GLOB}"
    )
    return RuntimeError(
        "PostgreSQL server binaries not found (need initdb and postgres; looked in: "
        f"{looked}). Install the Debian package postgresql-15 "
        f"(apt-get install postgresql-15) or set {ENV_DATABASE_URL}="
        "postgresql://USER@HOST:PORT/postgres to use a running server."
    )


def _service_user() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    for name in _SERVICE_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError(
        "running as root, and PostgreSQL refuses to run as root, but none of the system "
        f"users {', '.join(_SERVICE_USERS)} exists to run it as (install the Debian package "
        f"postgresql-15, which creates 'postgres', or set {ENV_DATABASE_URL})"
    )


def _traversable_by(path: Path, user: pwd.struct_passwd) -> bool:
    """Can ``user`` (primary group only: we drop supplementary groups) reach ``path``?"""
    for p in (path, *path.parents):
        try:
            st = p.stat()
        except OSError:
            return False
        if st.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid == user.pw_gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _choose_base(workdir: Path, user: pwd.struct_passwd | None) -> Path:
    """``workdir`` if the server can live there, else the system temp dir.

    The server user must be able to traverse every parent (pytest's
    /tmp/pytest-of-root is 0700, so as root this usually falls back), and the
    unix socket path must fit in sun_path.
    """
    longest_socket = len("/media-pg-XXXXXXXX/run/.s.PGSQL.65535")

    def fits(base: Path) -> bool:
        return len(str(base)) + longest_socket <= _SOCKET_PATH_MAX and (
            user is None or _traversable_by(base, user)
        )

    workdir = workdir.resolve()
    if fits(workdir):
        return workdir
    fallback = Path(tempfile.gettempdir()).resolve()
    if fits(fallback):
        return fallback
    raise RuntimeError(
        f"no usable directory for the PostgreSQL cluster: neither {workdir} nor {fallback} "
        "is short enough for a unix socket path"
        + (f" and reachable by user {user.pw_name}" if user else "")
    )


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no server log: {exc}>"
    return "\n".join(text.splitlines()[-lines:]) or "<server log is empty>"


def _quote_ident(name: str) -> str:
    if not _DB_NAME_RE.match(name):
        raise ValueError(
            f"invalid database name {name!r}: use letters, digits and _ (max 63, "
            "not starting with a digit)"
        )
    return '"' + name + '"'


def unique_database_name(prefix: str = "media_test") -> str:
    """A database name that won't collide with other runs on a shared server."""
    return f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"


def _mask(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


# --------------------------------------------------------------------------- server


class PostgresServer:
    """A PostgreSQL server for tests: a private local cluster or an external one.

    Create with :func:`start_postgres`. Usable as a context manager (``stop()``
    on exit).
    """

    def __init__(
        self,
        *,
        admin_url: str,
        external: bool,
        root: Path | None = None,
        process: subprocess.Popen[bytes] | None = None,
        watchdog: subprocess.Popen[bytes] | None = None,
        bindir: Path | None = None,
    ) -> None:
        url = make_url(admin_url)
        self._admin_url = url.set(drivername="postgresql")
        self.external = external
        self.root = root
        self.bindir = bindir
        self._process = process
        self._watchdog = watchdog
        self._created: set[str] = set()
        self._lock = threading.Lock()
        self._stopped = False

    # ---- introspection

    @property
    def host(self) -> str:
        return self._admin_url.host or _HOST

    @property
    def port(self) -> int:
        return self._admin_url.port or 5432

    @property
    def user(self) -> str:
        return self._admin_url.username or _SUPERUSER

    @property
    def admin_dsn(self) -> str:
        """libpq/asyncpg DSN of the maintenance database (with password, if any)."""
        return self._admin_url.render_as_string(hide_password=False)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def data_dir(self) -> Path | None:
        return self.root / "data" if self.root else None

    @property
    def log_path(self) -> Path | None:
        return self.root / "postgres.log" if self.root else None

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines) if self.log_path else "<external server: no log>"

    def url(self, database: str, *, drivername: str = "postgresql+asyncpg") -> str:
        """SQLAlchemy URL of ``database`` on this server (password included)."""
        return self._admin_url.set(drivername=drivername, database=database).render_as_string(
            hide_password=False
        )

    def __repr__(self) -> str:
        kind = "external" if self.external else f"local pid={self.pid} root={self.root}"
        return f"<PostgresServer {kind} {_mask(self.admin_dsn)}>"

    # ---- databases

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.admin_dsn, timeout=10)

    async def aexecute_admin(self, sql: str) -> str:
        """Run one statement on the maintenance database (outside a transaction)."""
        conn = await self._connect()
        try:
            return str(await conn.execute(sql))
        finally:
            await conn.close()

    async def afetchval(self, sql: str, *args: Any) -> Any:
        """First column of the first row of ``sql`` on the maintenance database."""
        conn = await self._connect()
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    async def acreate_database(self, name: str) -> str:
        """Create a new, empty database; returns its ``postgresql+asyncpg`` URL."""
        ident = _quote_ident(name)
        conn = await self._connect()
        try:
            # template0 + C locale: the same result on any server, whatever its defaults.
            await conn.execute(
                f"CREATE DATABASE {ident} TEMPLATE template0 ENCODING 'UTF8' "
                "LC_COLLATE 'C' LC_CTYPE 'C'"
            )
        except asyncpg.DuplicateDatabaseError as exc:
            raise RuntimeError(
                f"database {name!r} already exists on {_mask(self.admin_dsn)}; "
                "use unique_database_name() for names that do not collide"
            ) from exc
        finally:
            await conn.close()
        with self._lock:
            self._created.add(name)
        return self.url(name)

    async def adrop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, disconnecting any sessions still using it."""
        ident = _quote_ident(name)
        conn = await self._connect()
        try:
            force = " WITH (FORCE)" if conn.get_server_version() >= (13, 0) else ""
            await conn.execute(f"DROP DATABASE IF EXISTS {ident}{force}")
        finally:
            await conn.close()
        with self._lock:
            self._created.discard(name)

    def create_database(self, name: str) -> str:
        """Sync :meth:`acreate_database`; fine inside a running event loop too."""
        return _run_on_private_loop(lambda: self.acreate_database(name))

    def drop_database(self, name: str) -> None:
        """Sync :meth:`adrop_database`; fine inside a running event loop too."""
        _run_on_private_loop(lambda: self.adrop_database(name))

    def execute_admin(self, sql: str) -> str:
        return _run_on_private_loop(lambda: self.aexecute_admin(sql))

    def fetchval(self, sql: str, *args: Any) -> Any:
        return _run_on_private_loop(lambda: self.afetchval(sql, *args))

    def database_exists(self, name: str) -> bool:
        return bool(self.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))

    # ---- lifecycle

    def stop(self) -> None:
        """Stop: immediate shutdown + remove files (local), drop created DBs (external)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            created = sorted(self._created)
        if self.external:
            errors: list[str] = []
            for name in created:
                try:
                    self.drop_database(name)
                except Exception as exc:  # keep dropping the others
                    errors.append(f"{name}: {exc}")
            if errors:
                raise RuntimeError("could not drop test databases: " + "; ".join(errors))
            return
        try:
            if self._process is not None:
                _stop_process(self._process)
        finally:
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
            if self._watchdog is not None:
                if self._watchdog.stdin:
                    self._watchdog.stdin.close()
                try:
                    self._watchdog.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self._watchdog.kill()
                    self._watchdog.wait()

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Immediate shutdown (SIGQUIT), then SIGKILL if it does not go."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGQUIT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- startup


def start_postgres(
    workdir: Path,
    *,
    startup_timeout: float = 30.0,
    environ: dict[str, str] | None = None,
) -> PostgresServer:
    """Start (or attach to) a PostgreSQL server for tests.

    Returns a :class:`PostgresServer`, which is also a context manager::

        with start_postgres(tmp) as server: ...

    ``environ`` defaults to ``os.environ`` (only ``MEDIA_TEST_DATABASE_URL`` is read).
    """
    env = os.environ if environ is None else environ
    external_url = env.get(ENV_DATABASE_URL, "").strip()
    if external_url:
        return _attach_external(external_url)
    bindir = find_postgres_bindir()
    if bindir is None:
        raise _missing_binaries_error()
    return _start_local(Path(workdir), bindir, startup_timeout)


def _attach_external(url: str) -> PostgresServer:
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise RuntimeError(f"{ENV_DATABASE_URL} is not a valid database URL: {exc}") from exc
    if not parsed.drivername.startswith("postgres"):
        raise RuntimeError(f"{ENV_DATABASE_URL} must be a postgresql:// URL, got {_mask(url)}")
    server = PostgresServer(admin_url=url, external=True)
    try:
        _run_on_private_loop(lambda: server.aexecute_admin("SELECT 1"))
    except Exception as exc:
        raise RuntimeError(
            f"{ENV_DATABASE_URL}={_mask(url)} is set, but connecting to it failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return server


def _child_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C", HOME=str(root))
    env.pop("LANGUAGE", None)
    return env


def _start_local(workdir: Path, bindir: Path, startup_timeout: float) -> PostgresServer:
    user = _service_user()
    workdir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="media-pg-", dir=_choose_base(workdir, user)))
    try:
        data, sock, log = root / "data", root / "run", root / "postgres.log"
        sock.mkdir()
        if user is not None:
            for p in (root, sock):
                os.chown(p, user.pw_uid, user.pw_gid)
        as_user: dict[str, Any] = (
            {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
        )
        env = _child_env(root)

        initdb = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D", str(data),
                "-U", _SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=max(startup_timeout, 60.0),
            check=False,
            **as_user,
        )  # fmt: skip
        if initdb.returncode != 0:
            raise RuntimeError(
                f"initdb failed (exit {initdb.returncode}, {bindir / 'initdb'}"
                f"{', as user ' + user.pw_name if user else ''}):\n"
                f"{initdb.stdout[-3000:]}{initdb.stderr[-3000:]}"
            )

        deadline = time.monotonic() + startup_timeout
        attempts = 0
        while True:
            attempts += 1
            port = _free_port()
            proc = _spawn_postgres(bindir, data, sock, log, port, root, env, as_user)
            try:
                _wait_ready(proc, data, log, deadline, port)
                break
            except _PortTaken:
                if attempts >= 5:
                    raise RuntimeError(
                        f"postgres could not bind a free port in {attempts} attempts; "
                        f"server log tail:\n{_tail(log)}"
                    ) from None
            except BaseException:
                _stop_process(proc)
                raise

        watchdog = subprocess.Popen(
            [sys.executable, "-I", "-c", _WATCHDOG_SOURCE, str(proc.pid), str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        server = PostgresServer(
            admin_url=f"postgresql://{_SUPERUSER}@{_HOST}:{port}/postgres",
            external=False,
            root=root,
            process=proc,
            watchdog=watchdog,
            bindir=bindir,
        )
        try:
            _run_on_private_loop(lambda: server.aexecute_admin("SELECT 1"))
        except BaseException as exc:
            tail = server.log_tail()
            server.stop()
            raise RuntimeError(
                f"PostgreSQL started on {_HOST}:{port} but a connection failed: {exc}\n"
                f"server log tail:\n{tail}"
            ) from exc
        return server
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


class _PortTaken(Exception):
    pass


def _spawn_postgres(
    bindir: Path,
    data: Path,
    sock: Path,
    log: Path,
    port: int,
    root: Path,
    env: dict[str, str],
    as_user: dict[str, Any],
) -> subprocess.Popen[bytes]:
    args = [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sock)]
    for key, value in _SERVER_SETTINGS.items():
        args += ["-c", f"{key}={value}"]
    with log.open("wb") as log_file:  # fresh per attempt: see _wait_ready
        return subprocess.Popen(
            args,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C in the terminal must not shut the server down
            # under the tests' teardown (SIGINT is postgres' "fast shutdown").
            start_new_session=True,
            **as_user,
        )


def _wait_ready(
    proc: subprocess.Popen[bytes], data: Path, log: Path, deadline: float, port: int
) -> None:
    """Wait until postmaster.pid says "ready" (what ``pg_ctl -w`` checks)."""
    pidfile = data / "postmaster.pid"
    while True:
        code = proc.poll()
        if code is not None:
            tail = _tail(log)
            if any(marker in tail for marker in _BIND_ERRORS):
                raise _PortTaken
            raise RuntimeError(
                f"postgres exited with code {code} during startup (port {port}); "
                f"server log tail:\n{tail}"
            )
        with contextlib.suppress(OSError):
            lines = pidfile.read_text().splitlines()
            # line 1: pid, line 4: port, line 8: status ("ready", "starting", ...)
            if (
                len(lines) >= 8
                and lines[0].strip() == str(proc.pid)
                and lines[7].strip() == "ready"
            ):
                return
        if time.monotonic() > deadline:
            _stop_process(proc)
            raise RuntimeError(
                f"PostgreSQL did not accept connections on {_HOST}:{port} in time; "
                f"server log tail:\n{_tail(log)}"
            )
        time.sleep(0.02)
