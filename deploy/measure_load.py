#!/usr/bin/env python3
"""Concurrent gRPC load on loopback, with the server's RSS sampled meanwhile.

deploy/measure.sh drives the server with grpcurl (one process per call, so at
most WORKERS calls in flight); this drives it with many calls in flight over a
few HTTP/2 connections, which is what sizes the memory limit:

    pip install grpcio        # the only dependency besides the server
    python3 deploy/measure_load.py BINARY [POSTGRES_URL]

BINARY is target/release/castellan (or debug). With POSTGRES_URL (a server
where a database may be created, e.g. postgres://postgres@127.0.0.1:5432/postgres)
a fresh database is created, migrated with `castellan migrate`, used with
CASTELLAN_NO_MIGRATE=true and dropped; without it, SQLite in a temp dir.
Phases, each bounded in calls and seconds, all to 127.0.0.1:
  mixed     CONCURRENCY (64) calls in flight over 4 channels: ListUsers (100
            users a page), GetUser, Health/Check, CreateUsers (10 users);
            CALLS (20000) calls or 90 s
  passwords PW_CONCURRENCY (32) CreateUsers calls in flight, twice each, each
            creating PW_USERS (4) users with an initial password (argon2id,
            m = 7 MiB a hash); or 90 s
PHASES=passwords (or mixed) runs one phase only.
Requests are encoded by hand (no generated code): only a few fields are needed.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import grpc

CONCURRENCY = int(os.environ.get("CONCURRENCY", "64"))
CALLS = int(os.environ.get("CALLS", "20000"))
PW_CONCURRENCY = int(os.environ.get("PW_CONCURRENCY", "32"))
PW_USERS = int(os.environ.get("PW_USERS", "4"))
PHASES = os.environ.get("PHASES", "mixed,passwords").split(",")
PHASE_SECONDS = 90


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, value) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def first_field(message: bytes, number: int) -> bytes:
    """The first length-delimited field `number` of a message."""
    i = 0
    while i < len(message):
        key, i = read_varint(message, i)
        wire = key & 7
        if wire == 0:
            _, i = read_varint(message, i)
        elif wire == 2:
            length, i = read_varint(message, i)
            if key >> 3 == number:
                return message[i : i + length]
            i += length
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            break
    raise ValueError(f"no field {number} in the reply")


def read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def user_draft(email: str, password: str | None = None) -> bytes:
    draft = field(1, email) + field(3, "Load")
    if password:
        draft += field(5, password)
    return draft


def create_users(drafts: list[bytes]) -> bytes:
    return b"".join(field(1, d) for d in drafts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def rss(self, key: str = "VmRSS") -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def run(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.rss())
            except OSError:
                return
            time.sleep(0.1)


async def mixed(addr: str, token: str, seed_id: str) -> tuple[int, int]:
    metadata = (("authorization", f"Bearer {token}"),)
    channels = [grpc.aio.insecure_channel(addr) for _ in range(4)]
    calls = {
        "list": [c.unary_unary("/identity.v1.UserService/ListUsers") for c in channels],
        "get": [c.unary_unary("/identity.v1.UserService/GetUser") for c in channels],
        "health": [c.unary_unary("/grpc.health.v1.Health/Check") for c in channels],
        "create": [c.unary_unary("/identity.v1.UserService/CreateUsers") for c in channels],
    }
    list_request = field(1, 100) + field(4, "-createdAt")
    get_request = field(1, seed_id)
    done = errors = 0
    deadline = time.monotonic() + PHASE_SECONDS

    async def worker(w: int):
        nonlocal done, errors
        n = 0
        while done < CALLS and time.monotonic() < deadline:
            ch = (w + n) % len(channels)
            kind = n % 10
            try:
                if kind < 5:
                    await calls["list"][ch](list_request, metadata=metadata, timeout=30)
                elif kind < 8:
                    await calls["get"][ch](get_request, metadata=metadata, timeout=30)
                elif kind < 9:
                    await calls["health"][ch](b"", timeout=30)
                else:
                    drafts = [user_draft(f"mix{w}n{n}u{i}@example.com") for i in range(10)]
                    await calls["create"][ch](create_users(drafts), metadata=metadata, timeout=30)
            except grpc.aio.AioRpcError as error:
                errors += 1
                if errors <= 3:
                    print(f"  call error: {error.code()} {error.details()}", file=sys.stderr)
            done += 1
            n += 1

    await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))
    for c in channels:
        await c.close()
    return done, errors


async def passwords(addr: str, token: str) -> tuple[int, int]:
    metadata = (("authorization", f"Bearer {token}"),)
    channel = grpc.aio.insecure_channel(addr)
    create = channel.unary_unary("/identity.v1.UserService/CreateUsers")
    done = errors = 0
    deadline = time.monotonic() + PHASE_SECONDS

    async def worker(w: int):
        nonlocal done, errors
        for n in range(2):
            if time.monotonic() > deadline:
                return
            drafts = [user_draft(f"pw{w}n{n}u{i}@example.com", f"correct horse {w} {n} {i}") for i in range(PW_USERS)]
            try:
                await create(create_users(drafts), metadata=metadata, timeout=60)
            except grpc.aio.AioRpcError as error:
                errors += 1
                if errors <= 3:
                    print(f"  call error: {error.code()} {error.details()}", file=sys.stderr)
            done += 1

    await asyncio.gather(*(worker(w) for w in range(PW_CONCURRENCY)))
    await channel.close()
    return done, errors


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    binary = os.path.abspath(argv[1])
    pg_url = argv[2] if len(argv) > 2 else None
    work = tempfile.mkdtemp(prefix="castellan-load-")
    grpc_port, http_port = free_port(), free_port()
    env = dict(
        os.environ,
        CASTELLAN_DATA_DIR=os.path.join(work, "data"),
        CASTELLAN_GRPC_ADDR=f"127.0.0.1:{grpc_port}",
        CASTELLAN_HTTP_ADDR=f"127.0.0.1:{http_port}",
        CASTELLAN_LOG_FORMAT="json",
        CASTELLAN_SHUTDOWN_GRACE="10s",
        RUST_LOG="warn",
    )
    database = None
    server = None
    try:
        if pg_url:
            database = f"castellan_load_{os.getpid()}"
            subprocess.run(["psql", pg_url, "-qAt", "-c", f"CREATE DATABASE {database}"], check=True)
            env["CASTELLAN_DATABASE_URL"] = re.sub(r"/[^/?]*(\?.*)?$", f"/{database}", pg_url)
            subprocess.run([binary, "migrate"], env=env, check=True, stderr=subprocess.DEVNULL)
            env["CASTELLAN_NO_MIGRATE"] = "true"
        log_path = os.path.join(work, "serve.log")
        with open(log_path, "w") as log:
            server = subprocess.Popen([binary, "serve"], env=env, stderr=log)
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1)
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit("the server exited; see " + log_path)
                time.sleep(0.2)
        time.sleep(2)
        sampler = Sampler(server.pid)
        idle = sampler.rss()
        sampler.start()
        token = subprocess.run(
            [binary, "token", "--subject", "load", "--permission", "users:*"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        addr = f"127.0.0.1:{grpc_port}"

        async def seed():
            async with grpc.aio.insecure_channel(addr) as channel:
                reply = await channel.unary_unary("/identity.v1.UserService/CreateUsers")(
                    create_users([user_draft("seed@example.com")]),
                    metadata=(("authorization", f"Bearer {token}"),),
                )
                return first_field(first_field(reply, 1), 1).decode()

        seed_id = asyncio.run(seed())
        print(
            f"binary {binary} ({os.path.getsize(binary) / 2**20:.0f} MiB), database {'postgresql' if pg_url else 'sqlite'}"
        )
        print(f"idle           RSS {idle / 1024:.1f} MiB")
        for name, phase in (
            ("mixed", lambda: mixed(addr, token, seed_id)),
            ("passwords", lambda: passwords(addr, token)),
        ):
            if name not in PHASES:
                continue
            sampler.peak = sampler.rss()
            cpu0, t0 = sampler.cpu_seconds(), time.monotonic()
            done, errors = asyncio.run(phase())
            elapsed, cpu = time.monotonic() - t0, sampler.cpu_seconds() - cpu0
            time.sleep(0.3)
            print(
                f"{name:<14} {done} calls ({errors} errors) in {elapsed:.1f} s = {done / elapsed:.0f}/s; "
                f"CPU {cpu:.1f} s = {cpu / elapsed * 1000:.0f} millicores; "
                f"peak RSS {sampler.peak / 1024:.1f} MiB; after {sampler.rss() / 1024:.1f} MiB"
            )
        time.sleep(5)
        print(
            f"5 s later     RSS {sampler.rss() / 1024:.1f} MiB; VmHWM {sampler.rss('VmHWM') / 1024:.1f} MiB; "
            f"threads {sampler.rss('Threads')}"
        )
        sampler.stop.set()
        return 0
    finally:
        if server and server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
        if database:
            subprocess.run(
                ["psql", pg_url, "-qAt", "-c", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"], check=False
            )
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
