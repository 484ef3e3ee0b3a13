"""Make sure PostgreSQL and Redis answer; start project-local ones when they don't.

    scripts/services.sh [start]   settle on a PostgreSQL and a Redis, print their URLs
    scripts/services.sh stop      stop the project-local instances, if running
    scripts/services.sh status    say what runs

`start` prints `export DATABASE_URL=...` and `export REDIS_URL=...` on stdout, and its
progress on stderr, so that a script can `eval "$(scripts/services.sh)"`. For each
service, in order:

1. the server at DATABASE_URL / REDIS_URL (or the defaults of app/config.py), when it
   answers;
2. otherwise the project-local instance under the data folder (.data, or APP_DATA_DIR):
   reused when it already runs, started again when it stopped, created when missing
   (PostgreSQL: initdb with trust auth, a unix socket folder in .data/pg/run, TCP on
   127.0.0.1 and a free port; fsync stays on. Redis: --daemonize on a free port with
   --dir .data/redis and no persistence);
3. the server binaries come from PATH, /usr/lib/postgresql/*/bin or /usr/local/pgsql/bin;
   when missing they are installed with apt-get when we are root and apt-get exists;
   otherwise the script stops and says what to install.

PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres`
user (or `nobody`) and its commands run through runuser.

Runs with the project's virtualenv (asyncpg and redis are used to probe the servers).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import hashlib
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis
import redis.exceptions

from app.config import VARIABLES

ROOT = Path(__file__).resolve().parent.parent
PG_FIRST_PORT = 54320
REDIS_FIRST_PORT = 63790
LOOPBACK = "127.0.0.1"


class Abort(Exception):
    """A message for the user; the script exits 1 after printing it."""


def say(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def data_dir() -> Path:
    raw = os.environ.get("APP_DATA_DIR") or VARIABLES["APP_DATA_DIR"][0] or ".data"
    path = Path(raw)
    return path if path.is_absolute() else ROOT / path


def setting(name: str) -> tuple[str, bool]:
    """The value of ``name`` and whether it was set explicitly (not the default)."""
    value = os.environ.get(name, "")
    if value:
        return value, True
    default = VARIABLES[name][0]
    assert default is not None
    return default, False


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{netloc}"))


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers do: a port whose old connections linger in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def choose_port(recorded: int | None, first: int) -> int:
    candidates = ([recorded] if recorded else []) + list(range(first, first + 100))
    for candidate in candidates:
        if port_is_free(candidate):
            return candidate
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def apt_install(packages: list[str]) -> bool:
    """Install Debian packages when we can: as root, with apt-get. False when we can't."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    say(f"installing {' '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        if subprocess.run(cmd, stdout=sys.stderr, stdin=subprocess.DEVNULL, env=env).returncode:
            raise Abort(f"`{shlex.join(cmd)}` failed; install {' '.join(packages)} yourself")
    return True


# --------------------------------------------------------------------------- PostgreSQL


def probe_postgres(url: str) -> tuple[str, str]:
    """("ok" | "down" | "refused", detail) for the server at ``url``."""

    async def probe() -> tuple[str, str]:
        try:
            conn = await asyncpg.connect(url, timeout=3)
        except asyncpg.InvalidCatalogNameError:
            return "ok", "its database does not exist yet (migrate creates it)"
        except asyncpg.CannotConnectNowError as exc:
            return "down", str(exc)
        except (OSError, TimeoutError) as exc:
            return "down", str(exc) or type(exc).__name__
        except Exception as exc:  # authentication, bad DSN, ...: it answered, and said no
            return "refused", f"{type(exc).__name__}: {exc}"
        await conn.close()
        return "ok", ""

    return asyncio.run(probe())


def find_pg_bindir() -> Path | None:
    candidates: list[Path] = []
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return 0.0

    candidates += [
        Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    ]
    candidates.append(Path("/usr/local/pgsql/bin"))
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


POSTGRES_HINT = """PostgreSQL is not installed and no server answers at {where}.
Either install the PostgreSQL server (initdb, pg_ctl, postgres must exist):
    Debian/Ubuntu:  sudo apt-get install postgresql
    Fedora/RHEL:    sudo dnf install postgresql-server
    macOS:          brew install postgresql@16
or point DATABASE_URL at a PostgreSQL server that runs."""


class LocalPostgres:
    """The project-local cluster: .data/pg/{data,run,postgres.log,port}."""

    def __init__(self, home: Path) -> None:
        self.link = home  # .data/pg, or a link to where the service user can reach

    @property
    def home(self) -> Path:
        return self.link.resolve()

    @property
    def pgdata(self) -> Path:
        return self.home / "data"

    @property
    def sockdir(self) -> Path:
        return self.home / "run"

    @property
    def log(self) -> Path:
        return self.home / "postgres.log"

    @property
    def portfile(self) -> Path:
        return self.home / "port"

    # -- who runs it -------------------------------------------------------------------

    def runner(self) -> str | None:
        """The user that owns the cluster: None when it is us (we are not root)."""
        if os.geteuid() != 0:
            return None
        if self.home.exists() and self.home.stat().st_uid != 0:
            return pwd.getpwuid(self.home.stat().st_uid).pw_name
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                pwd.getpwnam(name)
                return name
        raise Abort(
            "running as root, and there is no `postgres` or `nobody` user to run PostgreSQL as"
        )

    @staticmethod
    def as_user(user: str | None, cmd: list[str]) -> list[str]:
        if user is None:
            return cmd
        if shutil.which("runuser"):
            return ["runuser", "-u", user, "--", *cmd]
        return ["su", "-s", "/bin/sh", user, "-c", shlex.join(cmd)]

    def run(self, user: str | None, cmd: list[str], *, check: bool = True) -> int:
        code = subprocess.run(
            self.as_user(user, cmd), stdout=sys.stderr, stdin=subprocess.DEVNULL, cwd="/"
        ).returncode
        if check and code:
            raise Abort(f"`{shlex.join(cmd)}` failed with status {code}; see {rel(self.log)}")
        return code

    # -- state -------------------------------------------------------------------------

    def running(self) -> tuple[int, int] | None:
        """(pid, port) of the postmaster of this cluster, when one runs."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        return (pid, port) if pid_alive(pid) else None

    # -- set-up ------------------------------------------------------------------------

    def _place(self, user: str | None) -> None:
        """Create the home folder, owned by ``user``, where ``user`` can reach it."""
        self.link.parent.mkdir(parents=True, exist_ok=True)
        if user is not None and not self.link.exists() and not self.link.is_symlink():
            probe = self.as_user(user, ["test", "-x", str(self.link.parent)])
            if subprocess.run(probe, cwd="/").returncode != 0:
                # e.g. a clone under /root (mode 700): keep the cluster where the service
                # user can reach it, and link it from the data folder.
                digest = hashlib.sha1(str(ROOT).encode()).hexdigest()[:10]
                elsewhere = Path("/var/tmp") / f"atelier-{digest}" / "pg"
                say(
                    f"user {user} cannot reach {rel(self.link.parent)} (a parent folder is not "
                    f"searchable); keeping the cluster in {elsewhere}, linked from {rel(self.link)}"
                )
                elsewhere.parent.mkdir(parents=True, exist_ok=True)
                elsewhere.parent.chmod(0o755)
                self.link.symlink_to(elsewhere)
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.sockdir.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            entry = pwd.getpwnam(user)
            for path in (self.home, self.sockdir):
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def init(self, bindir: Path, user: str | None) -> None:
        if self.pgdata.exists():
            say(f"{rel(self.pgdata)} holds no complete cluster; creating it again")
            shutil.rmtree(self.pgdata)
        say(f"creating a PostgreSQL cluster in {rel(self.pgdata)} (initdb, trust auth)")
        cmd = [
            str(bindir / "initdb"),
            "--pgdata", str(self.pgdata),
            "--username", "postgres",
            "--auth", "trust",
            "--encoding", "UTF8",
            "--locale", "C",
        ]  # fmt: skip
        output = self.home / "initdb.log"
        with output.open("w") as sink:
            code = subprocess.run(
                self.as_user(user, cmd), stdout=sink, stderr=sink, stdin=subprocess.DEVNULL, cwd="/"
            ).returncode
        if code:
            raise Abort(f"initdb failed:\n{output.read_text(errors='replace')}")

    def start(self, bindir: Path, user: str | None, port: int) -> None:
        say(f"starting project-local PostgreSQL in {rel(self.link)} on port {port}")
        # The unix socket path must fit in sun_path (108 bytes); a deep clone goes TCP-only.
        socket_dir = str(self.sockdir) if len(str(self.sockdir)) < 90 else ""
        options = shlex.join(
            ["-p", str(port), "-k", socket_dir, "-c", f"listen_addresses={LOOPBACK}"]
        )
        cmd = [
            str(bindir / "pg_ctl"),
            "--pgdata", str(self.pgdata),
            "--log", str(self.log),
            "--wait", "--timeout", "60", "--silent",
            "-o", options,
            "start",
        ]  # fmt: skip
        if self.run(user, cmd, check=False):
            tail = (
                self.log.read_text(errors="replace").splitlines()[-15:] if self.log.exists() else []
            )
            raise Abort(
                f"PostgreSQL did not start; the end of {rel(self.log)}:\n  " + "\n  ".join(tail)
            )
        self.portfile.write_text(f"{port}\n")

    def stop(self) -> None:
        running = self.running()
        if running is None:
            say(f"no project-local PostgreSQL runs in {rel(self.link)}")
            return
        bindir = find_pg_bindir()
        if bindir is None:
            os.kill(running[0], signal.SIGINT)  # "fast" shutdown, what pg_ctl -m fast sends
        else:
            cmd = [
                str(bindir / "pg_ctl"),
                "--pgdata", str(self.pgdata),
                "--mode", "fast",
                "--wait", "--silent",
                "stop",
            ]  # fmt: skip
            self.run(self.runner(), cmd)
        say(f"stopped project-local PostgreSQL (pid {running[0]}, port {running[1]})")


def ensure_postgres() -> str:
    url, explicit = setting("DATABASE_URL")
    parts = urlsplit(url)
    where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
    origin = "DATABASE_URL" if explicit else "the default DATABASE_URL"
    status, detail = probe_postgres(url)
    if status == "ok":
        say(
            f"PostgreSQL answers at {where} ({origin}); using it"
            + (f": {detail}" if detail else "")
        )
        return url
    if status == "refused" and explicit:
        raise Abort(
            f"PostgreSQL at {redact(url)} answers but refuses the connection: {detail}\n"
            "Fix DATABASE_URL, or unset it to use a project-local server."
        )
    if status == "refused":
        say(
            f"a PostgreSQL server answers at {where} but refuses us ({detail}); "
            "using a project-local one"
        )
    else:
        say(f"no PostgreSQL answers at {where} ({origin})")

    local = LocalPostgres(data_dir() / "pg")
    dbname = parts.path.lstrip("/") or "atelier"

    def local_url(port: int) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{port}/{dbname}"

    running = local.running()
    if running is not None:
        pid, port = running
        status, detail = probe_postgres(local_url(port))
        if status != "ok":
            raise Abort(
                f"a project-local PostgreSQL runs from {rel(local.link)} (pid {pid}) but does not "
                f"answer on {LOOPBACK}:{port} ({detail}): is it running in another network "
                "namespace? Stop it with `make services-stop` and try again."
            )
        say(f"reusing project-local PostgreSQL in {rel(local.link)} on port {port}")
        return local_url(port)

    bindir = find_pg_bindir()
    if bindir is None and apt_install(["postgresql"]):
        bindir = find_pg_bindir()
    if bindir is None:
        raise Abort(POSTGRES_HINT.format(where=where))

    user = local.runner()
    local._place(user)
    if not (local.pgdata / "PG_VERSION").exists():
        local.init(bindir, user)
    port = choose_port(read_int(local.portfile), PG_FIRST_PORT)
    local.start(bindir, user, port)
    status, detail = probe_postgres(local_url(port))
    if status != "ok":
        raise Abort(
            f"project-local PostgreSQL started but does not answer on port {port}: {detail}"
        )
    return local_url(port)


# --------------------------------------------------------------------------------- Redis


def probe_redis(url: str) -> tuple[str, str]:
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except (redis.exceptions.AuthenticationError, redis.exceptions.ResponseError) as exc:
        return "refused", f"{type(exc).__name__}: {exc}"
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        return "down", str(exc)
    finally:
        client.close()
    return "ok", ""


REDIS_HINT = """Redis is not installed and no server answers at {where}.
Either install the Redis server (redis-server must exist):
    Debian/Ubuntu:  sudo apt-get install redis-server
    Fedora/RHEL:    sudo dnf install redis
    macOS:          brew install redis
or point REDIS_URL at a Redis server that runs."""


class LocalRedis:
    """The project-local Redis: .data/redis/{redis.pid,redis.log,port}; nothing persisted."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.pidfile = home / "redis.pid"
        self.log = home / "redis.log"
        self.portfile = home / "port"

    def running(self) -> tuple[int, int] | None:
        pid, port = read_int(self.pidfile), read_int(self.portfile)
        if pid is None or port is None or not pid_alive(pid):
            return None
        with contextlib.suppress(OSError):
            if b"redis" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                return None  # a stale pid file whose pid was reused
        return pid, port

    def start(self, binary: str, port: int) -> None:
        say(f"starting project-local Redis in {rel(self.home)} on port {port}")
        self.home.mkdir(parents=True, exist_ok=True)
        cmd = [
            binary,
            "--daemonize", "yes",
            "--bind", LOOPBACK,
            "--port", str(port),
            "--dir", str(self.home),
            "--pidfile", str(self.pidfile),
            "--logfile", str(self.log),
            "--save", "",
            "--appendonly", "no",
        ]  # fmt: skip
        if subprocess.run(cmd, stdout=sys.stderr, stdin=subprocess.DEVNULL).returncode:
            raise Abort(f"redis-server did not start; see {rel(self.log)}")
        self.portfile.write_text(f"{port}\n")

    def stop(self) -> None:
        running = self.running()
        if running is None:
            say(f"no project-local Redis runs in {rel(self.home)}")
            return
        pid, port = running
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        say(f"stopped project-local Redis (pid {pid}, port {port})")


def ensure_redis() -> str:
    url, explicit = setting("REDIS_URL")
    parts = urlsplit(url)
    where = f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
    origin = "REDIS_URL" if explicit else "the default REDIS_URL"
    status, detail = probe_redis(url)
    if status == "ok":
        say(f"Redis answers at {where} ({origin}); using it")
        return url
    if status == "refused" and explicit:
        raise Abort(
            f"Redis at {redact(url)} answers but refuses us: {detail}\n"
            "Fix REDIS_URL, or unset it to use a project-local server."
        )
    if status == "refused":
        say(
            f"a Redis server answers at {where} but refuses us ({detail}); "
            "using a project-local one"
        )
    else:
        say(f"no Redis answers at {where} ({origin})")

    local = LocalRedis(data_dir() / "redis")
    db = parts.path.lstrip("/") or "0"

    def local_url(port: int) -> str:
        return f"redis://{LOOPBACK}:{port}/{db}"

    running = local.running()
    if running is not None:
        pid, port = running
        status, detail = probe_redis(local_url(port))
        if status != "ok":
            raise Abort(
                f"a project-local Redis runs from {rel(local.home)} (pid {pid}) but does not "
                f"answer on {LOOPBACK}:{port} ({detail}): is it running in another network "
                "namespace? Stop it with `make services-stop` and try again."
            )
        say(f"reusing project-local Redis in {rel(local.home)} on port {port}")
        return local_url(port)

    binary = shutil.which("redis-server")
    if binary is None and apt_install(["redis-server"]):
        binary = shutil.which("redis-server") or (
            "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
        )
    if binary is None:
        raise Abort(REDIS_HINT.format(where=where))
    port = choose_port(read_int(local.portfile), REDIS_FIRST_PORT)
    local.start(binary, port)
    deadline = time.monotonic() + 10
    while (answer := probe_redis(local_url(port)))[0] != "ok":
        if time.monotonic() > deadline:
            raise Abort(
                f"project-local Redis started but does not answer on port {port}: {answer[1]}"
            )
        time.sleep(0.05)
    return local_url(port)


# ---------------------------------------------------------------------------------- main


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "start"
    try:
        if command == "start":
            database_url = ensure_postgres()
            redis_url = ensure_redis()
            print(f"export DATABASE_URL={shlex.quote(database_url)}")
            print(f"export REDIS_URL={shlex.quote(redis_url)}")
        elif command == "stop":
            LocalPostgres(data_dir() / "pg").stop()
            LocalRedis(data_dir() / "redis").stop()
        elif command == "status":
            pg = LocalPostgres(data_dir() / "pg").running()
            rd = LocalRedis(data_dir() / "redis").running()
            say(
                f"project-local PostgreSQL: {f'pid {pg[0]}, port {pg[1]}' if pg else 'not running'}"
            )
            say(f"project-local Redis: {f'pid {rd[0]}, port {rd[1]}' if rd else 'not running'}")
        else:
            print(f"usage: {sys.argv[0]} [start|stop|status]", file=sys.stderr)
            return 2
    except Abort as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
