#!/usr/bin/env bash
# Every check rota's CI runs, in the order a failure is cheapest to find.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step's wall time, printed as it ends and summed up at the end: CI must stay under
# 20 minutes on 2 cores, and this says where the time goes.
timings=() step_name='' step_start=$SECONDS
end_step() {
    [[ -n "$step_name" ]] && timings+=("$(printf '%5ds  %s' $((SECONDS - step_start)) "$step_name")")
    step_name='' step_start=$SECONDS
}
step() {
    end_step
    step_name="$*"
    printf '\n\033[1m==> %s\033[0m\n' "$*"
}
report_timings() {
    local status=$?
    end_step
    printf '\n\033[1m==> step times (total %ds)\033[0m\n' "$SECONDS"
    printf '%s\n' "${timings[@]}"
    return "$status"
}
trap report_timings EXIT

# The bootloader target: rota-manifest and rota-boot must keep building without std,
# and the QEMU tests build the bootloader firmware for it.
if ! rustup target list --installed | grep -qx thumbv7em-none-eabihf; then
    step "installing the thumbv7em-none-eabihf target"
    rustup target add thumbv7em-none-eabihf
fi
# llvm-objcopy (firmware ELF to the raw binaries that are signed and flashed).
sysroot="$(rustc --print sysroot)"
host="$(rustc -vV | sed -n 's/^host: //p')"
if [[ ! -x "$sysroot/lib/rustlib/$host/bin/llvm-objcopy" ]]; then
    step "installing rustup's llvm-tools"
    rustup component add llvm-tools
fi
# The QEMU tests run the firmware on an emulated Cortex-M4.
if ! command -v qemu-system-arm >/dev/null 2>&1; then
    step "installing qemu-system-arm"
    if [[ "$(id -u)" == 0 ]]; then
        apt-get update -qq && apt-get install -y -qq qemu-system-arm
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq qemu-system-arm
    fi
fi
command -v qemu-system-arm >/dev/null || { echo "qemu-system-arm is required" >&2; exit 1; }
# Real PKCS#11 tokens for the hardware-key tests: SoftHSM2 (the HSM), a software TPM 2.0
# with tpm2-pkcs11 on top (a device's secure element), and OpenSC's pkcs11-tool.
if ! command -v softhsm2-util >/dev/null || ! command -v swtpm >/dev/null \
    || ! command -v pkcs11-tool >/dev/null || ! ls /usr/lib/*/pkcs11/libtpm2_pkcs11.so >/dev/null 2>&1; then
    step "installing SoftHSM2, swtpm, tpm2-pkcs11 and OpenSC"
    packages=(softhsm2 opensc swtpm swtpm-tools tpm2-tools libtpm2-pkcs11-1)
    if [[ "$(id -u)" == 0 ]]; then
        apt-get update -qq && apt-get install -y -qq "${packages[@]}"
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq "${packages[@]}"
    fi
fi
# The update server's tests: python-tuf is the reference TUF client they check the
# repository against, moto the S3-compatible server for the object-storage backend.
if ! python3 -c "import tuf.ngclient, moto.server" >/dev/null 2>&1; then
    step "installing python-tuf and moto[server]"
    python3 -m pip install -q tuf 'moto[server]'
fi
# schemathesis checks the server's answers against its own /openapi.json.
if ! command -v schemathesis >/dev/null 2>&1; then
    step "installing schemathesis"
    python3 -m pip install -q schemathesis
fi
# ...and PostgreSQL on 127.0.0.1:5432 (database `test`); start the local cluster if it
# stopped. The tests fail, never skip, when it is missing.
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    step "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
fi

step "format"
cargo fmt --all --check
cargo fmt --all --check --manifest-path bootloader/qemu/Cargo.toml

step "lint"
cargo clippy --workspace --all-targets --all-features -- -D warnings
# From its own directory, so its .cargo/config.toml applies: the firmware is linted for
# the target it runs on (thumbv7em, with its cfgs), not the host.
(cd bootloader/qemu && cargo clippy --release -- -D warnings)

step "docs (rustdoc, warnings denied: broken links and bare URLs fail)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features

step "tests (no_std default features: the bootloader's verify path)"
cargo test -p rota-manifest

step "tests (all crates, all features)"
# One run covers everything: rota-boot's verifier and decoder are type parameters (its
# features only add types), so every configuration is built and tested together.
cargo test --workspace --all-features

step "the server's API against its /openapi.json (schemathesis, 20 cases per operation)"
# The binaries the test run just built (cargo builds a package's binaries for its
# integration tests): a `cargo build` here would resolve features without the
# dev-dependencies and rebuild part of the tree.
ROTA_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug" \
    API_FUZZ_EXAMPLES="${API_FUZZ_EXAMPLES:-20}" scripts/api-fuzz.sh

step "rota-manifest and rota-boot compile for a bare-metal Cortex-M without std or alloc"
cargo check -p rota-manifest -p rota-boot --target thumbv7em-none-eabihf --no-default-features
# ...and with the P-256 verifier a bootloader for secure-element anchors would choose.
cargo check -p rota-manifest --target thumbv7em-none-eabihf --no-default-features --features p256

# The real bootloader, already built for the QEMU tests above (scripts/size-probe.sh
# measures the verifier alone in four configurations; it cold-builds each, so it is a
# measurement to run by hand, not a CI step).
step "size of the bootloader firmware"
scripts/bootloader-size.sh
