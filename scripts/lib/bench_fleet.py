#!/usr/bin/env python3
"""The measuring and JSON half of scripts/bench-fleet.sh (the standard library only).

  devices V...      stdin: `rota device list --json`; prints "ACTIVE CHECKED_IN ON_V..."
                    (active devices, those that checked in, and those on each version V)
  faults PLAN OLD NEW
                    stdin: `rota device list --json`; PLAN: the simulator's fault plan
                    ({"id": "self-test", ...}); prints "HEALTHY_ON_NEW FAILING_ON_OLD
                    FAILING_ON_NEW STRANDED": devices expected on version NEW (all but
                    the self-test failures) that run it, self-test failures back on OLD
                    or (wrongly) on NEW, and devices that run neither (bricked or lost)
  rollout           stdin: `rota rollout status ID --json`; prints
                    "STATE MEMBERS ASSIGNED IN_PROGRESS CONFIRMED FAILED TIMED_OUT"
  proc PID...       prints "PEAK_RSS_MIB CPU_S FILE_RSS_MIB" of live processes: the largest
                    VmHWM; user + system time of them and their waited-for children,
                    summed; the largest RssFile now (mapped files, such as an SQLite
                    database read through its memory map: page cache, counted in VmHWM)
  pss PID...        prints the largest Pss of the processes (smaps_rollup), in MiB
  http5xx URL...    prints the 5xx answers counted in rota_http_requests_total (any
                    label set with a 5xx status) of the servers' /metrics at each URL
  logs FILE...      prints "WARNINGS ERRORS SLOW_ACQUIRES" counted in tracing logs
  report K=V ...    prints the JSON object of the pairs: numbers, true/false/null and
                    comma-separated numbers become JSON numbers, literals and arrays;
                    anything else stays a string
  serve             answers lines "COMMAND INPUT ARG..." from stdin, one line each (empty
                    when the command failed), INPUT being the command's stdin as a file:
                    the benchmark's once-a-second questions then cost no interpreter
                    start (about 0.1 CPU-s each here, which at 100,000 devices was CPU
                    taken from the fleet under test)
"""

import contextlib
import io
import json
import os
import re
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# tracing-subscriber's text format: "2026-01-02T03:04:05.678Z  WARN target: message"; its
# JSON format: "level":"WARN".
LEVEL = re.compile(r'^\d{4}-\d\d-\d\dT\S+\s+(WARN|ERROR)\s|"level":"(WARN|ERROR)"')
NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


def devices(*versions):
    """`rota device summary --json` -> "ACTIVE CHECKED_IN ON_V1 ON_V2 ..."."""
    fleet = json.load(sys.stdin)
    active = sum(c["devices"] for c in fleet["states"] if c["state"] == "active")
    by_version = {c["version"]: c["devices"] for c in fleet["versions"]}
    print(active, sum(by_version.values()), *(by_version.get(int(v), 0) for v in versions))


def faults(plan_path, old, new):
    listed = json.load(sys.stdin)
    with open(plan_path) as f:
        plan = json.load(f)
    old, new = int(old), int(new)
    healthy_on_new = failing_on_old = failing_on_new = stranded = 0
    for d in listed:
        version = d.get("running_version")
        failing = plan.get(d["id"]) == "self-test"
        if version not in (old, new):
            stranded += 1
        elif failing:
            failing_on_old += version == old
            failing_on_new += version == new
        else:
            healthy_on_new += version == new
    print(healthy_on_new, failing_on_old, failing_on_new, stranded)


def rollout():
    status = json.load(sys.stdin)
    total = status["counts"]["total"]
    fields = ("members", "assigned", "in_progress", "confirmed", "failed", "timed_out")
    print(status["state"], *(total.get(f, 0) for f in fields))


def proc(*pids):
    hwm_kib = ticks = file_kib = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            status = {line.split(":")[0]: line.split()[1:2] for line in f}
        hwm = int((status.get("VmHWM") or [0])[0])
        hwm_kib = max(hwm_kib, hwm)
        file_kib = max(file_kib, int((status.get("RssFile") or [0])[0]))
        with open(f"/proc/{pid}/stat") as f:
            # The command name (field 2) may hold spaces; the fields after it may not.
            after_name = f.read().rsplit(")", 1)[1].split()
        # utime, stime, cutime, cstime: fields 14 to 17 of proc(5), 12 to 15 after the name.
        ticks += sum(int(t) for t in after_name[11:15])
    print(
        f"{hwm_kib / 1024:.1f}",
        f"{ticks / os.sysconf('SC_CLK_TCK'):.2f}",
        f"{file_kib / 1024:.1f}",
    )


def pg_cpu():
    """PostgreSQL's CPU-seconds so far (user + system): its processes' own, and those of
    its ended processes, which the postmaster collected (its cutime and cstime)."""
    ticks = 0
    stats = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                name, after_name = f.read().rsplit(")", 1)
        except OSError:
            continue  # ended meanwhile
        if name.split("(", 1)[1] == "postgres":
            stats[int(pid)] = after_name.split()
    for fields in stats.values():
        ticks += int(fields[11]) + int(fields[12])
        # The postmaster: its parent is not PostgreSQL.
        if int(fields[1]) not in stats:
            ticks += int(fields[13]) + int(fields[14])
    print(f"{ticks / os.sysconf('SC_CLK_TCK'):.2f}")


def pss(*pids):
    """The largest proportional set size of the processes, in whole MiB."""
    largest = 0
    for pid in pids:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            kib = next((int(line.split()[1]) for line in f if line.startswith("Pss:")), 0)
        largest = max(largest, kib)
    print(largest // 1024)


def http5xx(*urls):
    import urllib.request  # only here: it costs a fifth of the interpreter's start

    total = 0.0
    for url in urls:
        with urllib.request.urlopen(f"{url}/metrics", timeout=30) as answer:
            text = answer.read().decode()
        for line in text.splitlines():
            if line.startswith("rota_http_requests_total{") and re.search(r'status="5\d\d"', line):
                total += float(line.rsplit(None, 1)[1])
    print(int(total))


def logs(*paths):
    warnings = errors = slow = 0
    for path in paths:
        with open(path, errors="replace") as f:
            for line in f:
                line = ANSI.sub("", line)
                match = LEVEL.search(line)
                if not match:
                    continue
                if "WARN" in match.groups():
                    warnings += 1
                    # sqlx: "acquired connection, but time to acquire exceeded slow threshold"
                    slow += "slow" in line and "acquire" in line
                else:
                    errors += 1
    print(warnings, errors, slow)


def value(text):
    if text in ("true", "false", "null"):
        return json.loads(text)
    if NUMBER.match(text):
        return json.loads(text)
    parts = text.split(",")
    if len(parts) > 1 and all(NUMBER.match(p) for p in parts):
        return [json.loads(p) for p in parts]
    return text


def report(pairs):
    out = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        out[key] = value(text)
    print(json.dumps(out, indent=2, ensure_ascii=False))


def serve():
    requests = sys.stdin
    for request in requests:
        answer = io.StringIO()
        try:
            command, input_path, *args = request.split()
            with open(input_path) as sys.stdin, contextlib.redirect_stdout(answer):
                run(command, args)
            line = " ".join(answer.getvalue().split())
        except Exception:  # any failure is an empty answer, which the caller reads as one
            line = ""
        finally:
            sys.stdin = requests
        print(line, flush=True)


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "serve":
        serve()
    else:
        run(command, args)


def run(command, args):
    if command == "devices":
        devices(*args)
    elif command == "faults":
        faults(*args)
    elif command == "rollout":
        rollout()
    elif command == "proc":
        proc(*args)
    elif command == "pg_cpu":
        pg_cpu()
    elif command == "pss":
        pss(*args)
    elif command == "http5xx":
        http5xx(*args)
    elif command == "logs":
        logs(*args)
    elif command == "report":
        report(args)
    else:
        sys.exit(f"bench_fleet.py: unknown command {command!r}")


if __name__ == "__main__":
    main()
