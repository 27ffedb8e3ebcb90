#!/usr/bin/env python3
"""Live denial-of-service probe against a rota-server binary on loopback.

Each attack runs against a fresh server on embedded defaults (SQLite in a temporary data
directory, no flags beyond --data-dir and --listen), so the same probe measures any build:

  audit    2,000 unauthenticated management requests with ~60 KB paths: rota.db growth
  metrics  20,000 requests with invented HTTP methods and 2,000 invented paths:
           /metrics size, its request series, the server's resident memory
  slow     the server under `ulimit -n 64`, 100 connections that never finish their
           headers: /healthz latency; and one request whose headers end after 20 s

Usage: scripts/dos-probe.py BINARY [--only audit,metrics,slow]. Prints JSON.
"""

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import http.client

MiB = 1024 * 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, fd_limit=None):
        self.dir = tempfile.TemporaryDirectory(prefix="rota-dos-probe-")
        self.port = free_port()
        self.log = open(os.path.join(self.dir.name, "server.log"), "wb")

        def limit():
            if fd_limit:
                resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

        self.proc = subprocess.Popen(
            [binary, "--data-dir", self.dir.name, "--listen", f"127.0.0.1:{self.port}"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=limit,
            env={k: v for k, v in os.environ.items() if not k.startswith("ROTA_SERVER")},
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.healthz(timeout=1)[0] == 200:
                return
            time.sleep(0.1)
        raise SystemExit("dos-probe: the server did not come up; see " + self.log.name)

    def healthz(self, timeout):
        started = time.monotonic()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            conn.request("GET", "/healthz")
            status = conn.getresponse().status
            conn.close()
        except (OSError, http.client.HTTPException):
            status = None
        return status, time.monotonic() - started

    def db_bytes(self):
        total = 0
        for name in os.listdir(self.dir.name):
            if name.startswith("rota.db"):
                total += os.path.getsize(os.path.join(self.dir.name, name))
        return total

    def rss_bytes(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def open_fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        self.dir.cleanup()


class Client:
    """One keep-alive connection that reconnects when the server closes it."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def request(self, method, path, headers=None):
        for _ in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request(method, path, headers=headers or {})
                resp = self.conn.getresponse()
                body = resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return resp.status, dict(resp.getheaders()), body
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
        return None, {}, b""


def count(statuses):
    out = {}
    for s in statuses:
        out[str(s)] = out.get(str(s), 0) + 1
    return out


def probe_audit(binary):
    server = Server(binary)
    try:
        time.sleep(1)
        before = server.db_bytes()
        client = Client(server.port)
        path = "/api/v1/devices/" + "a" * 60_000
        started = time.monotonic()
        statuses = [client.request("GET", path)[0] for _ in range(2000)]
        elapsed = time.monotonic() - started
        time.sleep(2)  # the background pass writes aggregated counts
        after = server.db_bytes()
        return {
            "requests": 2000,
            "path_bytes": len(path),
            "seconds": round(elapsed, 2),
            "statuses": count(statuses),
            "db_bytes_before": before,
            "db_bytes_after": after,
            "db_growth_mib": round((after - before) / MiB, 2),
        }
    finally:
        server.stop()


def probe_metrics(binary):
    server = Server(binary)
    try:
        rss_before = server.rss_bytes()
        client = Client(server.port)
        statuses = []
        for i in range(20_000):
            statuses.append(client.request(f"X{i:05d}", "/healthz")[0])
        for i in range(2_000):
            statuses.append(client.request("GET", f"/invented/{i}")[0])
        status, _, body = client.request("GET", "/metrics")
        text = body.decode(errors="replace")
        series = [line for line in text.splitlines() if line.startswith("rota_http_requests_total")]
        return {
            "invented_methods": 20_000,
            "invented_paths": 2_000,
            "statuses": count(statuses),
            "metrics_status": status,
            "metrics_bytes": len(body),
            "request_series": len(series),
            "rss_mib_before": round(rss_before / MiB, 1),
            "rss_mib_after": round(server.rss_bytes() / MiB, 1),
        }
    finally:
        server.stop()


def probe_slow(binary):
    fd_limit = 64
    server = Server(binary, fd_limit=fd_limit)
    held = []
    try:
        fds_idle = server.open_fds()
        # Headers that end 20 s later: answered, or closed by a header-read timeout?
        late = socket.create_connection(("127.0.0.1", server.port))
        late.sendall(b"GET /healthz HTTP/1.1\r\nHost: probe\r\n")
        late_started = time.monotonic()
        # 100 connections that never finish their headers.
        for _ in range(100):
            try:
                s = socket.create_connection(("127.0.0.1", server.port), timeout=2)
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: probe\r\nX-Slow: ")
                held.append(s)
            except OSError:
                break
        time.sleep(0.5)
        latencies = []
        for _ in range(5):
            status, seconds = server.healthz(timeout=10)
            latencies.append({"status": status, "seconds": round(seconds, 3)})
        fds_attacked = server.open_fds()
        time.sleep(max(0.0, 20 - (time.monotonic() - late_started)))
        late_answer = None
        try:
            late.sendall(b"\r\n")
            late.settimeout(5)
            data = late.recv(64)
            late_answer = data.split(b"\r\n")[0].decode() if data else "closed"
        except OSError as e:
            late_answer = f"closed ({e.__class__.__name__})"
        late.close()
        return {
            "fd_limit": fd_limit,
            "server_fds_idle": fds_idle,
            "slow_connections_opened": len(held),
            "server_fds_under_attack": fds_attacked,
            "healthz": latencies,
            "headers_finished_after_20s": late_answer,
        }
    finally:
        for s in held:
            s.close()
        server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binary")
    parser.add_argument("--only", default="audit,metrics,slow")
    args = parser.parse_args()
    probes = {"audit": probe_audit, "metrics": probe_metrics, "slow": probe_slow}
    result = {"binary": args.binary}
    for name in args.only.split(","):
        print(f"dos-probe: {name}…", file=sys.stderr)
        result[name] = probes[name](args.binary)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
