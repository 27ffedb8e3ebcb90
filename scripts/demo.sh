#!/usr/bin/env bash
# The rota product demo, in one command, on embedded defaults: an update server in a
# scratch directory, a simulated fleet, a staged rollout that completes, and a bad
# release whose rollout halts on its own. `DEVICES=N scripts/demo.sh` for another fleet
# size (default 100). Nothing is left running; the files stay for a look afterwards.
set -euo pipefail

repo_root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/lib/fleet.sh
source "$repo_root/scripts/lib/fleet.sh"
devices="${DEVICES:-100}"
if ! [[ "$devices" =~ ^[1-9][0-9]{1,3}$ ]] || ((devices > 1000)); then
    echo "demo: DEVICES must be a number from 10 to 1000 (got ${devices@Q})" >&2
    exit 2
fi
# Failures count toward the halt once this many devices finished (5 of 100): a small
# fleet's first stage must be able to reach it.
min_sample=$((devices >= 100 ? 5 : (devices >= 40 ? 2 : 1)))

if [[ -t 1 ]]; then
    bold=$'\033[1m' dim=$'\033[2m' green=$'\033[32m' yellow=$'\033[33m' red=$'\033[31m'
    off=$'\033[0m'
else
    bold='' dim='' green='' yellow='' red='' off=''
fi
# A step of the story, a command as a user types it (then run), an aside.
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
run() {
    printf '%s$ %s%s\n' "$bold" "$1" "$off"
    eval "$1"
}
# run, also saving the output in the file $1.
run_saving() {
    local file="$1"
    printf '%s$ %s%s\n' "$bold" "$2" "$off"
    eval "$2" | tee "$file"
}
# The shared steps (scripts/lib/fleet.sh) show their commands as the demo's own do.
fleet_run() { run "$@"; }
fleet_run_saving() { run_saving "$@"; }
note() { printf '%s%s%s\n' "$dim" "$*" "$off"; }
die() {
    printf '%sdemo: %s%s\n' "$red" "$*" "$off" >&2
    exit 1
}

# Waits up to $1 seconds for the command "${@:3}" to succeed; dies naming $2 otherwise.
wait_for() {
    local timeout="$1" what="$2" deadline=$((SECONDS + $1))
    shift 2
    until "$@"; do
        ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what"
        sleep 0.5
    done
}

printf '%sbuilding rota, rota-server and rota-agent (cargo build --release; the first build takes a while)...%s\n' "$dim" "$off"
# Not --quiet: cargo's progress shows how far a first build has got. The fleet needs the
# agent's simulator (`simulate`, `sim-image`): feature `sim`, off in the agent devices run.
# Plain `sim`, only rota-agent has it: `rota-agent/sim` would name the feature of the
# agent's dev-dependency on itself, inactive in this build.
cargo build --release --manifest-path "$repo_root/Cargo.toml" \
    -p rota-cli -p rota-server -p rota-agent --features sim
export PATH="${CARGO_TARGET_DIR:-$repo_root/target}/release:$PATH"
# The demo's server takes its settings from its flags alone.
while read -r name; do unset "$name"; done < <(compgen -e | grep '^ROTA_SERVER_' || true)

work="$(mktemp -d "${TMPDIR:-/tmp}/rota-demo.XXXXXX")"
cd "$work"
server_pid='' fleet_pid=''
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in $fleet_pid $server_pid; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    echo
    if ((status != 0)); then
        echo "The demo stopped early. Its files are in $work"
    else
        echo "The server and the fleet are stopped. Everything is in $work"
    fi
    echo "(keys, repo/, the signed firmware, data/ for the server, server.log, fleet.log)"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_clock=$SECONDS
printf '\n%srota: secure over-the-air firmware updates, a fleet of %s simulated devices%s\n' \
    "$bold" "$devices" "$off"
note "Everything runs on this machine, on 127.0.0.1, in $work"

step "1. Keys, made offline"
note "A firmware-signing key (devices trust its public half), the manufacturer's CA (it"
note "certifies each device's identity key) and a TUF repository with its own keys."
fleet_keys

step "2. The update server, on embedded defaults (SQLite and files in one directory)"
note "It gets only the TUF online keys (snapshot, timestamp) and the CA's public key."
fleet_server_files
note "Port 0: any free port on the loopback interface; the server logs which it took."
fleet_start_server '--poll-interval 1'
note "The server is up (/healthz answers) and wrote the first admin token."

step "3. The repository goes live"
fleet_push

step "4. Factory firmware 1.0.0 (sequence number 1), signed and published"
fleet_firmware 1.0.0 1
note "Published like every release, so the server knows its digest when devices attest to it."
fleet_publish 1.0.0

step "5. The fleet: $devices simulated devices come off the line and enrol"
note "Each gets an identity key certified by the factory CA, the firmware key's hash in"
note "its OTP, the TUF root, and 1.0.0 in slot A of its flash; rota-boot boots it and the"
note "real rota-agent runs on it, polling the server."
fleet_simulate "$devices" 1.0.0
fleet_running() { kill -0 "$fleet_pid" 2>/dev/null || die "the fleet stopped; fleet.log says: $(tail -n 5 fleet.log)"; }
# Enrolled: every device checked in (active, running version 1), and the fleet says so.
on_v1() { rota device list | awk '$3 == "active" && $4 == "1"' | wc -l | tr -d ' '; }
all_enrolled() {
    fleet_running && [[ "$(fleet_line)" == "fleet: 1.0.0 ×$devices" ]] && (($(on_v1) >= devices))
}
wait_for $((30 + devices / 2)) "the $devices devices to enrol" all_enrolled
run 'tail -n 1 fleet.log'
note "All $devices devices checked in: rota device list shows them active, on version 1."

step "5b. Measured boot: the server believes the bootloader, not the application"
note "Each simulated device's rota-boot derived a DeviceID from its UDS (certified at"
note "manufacture) and, for the image it booted, an Alias key and certificate (DICE). The"
note "class now requires that evidence: a confirmation counts only when the bootloader"
note "measured the new image, from the bootloader the class expects."
bootloader="$(sed -n 's/.*their bootloader measures \([0-9a-f]*\).*/\1/p' fleet.log | head -n 1)"
[[ -n "$bootloader" ]] || die "rota-agent simulate printed no bootloader measurement"
run "rota device attestation-policy --class $CLASS --policy required --bootloader $bootloader"

# `rota rollout status ID --watch`, condensed to a line per change (on a terminal, the
# line updates in place until the stage changes). Returns the command's exit status: 0
# when the rollout completed, 1 when it halted or was aborted.
watch_rollout() {
    local id="$1" timeout="$2" status=0
    printf '%s$ rota rollout status %s --watch%s\n' "$bold" "$id" "$off"
    note "(live, a line per change instead of the full table; seconds since the start on the left)"
    local started=$SECONDS
    set +e
    timeout "$timeout" rota rollout status "$id" --watch 2>watch.err | {
        local line state='' halted='' last_state='' text
        while IFS= read -r line; do
            case "$line" in
                state\ *)
                    state="$(echo "${line#state}" | sed 's/^ *//; s/ at stage \([0-9]*\) of \([0-9]*\)/, stage \1\/\2/')"
                    ;;
                halted\ *) halted="$(echo "${line#halted}" | sed 's/^ *//')" ;;
                total\ *)
                    read -r _ members _ assigned in_progress confirmed failed timed_out <<<"$line"
                    text="$(printf '%4ss  %-25s offered %3s/%s · confirmed %3s · updating %3s · failed %3s' \
                        "$((SECONDS - started))" "$state" "$assigned" "$members" "$confirmed" \
                        "$in_progress" "$((failed + timed_out))")"
                    if [[ -t 1 && "$state" == "$last_state" ]]; then
                        printf '\r\033[K%s' "$text"
                    else
                        [[ -n "$last_state" ]] && printf '\n'
                        printf '%s' "$text"
                    fi
                    last_state="$state"
                    ;;
            esac
        done
        [[ -n "$last_state" ]] && printf '\n'
        [[ -n "$halted" ]] && printf '%shalted: %s%s\n' "$yellow" "$halted" "$off"
        exit 0
    }
    status=${PIPESTATUS[0]}
    set -e
    if ((status == 124)); then
        die "the rollout did not finish within ${timeout}s (rota rollout status $id shows where it is)"
    fi
    if ((status != 0)) && ! grep -q 'halted\|aborted' watch.err; then
        cat watch.err >&2
        die "rota rollout status --watch failed"
    fi
    return "$status"
}
# The TOTAL row of `rota rollout status ID` (members pending assigned in-progress
# confirmed failed timed-out), printed as: members assigned in-progress confirmed
# failed timed-out.
rollout_totals() { rota rollout status "$1" | awk '$1 == "total" { print $2, $4, $5, $6, $7, $8 }'; }

step "6. Release 1.1.0 (sequence 2): build, sign, publish"
fleet_firmware 1.1.0 2
fleet_publish 1.1.0
good="$release"

step "7. A staged rollout of 1.1.0: 10%, then 50%, then everyone"
note "A stage passes when 90% of its devices confirmed the update (booted it on trial,"
note "passed their health check); after a 3 s soak the next starts. More than 20% failed"
note "devices (once $min_sample finished) would halt it."
fleet_rollout_create "$good" "--stages 10%,50%,100% --success-gate 0.9 --soak 3s --failure-threshold 0.2 --min-sample $min_sample --device-timeout 2m" 1.1.0
first="$rollout"
echo
watch_rollout "$first" $((90 + devices)) || die "the 1.1.0 rollout did not complete: $(cat watch.err)"
printf '%sRollout %s completed.%s\n' "$green" "$first" "$off"
fleet_on() { fleet_running && [[ "$(fleet_line)" == "fleet: $1 ×$devices" ]]; }
wait_for 60 "every device to run 1.1.0" fleet_on 1.1.0
run 'tail -n 1 fleet.log'

step "8. Release 1.2.0 (sequence 3): its self-test fails on half the devices"
note "Nobody knows that yet: it is signed and published like any release."
fleet_firmware 1.2.0 3 '--fail-health-percent 50'
fleet_publish 1.2.0
bad="$release"
fleet_rollout_create "$bad" "--stages 20%,50%,100% --success-gate 0.9 --soak 3s --failure-threshold 0.2 --min-sample $min_sample --device-timeout 2m" 1.2.0
second="$rollout"
echo
if watch_rollout "$second" $((90 + devices)); then
    die "the 1.2.0 rollout completed; it should have halted"
fi
halted_stage="$(rota rollout status "$second" | sed -n 's/^state *halted at stage \([0-9]*\) .*/\1/p')"
printf '%sRollout %s halted on its own, at stage %s of 3.%s\n' "$green" "$second" "${halted_stage:-?}" "$off"

# The devices that were trying 1.2.0 when it halted finish their trial: the fleet
# settles when the server has every device's outcome and nothing changed for 3 s.
settled_line='' settled_since=$SECONDS
fleet_settled() {
    fleet_running
    local line in_progress
    line="$(fleet_line)"
    read -r _ _ in_progress _ <<<"$(rollout_totals "$second")"
    if [[ "$line" != "$settled_line" || "$line" == *downloading* || "${in_progress:-1}" != 0 ]]; then
        settled_line="$line" settled_since=$SECONDS
        return 1
    fi
    ((SECONDS - settled_since >= 3))
}
note "Waiting for the devices that were trying 1.2.0 to finish..."
wait_for 90 "the fleet to settle" fleet_settled

step "9. Where the fleet stands"
run 'rota rollout status'
run 'tail -n 1 fleet.log'
printf '%s$ rota device list%s\n' "$bold" "$off"
rota device list >devices.txt
head -n 4 devices.txt
first_device="$(awk 'NR == 2 { print $1 }' devices.txt)"
run "rota device show $first_device"
tally() { # "2 ×96, 3 ×4" for column $1 of the device table
    awk -v c="$1" 'NR > 1 && NF > 2 { n[$c]++ } END { for (v in n) printf "%s ×%d\n", v, n[v] }' devices.txt |
        sort | paste -sd, - | sed 's/,/, /g'
}
note "... $(tail -n 1 devices.txt) (all in devices.txt): VERSION $(tally 4); LAST RESULT $(tally 6)"
note "ATTESTED (what each device's bootloader measured, from its latest evidence): $(awk 'NR > 1 && NF > 2 { n[$7]++ } END { for (v in n) printf "%s ×%d\n", v, n[v] }' devices.txt | sort | paste -sd, - | sed 's/,/, /g')"
count() { awk "$1" devices.txt | wc -l | tr -d ' '; }
on_v2="$(count '$4 == "2"')" on_v3="$(count '$4 == "3"')"
reverted="$(count '$6 == "reverted"')"
read -r members offered _ confirmed failed timed_out <<<"$(rollout_totals "$second")"

printf '\n%sSummary%s (%ss, after the build)\n' "$bold" "$off" "$((SECONDS - start_clock))"
echo "- 1.1.0 reached all $devices devices in three stages; every one confirmed it, and"
echo "  every confirmation carried evidence that the device's bootloader measured 1.1.0."
echo "- 1.2.0 was offered to $offered devices: $((failed + timed_out)) failed the self-test, which crossed"
echo "  the 20% failure threshold, so the server halted the rollout on its own at stage"
echo "  ${halted_stage:-?} of 3. The other $((members - offered)) devices were never offered 1.2.0."
echo "- Now 1.1.0 (version 2) runs on $on_v2 devices and 1.2.0 on $on_v3 (whose self-test passed)."
echo "  Those that failed ($reverted) reverted by themselves: each wrote 1.2.0 to its"
echo "  inactive A/B slot, booted it on trial, failed its health check and rejected it, and"
echo "  rota-boot went back to the confirmed 1.1.0 slot. No device was bricked, and no"
echo "  operator had to act."
