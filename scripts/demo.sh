#!/usr/bin/env bash
# silo demo: two throwaway MariaDB servers, three tenants, silo in front.
#
#   bash scripts/demo.sh            # installs MariaDB if missing, builds silo,
#                                   # starts everything; Ctrl-C stops it all
#
# Then, in another terminal:
#   mariadb -h127.0.0.1 -P6033 -uapp.acme   -papp-pass -e 'select * from items'
#   mariadb -h127.0.0.1 -P6033 -uapp.globex -papp-pass -e 'select * from items'
#
# Environment:
#   SILO_BIN   use this silo binary instead of building target/release/silo
#   RUST_LOG   silo's log filter (default: info)
#
# Ports (fixed by config/demo.toml): MariaDB 3307 and 3308, silo 6033, all on
# 127.0.0.1. Everything lives in a temp dir that is removed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib-mariadb.sh
. "$ROOT/scripts/lib-mariadb.sh"

CONFIG=$ROOT/config/demo.toml
BACKEND1_PORT=3307
BACKEND2_PORT=3308
SILO_PORT=6033

# Demo tenants: slug backend database db_user db_password status.
# Keep in sync with config/demo.toml.
TENANTS=(
    "acme 1 tenant_acme acme_rw acme-db-secret active"
    "globex 2 tenant_globex globex_rw globex-db-secret active"
    "initech 1 tenant_initech initech_rw initech-db-secret suspended"
)

TMP=
SILO_PID=
MDB_PIDS=()

# shellcheck disable=SC2317 # invoked through trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    trap '' PIPE # a tee on our output may be gone after Ctrl-C: keep cleaning
    set +e
    if [ -n "$SILO_PID" ]; then
        log "stopping silo"
        stop_pid "$SILO_PID" silo
    fi
    if [ "${#MDB_PIDS[@]}" -gt 0 ]; then
        log "stopping MariaDB servers"
        local pid
        for pid in "${MDB_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
        for pid in "${MDB_PIDS[@]}"; do stop_pid "$pid" mariadbd; done
    fi
    if [ -n "$TMP" ] && [ -d "$TMP" ]; then
        rm -rf -- "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. ports -------------------------------------------------------------
busy=()
for port in "$BACKEND1_PORT" "$BACKEND2_PORT" "$SILO_PORT"; do
    if port_in_use "$port"; then busy+=("$port"); fi
done
if [ "${#busy[@]}" -gt 0 ]; then
    {
        echo "error: port(s) ${busy[*]} already in use; the demo needs 3307, 3308 (MariaDB) and 6033 (silo) free on 127.0.0.1."
        echo "Listening there now:"
        for port in "${busy[@]}"; do ss -Hltnp "sport = :$port" 2>/dev/null || true; done
        echo "Stop those processes (an earlier demo still running?) and run this again."
    } >&2
    exit 1
fi

# --- 2. MariaDB and silo binaries ---------------------------------------
mdb_ensure_installed

if [ -z "${SILO_BIN:-}" ]; then
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found: install a Rust toolchain (https://rustup.rs, or apt-get install cargo) and run this again"
    log "building silo (cargo build --release)"
    (cd "$ROOT" && cargo build --release) || die "cargo build --release failed"
    SILO_BIN=$ROOT/target/release/silo
fi
[ -x "$SILO_BIN" ] || die "silo binary not found at $SILO_BIN (build it with: cargo build --release)"

# --- 3. two MariaDB servers ---------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/silo-demo.XXXXXX")
log "work dir $TMP"
B1=$TMP/backend1
B2=$TMP/backend2

log "initialising two MariaDB datadirs"
mdb_init "$B1" &
init1=$!
mdb_init "$B2" &
init2=$!
wait "$init1" || die "could not initialise $B1"
wait "$init2" || die "could not initialise $B2"

mdb_start "$B1" "$BACKEND1_PORT"
MDB_PIDS+=("$MDB_LAST_PID")
mdb_start "$B2" "$BACKEND2_PORT"
MDB_PIDS+=("$MDB_LAST_PID")
log "waiting for MariaDB on 127.0.0.1:$BACKEND1_PORT and :$BACKEND2_PORT"
mdb_wait "$B1" "$BACKEND1_PORT" "${MDB_PIDS[0]}" 60
mdb_wait "$B2" "$BACKEND2_PORT" "${MDB_PIDS[1]}" 60
# silo's health checks log in as silo_health (no password, no privileges).
for dir in "$B1" "$B2"; do
    mdb_sql "$dir" -e "CREATE USER IF NOT EXISTS 'silo_health'@'%'"
done

# --- 4. tenants ------------------------------------------------------------
backend_dir() { if [ "$1" = 1 ]; then echo "$B1"; else echo "$B2"; fi; }
backend_port() { if [ "$1" = 1 ]; then echo "$BACKEND1_PORT"; else echo "$BACKEND2_PORT"; fi; }

for t in "${TENANTS[@]}"; do
    read -r slug backend db user pw _status <<<"$t"
    dir=$(backend_dir "$backend")
    log "tenant $slug: database $db and user $user on backend $backend"
    mdb_create_tenant "$dir" "$db" "$user" "$pw"
    case $slug in
    acme) rows="('acme widget', 9.99), ('acme gadget', 24.50), ('acme anvil', 120.00)" ;;
    globex) rows="('globex hammock', 35.00), ('globex doomsday device', 999999.99)" ;;
    *) rows="('$slug stapler', 4.20), ('$slug TPS report cover', 0.99)" ;;
    esac
    mdb_sql "$dir" "$db" <<SQL
CREATE TABLE items (
    id INT AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    price DECIMAL(12,2) NOT NULL
);
INSERT INTO items (name, price) VALUES $rows;
SQL
done

# Quick self-check, straight to the backends: each tenant's own user reads
# its own rows over TCP (as silo will log in).
client=$(mdb_client)
for t in "${TENANTS[@]}"; do
    read -r slug backend db user pw _status <<<"$t"
    n=$("$client" --no-defaults -h127.0.0.1 -P"$(backend_port "$backend")" -u"$user" -p"$pw" \
        -N -B -e 'SELECT COUNT(*) FROM items' "$db") ||
        die "tenant user $user cannot read $db on backend $backend"
    log "check: $user reads $n rows of $db directly on backend $backend"
done

# --- 5. silo -------------------------------------------------------------
cat <<EOF

  MariaDB backend 1: 127.0.0.1:$BACKEND1_PORT (tenant_acme, tenant_initech)
  MariaDB backend 2: 127.0.0.1:$BACKEND2_PORT (tenant_globex)
  silo:              127.0.0.1:$SILO_PORT    config: config/demo.toml

  Try it, from another terminal:

    mariadb -h127.0.0.1 -P$SILO_PORT -uapp.acme -papp-pass -e 'select * from items'
    mariadb -h127.0.0.1 -P$SILO_PORT -uapp.globex -papp-pass -e 'select * from items'
    mariadb -h127.0.0.1 -P$SILO_PORT -uapp.initech -papp-pass -e 'select * from items'   # suspended: refused
    mariadb -h127.0.0.1 -P$SILO_PORT -uapp.acme -pwrong -e 'select 1'                    # wrong password: refused

  Press Ctrl-C to stop silo and both MariaDB servers.

EOF

log "starting silo: $SILO_BIN serve --config $CONFIG"
RUST_LOG=${RUST_LOG:-info} "$SILO_BIN" serve --config "$CONFIG" &
SILO_PID=$!
rc=0
wait "$SILO_PID" || rc=$?
SILO_PID=
if [ "$rc" -ne 0 ]; then
    log "silo exited with status $rc"
fi
exit "$rc"
