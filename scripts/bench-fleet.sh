#!/usr/bin/env bash
# A fleet at scale against a real rota-server on loopback: N simulated devices
# (`rota-agent simulate`, 48 KiB images) enrol, then release 1.1.0 goes out in a 4-stage
# rollout (1%, 10%, 50%, 100% of the fleet; success gate 0.95, 5 s soak). Prints one
# JSON object on stdout (progress goes to stderr):
#   enrolment_s              fleet start → every device checked in on 1.0.0
#   rollout_s                `rota rollout create` → the rollout is completed
#   every_device_updated_s   `rota rollout create` → the server's fleet summary counts every
#                            device on 1.1.0 (fleet_all_new_s: the fleet says so)
#   devices_on_new_version, devices_left_behind, rollout_state and its total counts
#   server_/fleet_peak_rss_mib (VmHWM) and server_/fleet_cpu_s (user + system);
#   database_cpu_s, PostgreSQL's CPU time over the run (--db postgres; null on SQLite,
#   whose work is the server's own);
#   server_file_rss_mib, of that peak the mapped files at the end (the SQLite map);
#   server_peak_pss_mib, the largest proportional set size seen (every 2 s): VmHWM
#   counts a mapped database page once for each connection that maps it, PSS once
#   fleet_state_files_mib, the devices' files (in memory, on /dev/shm, unless --keep)
#   http_5xx (the server's /metrics), warnings and errors in the server's and the
#   fleet's logs (sqlx "slow acquire" warnings apart), the load average at start and end
# The run stops when every device runs 1.1.0, when nothing changed for --settle seconds
# after the rollout ended, or at --time-limit (stopped says which): it never hangs, and
# what it reached by then is the result. Nothing is left running.
#
# Usage: scripts/bench-fleet.sh [--devices N] [--db sqlite|postgres] [--poll SECONDS]
#          [--time-limit SECONDS] [--settle SECONDS] [--bin-dir DIR] [--out FILE] [--keep]
#          [--faults POWER,NETWORK,SELFTEST] [--workers N] [--replicas N]
#   --devices     fleet size (default 1000)
#   --db          sqlite: the server's embedded default; postgres: a fresh database on
#                 127.0.0.1:5432 (trust auth, user $PGUSER or postgres), dropped after
#   --poll        the server's poll interval, seconds between check-ins (default 10)
#   --time-limit  seconds from the fleet's start until the run stops (default 600)
#   --settle      seconds without a device changing version, once the rollout ended,
#                 after which the rest count as left behind (default 6 polls, >= 30)
#   --bin-dir     a directory with prebuilt rota, rota-server and rota-agent, the agent
#                 built with `--features sim` (to measure two builds alike); default:
#                 cargo build --release of this checkout
#   --out FILE    also write the JSON to FILE
#   --faults      percent of devices whose power is cut mid-download, that lose the
#                 network mid-download for 10 s, and whose new firmware fails its self-test
#                 (e.g. 1,1,0.5); the JSON then says how many healthy devices reached
#                 1.1.0, how many failing ones are back on 1.0.0, how many run neither
#                 (stranded), and whether the rollout counted each failure once
#   --replicas    rota-server processes on the one PostgreSQL database (default 1; more
#                 need --db postgres); the devices are spread over them in turn, and the
#                 server figures are summed (CPU, 5xx) or the largest (peak memory)
#   --workers     the simulator's bound on devices in a pass at once (default: its own)
#   --keep        keep the scratch directory (keys, data/, logs, and the devices' files in
#                 fleet/ rather than in memory)
set -euo pipefail

repo_root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/lib/fleet.sh
source "$repo_root/scripts/lib/fleet.sh"
helper="$repo_root/scripts/lib/bench_fleet.py"

devices=1000 db=sqlite poll=10 time_limit=600 settle='' bin_dir='' out='' keep='' faults='' workers='' replicas=1
image_size=48K image_capacity=64K
rollout_flags='--stages 1%,10%,50%,100% --success-gate 0.95 --soak 5s --failure-threshold 0.05 --min-sample 10 --device-timeout 10m'
usage() { sed -n '/^# Usage:/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while (($#)); do
    case "$1" in
        --devices) devices="${2:?}"; shift 2 ;;
        --db) db="${2:?}"; shift 2 ;;
        --poll) poll="${2:?}"; shift 2 ;;
        --time-limit) time_limit="${2:?}"; shift 2 ;;
        --settle) settle="${2:?}"; shift 2 ;;
        --bin-dir) bin_dir="${2:?}"; shift 2 ;;
        --out) out="${2:?}"; shift 2 ;;
        --keep) keep=1; shift ;;
        --faults) faults="${2:?}"; shift 2 ;;
        --workers) workers="${2:?}"; shift 2 ;;
        --replicas) replicas="${2:?}"; shift 2 ;;
        -h | --help) usage ;;
        *) echo "bench-fleet: unknown option ${1@Q}" >&2; usage ;;
    esac
done
for n in "$devices" "$poll" "$time_limit" ${settle:+"$settle"}; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "bench-fleet: ${n@Q} is not a positive number" >&2; exit 2; }
done
[[ "$db" == sqlite || "$db" == postgres ]] || { echo "bench-fleet: --db is sqlite or postgres" >&2; exit 2; }
[[ "$replicas" =~ ^[1-9]$ ]] || { echo "bench-fleet: --replicas is 1 to 9" >&2; exit 2; }
((replicas == 1)) || [[ "$db" == postgres ]] || { echo "bench-fleet: replicas share a PostgreSQL database: add --db postgres" >&2; exit 2; }
[[ -z "$workers" || "$workers" =~ ^[1-9][0-9]*$ ]] || { echo "bench-fleet: --workers is a positive number" >&2; exit 2; }
simulate_flags="--image-capacity $image_capacity${workers:+ --workers $workers}${keep:+ --state-dir fleet}"
if [[ -n "$faults" ]]; then
    IFS=, read -r power_pct network_pct selftest_pct <<<"$faults"
    for p in "$power_pct" "$network_pct" "$selftest_pct"; do
        [[ "$p" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "bench-fleet: --faults is POWER,NETWORK,SELFTEST percentages" >&2; exit 2; }
    done
    simulate_flags+=" --power-cuts $power_pct --network-drops $network_pct --outage 10s"
    simulate_flags+=" --self-test-failures $selftest_pct --fault-plan faults.json"
    # Self-test failures settle as fast as successes, so the first few reports of a small
    # first stage can be a third failures by chance (a 10,000-device run halted at 3 of
    # 11): the fault run gates at 25 % over at least 50 reports, to measure what it is
    # meant to, not the gate.
    rollout_flags="${rollout_flags/--failure-threshold 0.05/--failure-threshold 0.25}"
    rollout_flags="${rollout_flags/--min-sample 10/--min-sample 50}"
fi
settle="${settle:-$((6 * poll > 30 ? 6 * poll : 30))}"
[[ -z "$out" || "$out" == /* ]] || out="$PWD/$out"

say() { printf 'bench-fleet: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

if [[ -z "$bin_dir" ]]; then
    say "building rota, rota-server and rota-agent (cargo build --release, agent with its simulator)"
    cargo build --release --manifest-path "$repo_root/Cargo.toml" \
        -p rota-cli -p rota-server -p rota-agent --features sim >&2
    bin_dir="${CARGO_TARGET_DIR:-$repo_root/target}/release"
fi
bin_dir="$(cd "$bin_dir" && pwd)"
for bin in rota rota-server rota-agent; do
    [[ -x "$bin_dir/$bin" ]] || die "no $bin in $bin_dir"
done
export PATH="$bin_dir:$PATH"
# The settings come from the flags below alone; plain logs, at the server's own levels.
while read -r name; do unset "$name"; done < <(compgen -e | grep '^ROTA_SERVER_' || true)
unset RUST_LOG
export NO_COLOR=1

# Devices are tasks: the simulator holds a connection per worker and two sockets per
# faulty device's relay, the server as many, the database a few files. Raise the soft
# limit as far as the hard one allows.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[[ "$(ulimit -n)" == unlimited ]] || (($(ulimit -n) >= 8192)) ||
    say "warning: the open files limit $(ulimit -n) is low for a fleet with faults"

work="$(mktemp -d "${TMPDIR:-/tmp}/rota-bench-fleet.XXXXXX")"
cd "$work"
server_pid='' replica_pids='' fleet_pid='' pg_db='' pg_user="${PGUSER:-postgres}"
stop() {
    for pid in "$@"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop $fleet_pid $replica_pids $server_pid ${HELPER_PID:-}
    [[ -z "$pg_db" ]] || dropdb -h 127.0.0.1 -p 5432 -U "$pg_user" --if-exists --force "$pg_db" ||
        say "could not drop the database $pg_db"
    if [[ -n "$keep" ]] || ((status != 0)); then
        say "the run's files are in $work"
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The shared steps run quietly, their output in setup.log; none may take long.
fleet_run() { eval "$1" >>setup.log 2>&1 || die "failed: $1 (setup.log: $(tail -n 3 setup.log))"; }
fleet_run_saving() {
    eval "timeout 120 $2" >"$1" 2>>setup.log || die "failed: $2 (setup.log: $(tail -n 3 setup.log))"
}
# Milliseconds since the epoch; and a millisecond span as seconds with one decimal.
now_ms() { local t="${EPOCHREALTIME//[.,]/}"; echo $((t / 1000)); }
secs() { [[ -n "$1" ]] && printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100)) || echo null; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg | tr ' ' ','; }

say "$devices devices, $db, poll interval ${poll}s, time limit ${time_limit}s, in $work"
fleet_keys
fleet_server_files
server_flags="--poll-interval $poll"
# Each faulty device talks through a relay of its own, with its own keep-alive connection
# to the server, beyond the workers' shared pool: at the default connection limit (1,024)
# the server would close idle ones to make room, under the pool's next requests.
if [[ -n "$faults" ]]; then
    relays="$(awk -v n="$devices" -v p="$power_pct" -v q="$network_pct" 'BEGIN { printf "%d", n * (p + q) / 100 + 1 }')"
    server_flags+=" --max-connections $((1024 + relays))"
fi
if [[ "$db" == postgres ]]; then
    pg_db="rota_bench_$$_$RANDOM"
    createdb -h 127.0.0.1 -p 5432 -U "$pg_user" "$pg_db" || die "cannot create the database $pg_db"
    server_flags+=" --database-url postgres://$pg_user@127.0.0.1:5432/$pg_db"
    pg_cpu_start="$(python3 "$helper" pg_cpu)"
fi
fleet_start_server "$server_flags"
# More replicas: the same data directory (keys, artifacts) and database, their own ports.
servers="$ROTA_SERVER"
for r in $(seq 2 "$replicas"); do
    rota-server --data-dir data --listen 127.0.0.1:0 $server_flags >"server-$r.log" 2>&1 &
    replica_pids+=" $!"
    replica_port=''
    for _ in $(seq 150); do
        replica_port="$(fleet_bound_port "server-$r.log")"
        [[ -n "$replica_port" ]] && fleet_healthy "$replica_port" && break
        sleep 0.2
    done
    [[ -n "$replica_port" ]] || die "replica $r did not start: $(tail -n 5 "server-$r.log")"
    servers+=",http://127.0.0.1:$replica_port"
done
fleet_push
fleet_firmware 1.0.0 1 "--size $image_size"
fleet_firmware 1.1.0 2 "--size $image_size"
# The factory image is a release too, so the devices' enrolment attestation finds it.
fleet_publish 1.0.0
fleet_publish 1.1.0
image_bytes="$(stat -c %s firmware-1.1.0.bin)"

# The helper answers the loop's questions from one long-lived interpreter (its `serve`).
coproc HELPER { exec python3 "$helper" serve; }
# ask COMMAND INPUT ARG...: the helper's one-line answer; fails on an empty one.
ask() {
    local answer
    kill -0 "$HELPER_PID" 2>/dev/null || die "the measuring helper exited"
    printf '%s\n' "$*" >&"${HELPER[1]}"
    IFS= read -r -t 60 answer <&"${HELPER[0]}" && [[ -n "$answer" ]] && printf '%s\n' "$answer"
}
# The server's fleet summary: "ACTIVE CHECKED_IN ON_1.0.0 ON_1.1.0", or nothing if it did
# not answer in time (under load it may not).
device_counts() {
    timeout 60 rota device summary --json >summary.json 2>>monitor.log && ask devices "$PWD/summary.json" 1 2
}
# counts=(STATE MEMBERS ASSIGNED IN_PROGRESS CONFIRMED FAILED TIMED_OUT) of the rollout;
# unchanged if the server did not answer in time.
rollout_counts() {
    local line
    timeout 30 rota rollout status "$rollout" --json >status.json 2>>monitor.log &&
        line="$(ask rollout "$PWD/status.json")" || return 1
    read -r -a counts <<<"$line"
}

load_start="$(loadavg)"
fleet_simulate "$devices" 1.0.0 "$simulate_flags --server $servers"
t0="$(now_ms)"
deadline=$((t0 + time_limit * 1000))
expected_new="$devices" manufactured_at='' enrolled_at='' created_at='' ended_at='' completed_at='' fleet_all_at=''
updated_at='' stopped='' state='' last_change="$t0" next_list=0 list_failures=0
known=0 checked_in=0 on_old=0 on_new=0 server_pss=0
counts=(none 0 0 0 0 0 0)
while :; do
    now="$(now_ms)"
    if ((now >= deadline)); then stopped=time-limit; break; fi
    kill -0 "$server_pid" 2>/dev/null || { stopped=server-exited; say "$(tail -n 5 server.log)"; break; }
    kill -0 "$fleet_pid" 2>/dev/null || { stopped=fleet-exited; say "$(tail -n 5 fleet.log)"; break; }
    if [[ -z "$manufactured_at" ]] && grep -q 'simulated devices started' fleet.log; then
        manufactured_at="$now"
        # Self-test failures end back on 1.0.0: the rest is what "every device" means.
        [[ -z "$faults" ]] ||
            expected_new=$((devices - $(python3 -c 'import json,sys; print(sum(v == "self-test" for v in json.load(open(sys.argv[1])).values()))' faults.json)))
    fi
    # The fleet summary is two aggregate queries: every 2 s at most.
    if ((now >= next_list)); then
        if read -r known checked_in old new < <(device_counts); then
            ((new == on_new)) || last_change="$now"
            on_old="$old" on_new="$new"
        else
            list_failures=$((list_failures + 1))
        fi
        next_list=$((now + 2000))
        if pss="$(ask pss /dev/null "$server_pid" $replica_pids)" && ((pss > server_pss)); then
            server_pss="$pss"
        fi
        now="$(now_ms)"
        if [[ -z "$enrolled_at" ]] && ((on_old >= devices)); then
            enrolled_at="$now"
            say "$devices devices enrolled in $(secs $((enrolled_at - t0))) s; creating the rollout"
            created_at="$(now_ms)"
            fleet_rollout_create "$release" "$rollout_flags" 1.1.0
            last_change="$created_at"
        fi
        if [[ -n "$created_at" && -z "$updated_at" ]] && ((on_new >= expected_new)); then
            updated_at="$now"
            say "every device runs 1.1.0, $(secs $((updated_at - created_at))) s after the rollout was created"
        fi
    fi
    if [[ -n "$created_at" && -z "$ended_at" ]] && rollout_counts; then
        state="${counts[0]}"
        if [[ "$state" == completed || "$state" == halted || "$state" == aborted ]]; then
            ended_at="$(now_ms)"
            [[ "$state" != completed ]] || completed_at="$ended_at"
            say "rollout $state $(secs $((ended_at - created_at))) s after it was created"
        fi
    fi
    if [[ -z "$faults" && -n "$created_at" && -z "$fleet_all_at" && "$(fleet_line)" == "fleet: 1.1.0 ×$devices" ]]; then
        fleet_all_at="$(now_ms)"
    fi
    if [[ -n "$updated_at" && -n "$ended_at" ]]; then stopped=done; break; fi
    if [[ -n "$ended_at" ]] && ((now - (last_change > ended_at ? last_change : ended_at) >= settle * 1000)); then
        stopped=settled
        break
    fi
    sleep 1
done
elapsed=$(($(now_ms) - t0))
say "stopped ($stopped) after $(secs "$elapsed") s; measuring"

# The final figures, read before the processes stop: the counts, the 5xx answers the
# server counted, peak memory and CPU time.
if kill -0 "$server_pid" 2>/dev/null; then
    if read -r known checked_in old new < <(device_counts); then on_old="$old" on_new="$new"; fi
    if [[ -n "$faults" ]]; then
        read -r healthy_on_new failing_on_old failing_on_new stranded < <(
            timeout 60 rota device list --json 2>>monitor.log | python3 "$helper" faults faults.json 1 2) || true
    fi
    [[ -z "$created_at" ]] || rollout_counts || true
    http_5xx="$(python3 "$helper" http5xx ${servers//,/ } 2>>monitor.log || echo null)"
fi
read -r server_rss server_cpu server_rss_file < <(python3 "$helper" proc "$server_pid" $replica_pids 2>/dev/null || echo null null null)
read -r fleet_rss fleet_cpu _ < <(python3 "$helper" proc "$fleet_pid" 2>/dev/null || echo null null null)
database_cpu=null
[[ "$db" != postgres ]] ||
    database_cpu="$(python3 "$helper" pg_cpu | awk -v start="$pg_cpu_start" '{printf "%.2f", $1 - start}')"
# The devices' files: in memory (tmpfs) unless --keep, and then memory the fleet uses too.
state_dir="$(sed -n 's/^device files in \(.*[^)]\)\( (in memory.*\)\{0,1\}$/\1/p' fleet.log | head -n 1)"
fleet_state_mib="$( [[ -d "$state_dir" ]] && du -sk "$state_dir" | awk '{printf "%.1f", $1 / 1024}' || echo null)"
load_end="$(loadavg)"
stop "$fleet_pid" $replica_pids "$server_pid"
fleet_pid='' server_pid='' replica_pids=''
read -r server_warn server_err server_slow < <(python3 "$helper" logs $(compgen -G 'server*.log'))
read -r fleet_warn fleet_err _ < <(python3 "$helper" logs fleet.log)
# What the warnings and errors said, most frequent first (the scratch directory goes).
if ((server_warn + server_err + fleet_warn + fleet_err > 0)); then
    say "warnings and errors, by message:"
    sed -E 's/\x1b\[[0-9;]*m//g' server*.log fleet.log |
        sed -nE 's/^[0-9]{4}-[0-9-]+T\S+\s+(WARN|ERROR)\s+(.*)$/\1 \2/p' |
        sed -E 's/ (device|id|elapsed|aquired_after_secs|summary|db\.statement|rows_[a-z]+)=.*//' |
        cut -c1-240 | sort | uniq -c | sort -rn | head -n 8 >&2
fi

span() { [[ -n "$2" && -n "$1" ]] && secs $(($2 - $1)) || echo null; }
json="$(python3 "$helper" report \
    "devices=$devices" "database=$db" "replicas=$replicas" "poll_interval_s=$poll" "image_bytes=$image_bytes" \
    "rollout_flags=$rollout_flags" "time_limit_s=$time_limit" "settle_s=$settle" \
    "stopped=$stopped" "elapsed_s=$(secs "$elapsed")" \
    "manufactured_s=$(span "$t0" "$manufactured_at")" \
    "enrolment_s=$(span "$t0" "$enrolled_at")" \
    "rollout_s=$(span "$created_at" "$completed_at")" \
    "every_device_updated_s=$(span "$created_at" "$updated_at")" \
    "fleet_all_new_s=$(span "$created_at" "$fleet_all_at")" \
    "rollout_state=${counts[0]}" "rollout_members=${counts[1]}" "rollout_assigned=${counts[2]}" \
    "rollout_in_progress=${counts[3]}" "rollout_confirmed=${counts[4]}" \
    "rollout_failed=${counts[5]}" "rollout_timed_out=${counts[6]}" \
    "devices_enrolled=$known" "devices_on_new_version=$on_new" \
    "devices_left_behind=$((expected_new - on_new))" "devices_on_old_version=$on_old" \
    "server_peak_rss_mib=$server_rss" "server_cpu_s=$server_cpu" "server_file_rss_mib=$server_rss_file" \
    "server_peak_pss_mib=$server_pss" "database_cpu_s=$database_cpu" \
    "fleet_peak_rss_mib=$fleet_rss" "fleet_cpu_s=$fleet_cpu" "fleet_state_files_mib=$fleet_state_mib" \
    "http_5xx=${http_5xx:-null}" "server_warnings=$server_warn" "server_errors=$server_err" \
    "server_slow_acquire_warnings=$server_slow" "fleet_warnings=$fleet_warn" "fleet_errors=$fleet_err" \
    "fleet_summary_failures=$list_failures" \
    "faults=${faults:-none}" "expected_on_new_version=$expected_new" \
    "healthy_on_new_version=${healthy_on_new:-null}" "self_test_failures_on_old_version=${failing_on_old:-null}" \
    "self_test_failures_on_new_version=${failing_on_new:-null}" "stranded=${stranded:-null}" \
    "loadavg_start=$load_start" "loadavg_end=$load_end" \
    "binaries=$bin_dir" "server_sha256=$(sha256sum "$bin_dir/rota-server" | cut -c1-16)")"
[[ -z "$out" ]] || printf '%s\n' "$json" >"$out"
printf '%s\n' "$json"
