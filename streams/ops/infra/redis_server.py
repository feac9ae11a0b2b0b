"""Debian's ``redis-server`` on its own port and directory (with an ACL when the settings log
in, TLS only when their URL is ``rediss://``), and readiness proved by a PING with the
settings' credentials.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from streams.config import Settings
from streams.ops.infra.base import InfraError, Service, say
from streams.ops.infra.pids import spawn_detached
from streams.ops.infra_auth import (
    redis_acl,
    write_private,
)
from streams.ops.infra_redis_tls import redis_tls, redis_tls_args
from streams.security import redis_sync_client

#: How the running Redis listens (``tls`` or ``plain``), written when it starts.
LISTENER_FILE = "listener"


def redis_answers(settings: Settings, timeout_s: float = 1.0) -> bool:
    """True when the settings' Redis answers PING with their credentials (False while it
    loads its AOF, or when it refuses them)."""
    import redis

    client = redis_sync_client(settings, timeout_s)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def start_redis(settings: Settings, svc: Service) -> int:
    """Launch redis-server on its own port and directory with an fsync-every-second AOF."""
    redis_server = ensure_redis_server()
    svc.data_dir.mkdir(parents=True, exist_ok=True)
    acl = redis_acl(settings)
    acl_args = []
    if acl is not None:  # the settings log in: only that user, with that password
        acl_file = svc.data_dir / "users.acl"
        write_private(acl_file, acl)
        acl_args = ["--aclfile", str(acl_file)]
    tls = redis_tls(settings)
    tls_args = redis_tls_args(settings, svc.data_dir) if tls else []
    cmd = [redis_server, *redis_server_args(svc, tls=tls), *acl_args, *tls_args]
    (svc.data_dir / LISTENER_FILE).write_text(f"{listener(settings)}\n")
    pid = spawn_detached(cmd, svc.log_file)
    svc.pid_file.write_text(f"{pid}\n")
    say(f"redis: started pid {pid} on {svc.address}, log {svc.log_file}")
    return pid


def listener(settings: Settings) -> str:
    """How the settings' clients talk to Redis: ``tls`` or ``plain``."""
    return "tls" if redis_tls(settings) else "plain"


def started_listener(svc: Service) -> str:
    """How the running Redis was started to listen (one started before TLS was possible:
    plain)."""
    marker = svc.data_dir / LISTENER_FILE
    return marker.read_text().strip() if marker.exists() else "plain"


def redis_server_args(svc: Service, *, tls: bool = False) -> list[str]:
    """What every Redis socialrec starts runs with: its own port (with ``tls``, a TLS port and
    no plain one) and directory on loopback, an AOF fsynced every second and no RDB snapshots,
    in the foreground of its own session.

    Hashes keep the compact encoding for values up to 256 bytes (Redis's default is 64): MF's
    ledgers held a float32 row per item (128 bytes at 32 factors), up to 64 per user, and took
    157 bytes an entry so instead of 226. Their float16 rows (64 bytes) fit the default; the
    setting keeps a store's older float32 ledgers compact until their users' next batches."""
    port = ["--port", "0", "--tls-port", str(svc.port)] if tls else ["--port", str(svc.port)]
    return [
        *port,
        "--bind", svc.host,
        "--protected-mode", "yes",
        "--dir", str(svc.data_dir),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--hash-max-listpack-value", "256",
        "--daemonize", "no",
        "--pidfile", str(svc.pid_file),
        "--logfile", "",
    ]  # fmt: skip


def ensure_redis_server() -> str:
    """Find redis-server; as root on Debian/Ubuntu install it, otherwise say how to."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise InfraError(
            "redis-server is not installed; install it "
            "(Debian/Ubuntu: sudo apt-get install -y redis-server) and run this again"
        )
    say("redis: redis-server not found; installing Debian's redis-server package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "redis-server"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        subprocess.run(install, env=env, capture_output=True, check=False)
    found = shutil.which("redis-server")
    if not found:
        raise InfraError("installing redis-server with apt-get failed; install it by hand")
    return found
