#!/usr/bin/env bash
# Runs every test of silo: formatting, lints, unit tests and the integration
# tests, which start their own MariaDB servers (127.0.0.1 only, temp dirs).
#
#   bash scripts/test.sh
#
# On Debian it installs what is missing first: mariadb-server and
# mariadb-client, and prometheus for promtool, from the distribution's
# packages (as root, or through sudo).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

missing=()
have mariadbd || missing+=(mariadb-server)
have mariadb || missing+=(mariadb-client)
# promtool checks the /metrics output.
have promtool || missing+=(prometheus)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]} from the distribution's packages"
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    elif command -v sudo >/dev/null 2>&1; then
        sudo apt-get update -qq
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "missing: ${missing[*]}; install them with: apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install a Rust toolchain (https://rustup.rs), then run this again" >&2
    exit 1
fi

cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings

# Unit tests and integration tests (real mariadbd), then one total line.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --lib --bins --tests 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { p += $4; f += $6 } END { printf "silo tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
