# The steps a fleet script shares (scripts/demo.sh, scripts/bench-fleet.sh): keys and a
# TUF repository, rota-server on loopback in ./data, signed simulated firmware, a
# simulated fleet, a published release and its rollout. Sourced, not run; every step
# works in the current directory and expects `rota`, `rota-server` and `rota-agent` on
# PATH, the agent built with its simulator (`cargo build -p rota-agent --features sim`).
#
# The caller defines:
#   fleet_run CMD             runs the command line CMD (the demo shows it first);
#   fleet_run_saving FILE CMD runs CMD with its standard output saved in FILE;
#   die MESSAGE               stops the script.
# The steps set server_pid, port, ROTA_SERVER and ROTA_TOKEN (exported), fleet_pid,
# release and rollout.

# The ids this vendor's devices carry, burnt in at the factory.
VENDOR=fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe
CLASS=1492af14-2569-5e48-bf42-9b2d51f2ab45

# A firmware-signing key (devices trust its public half), the manufacturer's CA (it
# certifies each device's identity key) and a TUF repository with its own keys.
fleet_keys() {
    fleet_run 'rota keygen --out firmware'
    fleet_run 'rota keygen --out factory-ca'
    fleet_run 'rota repo init --dir repo'
}

# The server's data directory gets only the TUF online keys and the CA's public key.
fleet_server_files() {
    fleet_run 'mkdir -p data/tuf-online-keys data/device-ca'
    fleet_run 'cp repo/online/*.key data/tuf-online-keys/ && cp factory-ca.pub data/device-ca/'
}

fleet_healthy() {
    local reply
    reply="$( (exec 3<>"/dev/tcp/127.0.0.1/$1" &&
        printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 &&
        read -r -t 2 line <&3 && echo "$line") 2>/dev/null)" || return 1
    [[ "$reply" == *" 200 "* ]]
}

# The port the server bound: it logs "rota-server listening address=127.0.0.1:PORT"
# (in colour on a terminal) to its log $1 (default server.log).
fleet_bound_port() {
    sed -e 's/\x1b\[[0-9;]*m//g' "${1:-server.log}" 2>/dev/null |
        sed -n 's/.*rota-server listening address=127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' | head -n 1
}

# Starts rota-server on embedded defaults in ./data, on any free loopback port (port 0:
# it logs which it took), with the extra flags $1; waits until /healthz answers, then
# exports ROTA_SERVER and ROTA_TOKEN for the rota commands.
fleet_start_server() {
    fleet_run "rota-server --data-dir data --listen 127.0.0.1:0${1:+ $1} > server.log 2>&1 &"
    server_pid=$!
    port=''
    local deadline=$((SECONDS + 30))
    until kill -0 "$server_pid" 2>/dev/null && port="$(fleet_bound_port)" &&
        [[ -n "$port" ]] && fleet_healthy "$port"; do
        if ! kill -0 "$server_pid" 2>/dev/null || ((SECONDS >= deadline)); then
            die "the server did not start; the end of server.log:
$(tail -n 20 server.log 2>/dev/null)"
        fi
        sleep 0.2
    done
    [[ -s data/admin.token ]] || die "the server wrote no data/admin.token"
    fleet_run "export ROTA_SERVER=http://127.0.0.1:$port ROTA_TOKEN=\$(cat data/admin.token)"
}

# The repository goes live: its signed metadata onto the server.
fleet_push() { fleet_run 'rota repo push --dir repo'; }

# Simulated firmware $1 (a label such as 1.1.0) with sequence number $2, signed for this
# vendor and class: firmware-$1.bin and firmware-$1.suit. $3: more `rota-agent
# sim-image` flags (--size, --fail-health-percent).
fleet_firmware() {
    fleet_run "rota-agent sim-image --label $1${3:+ $3} -o firmware-$1.bin"
    fleet_run "rota sign --key firmware.key --image firmware-$1.bin --vendor-id $VENDOR --class-id $CLASS --sequence $2 --security-version 1 -o firmware-$1.suit"
}

# Publishes firmware $1 (of fleet_firmware) and sets release to its id.
fleet_publish() {
    fleet_run_saving "publish-$1.out" "rota release publish --repo repo --image firmware-$1.bin --envelope firmware-$1.suit --trust-anchor firmware.pub"
    release="$(sed -n 's/^release id:[[:space:]]*//p' "publish-$1.out" | head -n 1)"
    [[ -n "$release" ]] || die "rota release publish printed no release id"
}

# $1 simulated devices with factory firmware $2 (of fleet_firmware) in slot A, their
# files in memory (or where $3 says, `--state-dir DIR`), running in the background into
# fleet.log; $3: more `rota-agent simulate` flags.
fleet_simulate() {
    fleet_run "rota-agent simulate --devices $1 --ca-key factory-ca.key --trust-anchor firmware.pub --factory-envelope firmware-$2.suit --factory-image firmware-$2.bin --tuf-root repo/root.json${3:+ $3} > fleet.log 2>&1 &"
    fleet_pid=$!
}

# The fleet's latest status line: "fleet: 1.0.0 ×80 · 1.1.0 ×20 · downloading 5".
fleet_line() { grep '^fleet:' fleet.log | tail -n 1; }

# Creates a rollout of release $1 with the `rota rollout create` flags $2, its output
# saved in rollout-$3.out; sets rollout to its id.
fleet_rollout_create() {
    fleet_run_saving "rollout-$3.out" "rota rollout create --release $1 $2"
    rollout="$(sed -n 's/^created rollout \([^ ]*\).*/\1/p' "rollout-$3.out" | head -n 1)"
    [[ -n "$rollout" ]] || die "rota rollout create printed no rollout id"
}
