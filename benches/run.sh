#!/usr/bin/env bash
# silo load benchmark: direct MariaDB vs HAProxy (mode tcp) vs silo, silo
# with its plan limits on vs off, and silo scraped for metrics vs not, in
# one run, on this machine, with sysbench oltp_point_select.
#
#   cargo build --release && bash benches/run.sh
#
# It starts its own mariadbd (temp datadir), HAProxy and three silos (the
# second, silo-nolimits, has every plan limit "unlimited"; the third,
# silo-scraped, is the first's twin whose /metrics a curl loop fetches every
# BENCH_SCRAPE_INTERVAL seconds while it is measured), all on 127.0.0.1 and
# on free ports found from 23306 up; every silo has its metrics port on, so
# silo vs silo-scraped is what serving scrapes costs under load. It prepares
# one sysbench table in the tenant database tenant_acme; then, for each
# (threads, ps-mode), runs the same workload against direct, haproxy, silo,
# silo-nolimits and silo-scraped back to back (interleaved; the order
# rotates each round), and prints QPS, p50/p99 latency, each proxy's own CPU
# time per query, silo/silo-nolimits (what the limits cost) and
# silo-scraped/silo (what scraping costs). Then it runs the same
# workload from BENCH_MANY_CLIENTS client connections, directly and through
# a silo whose backend pool is capped at BENCH_MANY_POOL connections
# (transaction pool mode), and counts the connections MariaDB actually holds
# meanwhile. Then it measures silo's resident memory with BENCH_IDLE_CONNS
# idle logged-in client connections (and, for reference, HAProxy's and
# mariadbd's with the same number through HAProxy). Everything it starts is
# stopped on exit. Results are printed and written to
# target/bench-results.txt.
#
# Environment (defaults in brackets):
#   BENCH_SECONDS          seconds per measured run                     [8]
#   BENCH_ROUNDS           rounds of the whole matrix; medians reported [3]
#   BENCH_THREADS          client connection counts                     ["1 8 64"]
#   BENCH_PS_MODES         sysbench --db-ps-mode values                 ["auto disable"]
#   BENCH_TARGETS          subset of "direct haproxy silo silo-nolimits silo-scraped"
#                                                                       [all five]
#   BENCH_SCRAPE_INTERVAL  seconds between silo-scraped's scrapes       [1]
#   BENCH_TABLE_SIZE       rows in sbtest1                              [10000]
#   BENCH_SILO_THREADS     silo's [runtime] threads (0 = one per core)  [0]
#   BENCH_WARMUP_SECONDS   unrecorded warm-up per target at start       [3]
#   BENCH_IDLE_CONNS       idle connections for the memory test, 0=skip [5000]
#   BENCH_IDLE_HAPROXY     also measure the same through HAProxy (1/0)  [1]
#   BENCH_HAPROXY_THREADS  HAProxy nbthread                             [2]
#   BENCH_MATRIX           run the threads x ps-mode x target matrix    [1]
#   BENCH_MANY             run the many-clients part (1/0)              [1]
#   BENCH_MANY_CLIENTS     client connections in that part              [1000]
#   BENCH_MANY_POOL        silo's backend max_connections in that part  [64]
#   BENCH_MANY_MODE        silo's [pool] mode in that part              [transaction]
#                          (session serves it only if BENCH_MANY_POOL >= clients)
#   BENCH_MODE             silo's [pool] mode in the 1/8/64 matrix      [transaction]
#   SILO_BIN               silo binary                  [target/release/silo]
#   BENCH_OUT              results file           [target/bench-results.txt]
#   BENCH_KEEP_TMP         1 = keep the temp dir (logs) after the run   [0]
#   RUST_LOG               silo's log filter during the run             [warn]
#
# With the defaults a run takes about 19 minutes (3 rounds x 30 runs x 8 s,
# plus setup, the idle-connection test and 3 rounds x 4 many-clients runs).
# Several short interleaved rounds rather than one long run each: on a small
# VM the single-connection figures swing between runs (where the scheduler
# puts the client, proxy and server threads, idle-CPU wake-up latency), so
# the tables show the median and the min-max range of QPS over the rounds.
#
# Only the many-clients part:
#
#   BENCH_MATRIX=0 BENCH_IDLE_CONNS=0 bash benches/run.sh
#
# Only what scraping /metrics costs, short:
#
#   BENCH_MANY=0 BENCH_IDLE_CONNS=0 BENCH_SECONDS=6 BENCH_ROUNDS=2 \
#     BENCH_TARGETS="silo silo-scraped" BENCH_THREADS=8 bash benches/run.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib-mariadb.sh
. "$ROOT/scripts/lib-mariadb.sh"

BENCH_SECONDS=${BENCH_SECONDS:-8}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
BENCH_THREADS=${BENCH_THREADS:-"1 8 64"}
BENCH_PS_MODES=${BENCH_PS_MODES:-"auto disable"}
BENCH_TARGETS=${BENCH_TARGETS:-"direct haproxy silo silo-nolimits silo-scraped"}
BENCH_SCRAPE_INTERVAL=${BENCH_SCRAPE_INTERVAL:-1}
BENCH_TABLE_SIZE=${BENCH_TABLE_SIZE:-10000}
BENCH_SILO_THREADS=${BENCH_SILO_THREADS:-0}
BENCH_WARMUP_SECONDS=${BENCH_WARMUP_SECONDS:-3}
BENCH_IDLE_CONNS=${BENCH_IDLE_CONNS:-5000}
BENCH_IDLE_HAPROXY=${BENCH_IDLE_HAPROXY:-1}
BENCH_HAPROXY_THREADS=${BENCH_HAPROXY_THREADS:-2}
BENCH_MATRIX=${BENCH_MATRIX:-1}
BENCH_MANY=${BENCH_MANY:-1}
BENCH_MANY_CLIENTS=${BENCH_MANY_CLIENTS:-1000}
BENCH_MANY_POOL=${BENCH_MANY_POOL:-64}
BENCH_MANY_MODE=${BENCH_MANY_MODE:-transaction}
BENCH_MODE=${BENCH_MODE:-transaction}
SILO_BIN=${SILO_BIN:-$ROOT/target/release/silo}
BENCH_OUT=${BENCH_OUT:-$ROOT/target/bench-results.txt}
BENCH_KEEP_TMP=${BENCH_KEEP_TMP:-0}

# The tenant every target serves. Direct and HAProxy log in as the tenant's
# own database user; silo's clients log in as bench.<slug> (username-suffix
# identification) and silo logs in to MariaDB as the tenant's user.
SLUG=acme
DB=tenant_acme
DB_USER=acme_rw
DB_PASSWORD=acme-db-secret
APP_USER=bench
APP_PASSWORD=bench-pass

# --- arguments ---------------------------------------------------------------
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
check_range() { # NAME VALUE MIN MAX
    if ! is_uint "$2" || [ "$2" -lt "$3" ] || [ "$2" -gt "$4" ]; then
        die "$1=$2: expected an integer in $3..$4"
    fi
}
check_range BENCH_SECONDS "$BENCH_SECONDS" 1 600
check_range BENCH_ROUNDS "$BENCH_ROUNDS" 1 20
check_range BENCH_TABLE_SIZE "$BENCH_TABLE_SIZE" 100 10000000
check_range BENCH_WARMUP_SECONDS "$BENCH_WARMUP_SECONDS" 0 120
check_range BENCH_IDLE_CONNS "$BENCH_IDLE_CONNS" 0 50000
check_range BENCH_HAPROXY_THREADS "$BENCH_HAPROXY_THREADS" 1 64
check_range BENCH_SCRAPE_INTERVAL "$BENCH_SCRAPE_INTERVAL" 1 60
check_range BENCH_MATRIX "$BENCH_MATRIX" 0 1
check_range BENCH_MANY "$BENCH_MANY" 0 1
check_range BENCH_MANY_CLIENTS "$BENCH_MANY_CLIENTS" 1 10000
check_range BENCH_MANY_POOL "$BENCH_MANY_POOL" 1 10000
case $BENCH_MANY_MODE in session | transaction) ;; *) die "BENCH_MANY_MODE: '$BENCH_MANY_MODE' is not session or transaction" ;; esac
case $BENCH_MODE in session | transaction) ;; *) die "BENCH_MODE: '$BENCH_MODE' is not session or transaction" ;; esac
read -r -a THREADS <<<"$BENCH_THREADS"
read -r -a PS_MODES <<<"$BENCH_PS_MODES"
read -r -a TARGETS <<<"$BENCH_TARGETS"
[ "${#THREADS[@]}" -gt 0 ] || die "BENCH_THREADS is empty"
[ "${#PS_MODES[@]}" -gt 0 ] || die "BENCH_PS_MODES is empty"
[ "${#TARGETS[@]}" -gt 0 ] || die "BENCH_TARGETS is empty"
for t in "${THREADS[@]}"; do check_range "BENCH_THREADS item" "$t" 1 1024; done
for m in "${PS_MODES[@]}"; do
    case $m in auto | disable) ;; *) die "BENCH_PS_MODES: '$m' is not auto or disable" ;; esac
done
for t in "${TARGETS[@]}"; do
    case $t in direct | haproxy | silo | silo-nolimits | silo-scraped) ;; *) die "BENCH_TARGETS: '$t' is not direct, haproxy, silo, silo-nolimits or silo-scraped" ;; esac
done
has_target() {
    local t
    for t in "${TARGETS[@]}"; do [ "$t" = "$1" ] && return 0; done
    return 1
}
max_threads=0
for t in "${THREADS[@]}"; do [ "$t" -gt "$max_threads" ] && max_threads=$t; done
# The many-clients part compares direct and silo, whichever of the two are
# among BENCH_TARGETS.
MANY_TARGETS=()
if [ "$BENCH_MANY" = 1 ]; then
    for t in direct silo; do has_target "$t" && MANY_TARGETS+=("$t"); done
    [ "${#MANY_TARGETS[@]}" -gt 0 ] || BENCH_MANY=0
fi
[ "$BENCH_MATRIX" = 1 ] || [ "$BENCH_MANY" = 1 ] || [ "$BENCH_IDLE_CONNS" -gt 0 ] ||
    die "nothing to run: BENCH_MATRIX=0, BENCH_IDLE_CONNS=0 and no many-clients part"
# Who needs what: the matrix, the idle test and the many-clients part can
# each be switched off.
NEED_HAPROXY=0
if { [ "$BENCH_MATRIX" = 1 ] && has_target haproxy; } ||
    { [ "$BENCH_IDLE_CONNS" -gt 0 ] && [ "$BENCH_IDLE_HAPROXY" = 1 ]; }; then
    NEED_HAPROXY=1
fi
NEED_SILO=0 # the main silo of the matrix and the idle test
if has_target silo && { [ "$BENCH_MATRIX" = 1 ] || [ "$BENCH_IDLE_CONNS" -gt 0 ]; }; then
    NEED_SILO=1
fi
NEED_SILO_NL=0 # silo-nolimits: matrix only
if has_target silo-nolimits && [ "$BENCH_MATRIX" = 1 ]; then
    NEED_SILO_NL=1
fi
NEED_SILO_SC=0 # silo-scraped: matrix only
if has_target silo-scraped && [ "$BENCH_MATRIX" = 1 ]; then
    NEED_SILO_SC=1
fi

# --- tools -------------------------------------------------------------------
# need_tool COMMAND DEBIAN_PACKAGE : install it with apt-get when root,
# otherwise say what to install.
need_tool() {
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing $2 (for $1)"
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2"; } >&2 ||
            die "apt-get install $2 failed"
        command -v "$1" >/dev/null 2>&1 && return 0
    fi
    die "$1 is required: install the package '$2' (apt-get install $2)"
}
mdb_ensure_installed
need_tool sysbench sysbench
need_tool python3 python3
need_tool timeout coreutils
need_tool getconf libc-bin
if [ "$NEED_HAPROXY" = 1 ]; then need_tool haproxy haproxy; fi
if [ "$NEED_SILO_SC" = 1 ]; then need_tool curl curl; fi
if { has_target silo || has_target silo-nolimits || has_target silo-scraped; } && [ ! -x "$SILO_BIN" ]; then
    die "silo binary not found at $SILO_BIN: build it first with
    cargo build --release
(or point SILO_BIN at a build, or leave silo out: BENCH_TARGETS='direct haproxy')"
fi
CLK_TCK=$(getconf CLK_TCK)
MDB_CLIENT=$(mdb_client)
PY=python3
SBREPORT=$ROOT/benches/sbreport.py
IDLE=$ROOT/benches/idle_conns.py

# Open files: sysbench/HAProxy/silo/mariadbd inherit this; the idle test
# needs one descriptor per connection in silo and in the client, the
# many-clients part one per client in sysbench, silo and mariadbd, plus
# silo's backend connections.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ]; then ulimit -n 65536; else ulimit -n "$hard"; fi
need_fds=$((BENCH_IDLE_CONNS * 2 + 1024))
if [ "$(ulimit -n)" -lt "$need_fds" ]; then
    die "open-file limit $(ulimit -n) is below the $need_fds needed for BENCH_IDLE_CONNS=$BENCH_IDLE_CONNS (hard limit $hard): lower BENCH_IDLE_CONNS or raise the limit"
fi
if [ "$BENCH_MANY" = 1 ]; then
    need_fds=$((BENCH_MANY_CLIENTS * 2 + 1024))
    [ "$(ulimit -n)" -ge "$need_fds" ] ||
        die "open-file limit $(ulimit -n) is below the $need_fds needed for BENCH_MANY_CLIENTS=$BENCH_MANY_CLIENTS (hard limit $hard): lower BENCH_MANY_CLIENTS or raise the limit"
fi

# --- cleanup -----------------------------------------------------------------
TMP=
MDB_PID=
HAP_PID=
SILO_PID=
SILO_NL_PID=
SILO_SC_PID=
SILO_MANY_PID=
SAMPLER_PID=
SCRAPER_PID=
# shellcheck disable=SC2317 # invoked through trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    trap '' PIPE
    set +e
    stop_pid "$SAMPLER_PID" "connection sampler"
    stop_pid "$SCRAPER_PID" "metrics scraper"
    stop_pid "$SILO_SC_PID" silo-scraped
    stop_pid "$SILO_MANY_PID" silo
    stop_pid "$SILO_NL_PID" silo-nolimits
    stop_pid "$SILO_PID" silo
    stop_pid "$HAP_PID" haproxy
    stop_pid "$MDB_PID" mariadbd
    if [ -n "$TMP" ] && [ -d "$TMP" ]; then
        if [ "$BENCH_KEEP_TMP" = 1 ]; then
            log "kept $TMP"
        else
            rm -rf -- "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TMP=$(mktemp -d "${TMPDIR:-/tmp}/silo-bench.XXXXXX")
mkdir -p "$TMP/runs"
RUNS_TSV=$TMP/runs.tsv
: >"$RUNS_TSV"
MANY_TSV=$TMP/many.tsv
: >"$MANY_TSV"
# One line per scrape of silo-scraped: HTTP status, bytes, seconds.
SCRAPES_LOG=$TMP/scrapes.log
: >"$SCRAPES_LOG"
NOTES=()

# Run a private copy of silo: a rebuild during the run (the idle test
# restarts silo) must not swap the binary under the benchmark.
file_date() { date -u -r "$1" '+built %Y-%m-%d %H:%M UTC' 2>/dev/null || echo "not built"; }
SILO_BUILT=$(file_date "$SILO_BIN")
if has_target silo || has_target silo-nolimits || has_target silo-scraped; then
    cp "$SILO_BIN" "$TMP/silo"
    SILO_SRC=$SILO_BIN
    SILO_BIN=$TMP/silo
fi

DB_PORT=$(pick_port 23306)
HAP_PORT=$(pick_port $((DB_PORT + 1)))
SILO_PORT=$(pick_port $((HAP_PORT + 1)))
SILO_MANY_PORT=$(pick_port $((SILO_PORT + 1)))
SILO_NL_PORT=$(pick_port $((SILO_MANY_PORT + 1)))
SILO_SC_PORT=$(pick_port $((SILO_NL_PORT + 1)))
# Metrics ports: every silo of the matrix serves /metrics; only
# silo-scraped's is fetched.
SILO_METRICS_PORT=$(pick_port $((SILO_SC_PORT + 1)))
SILO_NL_METRICS_PORT=$(pick_port $((SILO_METRICS_PORT + 1)))
SILO_SC_METRICS_PORT=$(pick_port $((SILO_NL_METRICS_PORT + 1)))
SILO_MANY_METRICS_PORT=$(pick_port $((SILO_SC_METRICS_PORT + 1)))

# How busy is the machine before we start? (CPU busy % over 2 s; anything
# else running skews every figure.)
cpu_busy_pct() {
    local a b
    read -r -a a < <(grep '^cpu ' /proc/stat)
    sleep 2
    read -r -a b < <(grep '^cpu ' /proc/stat)
    # fields: user nice system idle iowait irq softirq steal
    local busy=$(((b[1] + b[2] + b[3] + b[6] + b[7] + b[8]) - (a[1] + a[2] + a[3] + a[6] + a[7] + a[8])))
    local idle=$(((b[4] + b[5]) - (a[4] + a[5])))
    echo $((100 * busy / (busy + idle + 1)))
}
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
BUSY_START=$(cpu_busy_pct)
if [ "$BUSY_START" -ge 15 ]; then
    log "warning: the machine is already ${BUSY_START}% busy before the benchmark starts; the figures will be skewed"
    NOTES+=("the machine was ${BUSY_START}% busy (CPU) before the benchmark started: other processes skew the figures")
fi
n_runs=0
[ "$BENCH_MATRIX" = 1 ] && n_runs=$((BENCH_ROUNDS * ${#THREADS[@]} * ${#PS_MODES[@]} * ${#TARGETS[@]}))
n_many=$((BENCH_ROUNDS * ${#PS_MODES[@]} * ${#MANY_TARGETS[@]}))
matrix_plan="rounds=$BENCH_ROUNDS threads='${THREADS[*]}' ps='${PS_MODES[*]}' targets='${TARGETS[*]}'"
[ "$BENCH_MATRIX" = 1 ] || matrix_plan="matrix skipped: BENCH_MATRIX=0"
log "plan: $n_runs runs of ${BENCH_SECONDS}s ($matrix_plan), $n_many runs with $BENCH_MANY_CLIENTS clients (${MANY_TARGETS[*]:-none}; silo pool mode $BENCH_MANY_MODE, backend cap $BENCH_MANY_POOL), about $(((n_runs * (BENCH_SECONDS + 2) + n_many * (BENCH_SECONDS + 8) + 60) / 60)) min plus the idle test"
log "work dir $TMP; ports: mariadbd $DB_PORT, haproxy $HAP_PORT, silo $SILO_PORT, silo (many clients) $SILO_MANY_PORT, silo-nolimits $SILO_NL_PORT, silo-scraped $SILO_SC_PORT (metrics $SILO_SC_METRICS_PORT)"
if [ "$BENCH_MANY" = 1 ] && [ "$BENCH_MANY_MODE" = session ] && [ "$BENCH_MANY_POOL" -lt "$BENCH_MANY_CLIENTS" ]; then
    log "warning: pool mode session holds a backend connection per client until it disconnects: with BENCH_MANY_POOL=$BENCH_MANY_POOL < $BENCH_MANY_CLIENTS clients, the first ones hold the pool and the others wait (the spread column shows it) or fail after lease_timeout_ms"
fi

# --- MariaDB -------------------------------------------------------------------
# Sized so it is not the bottleneck: the whole table in the buffer pool,
# room for every client (a direct run's, next to the pooled connections the
# two silos keep open), the idle test and the many-clients part (its direct
# clients, or silo's pool), no binlog, lazy flushing.
mdb_max_conn=$((BENCH_IDLE_CONNS + max_threads * 3 + 200))
many_conn=$((BENCH_MANY_CLIENTS + BENCH_MANY_POOL + 200))
[ "$BENCH_MANY" = 0 ] || [ "$mdb_max_conn" -ge "$many_conn" ] || mdb_max_conn=$many_conn
[ "$mdb_max_conn" -ge 1000 ] || mdb_max_conn=1000
mdb_init "$TMP/db"
mdb_start "$TMP/db" "$DB_PORT" \
    --innodb-buffer-pool-size=512M --innodb-log-file-size=256M \
    --innodb-flush-log-at-trx-commit=0 \
    --max-connections="$mdb_max_conn" --thread-cache-size=128 \
    --table-open-cache=2000 --max-prepared-stmt-count=1000000 \
    --back-log=4096
MDB_PID=$MDB_LAST_PID
mdb_wait "$TMP/db" "$DB_PORT" "$MDB_PID" 120
mdb_create_tenant "$TMP/db" "$DB" "$DB_USER" "$DB_PASSWORD"

SB_COMMON=(oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1
    --mysql-db="$DB" --tables=1 --table-size="$BENCH_TABLE_SIZE")
log "preparing sysbench table sbtest1 ($BENCH_TABLE_SIZE rows) in $DB"
timeout -k 5 600 sysbench "${SB_COMMON[@]}" --mysql-port="$DB_PORT" \
    --mysql-user="$DB_USER" --mysql-password="$DB_PASSWORD" prepare >"$TMP/prepare.log" 2>&1 ||
    { cat "$TMP/prepare.log" >&2; die "sysbench prepare failed"; }
mdb_sql "$TMP/db" "$DB" -e 'ANALYZE TABLE sbtest1; SELECT COUNT(*) FROM sbtest1' >/dev/null

# --- HAProxy -------------------------------------------------------------------
# nbthread 2: this machine has 2 cores, which is also HAProxy's own default
# here and the number of worker threads tokio gives silo, so both proxies
# get the same parallelism. (More threads than cores would only add
# contention with sysbench and mariadbd on the same 2 cores.)
start_haproxy() {
    # two descriptors per proxied connection, within our open-file limit
    local maxconn=$((BENCH_IDLE_CONNS + 2048)) fd_cap=$((($(ulimit -n) - 256) / 2))
    [ "$maxconn" -le "$fd_cap" ] || maxconn=$fd_cap
    cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread $BENCH_HAPROXY_THREADS
    maxconn $maxconn

defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h

frontend mysql
    bind 127.0.0.1:$HAP_PORT
    default_backend mariadb

backend mariadb
    # no health check: it would add connections and aborted handshakes
    server db1 127.0.0.1:$DB_PORT
EOF
    haproxy -c -q -f "$TMP/haproxy.cfg" >"$TMP/haproxy-check.log" 2>&1 ||
        { cat "$TMP/haproxy-check.log" >&2; die "haproxy config check failed"; }
    haproxy -db -f "$TMP/haproxy.cfg" </dev/null >>"$TMP/haproxy.log" 2>&1 &
    HAP_PID=$!
    wait_port "$HAP_PORT" 20 "$HAP_PID" ||
        { tail -n 20 "$TMP/haproxy.log" >&2; die "haproxy did not listen on 127.0.0.1:$HAP_PORT"; }
}

# --- silo ----------------------------------------------------------------------
# plan_limits on|off MAX_CLIENTS BACKEND_MAX : the bench plan. on: every
# limit finite but never reached, so each is checked on every statement;
# off: all "unlimited" (silo-nolimits), so silo/silo-nolimits is what the
# checks cost.
plan_limits() {
    if [ "$1" = on ]; then
        printf '[[plans]]\nname = "bench"\nweight = 8\nmax_client_connections = %s\nmax_backend_leases = %s\nqueue_timeout_ms = 10000\nmax_queries_per_second = 100000000\nburst = 100000000\nmax_query_time_ms = 60000\nmax_queries_per_day = 1000000000000\n' "$2" "$3"
    else
        printf '[[plans]]\nname = "bench"\nweight = 8\nmax_client_connections = "unlimited"\nmax_backend_leases = "unlimited"\nqueue_timeout_ms = 10000\nmax_queries_per_second = "unlimited"\nburst = "unlimited"\nmax_query_time_ms = "unlimited"\nmax_queries_per_day = "unlimited"\n'
    fi
}

# write_silo_config FILE PORT POOL_MODE BACKEND_MAX MAX_CLIENTS LIMITS METRICS_PORT
# LIMITS: on or off, see plan_limits. METRICS_PORT: the [metrics] listener.
write_silo_config() {
    local file=$1 port=$2 mode=$3 backend_max=$4 max_clients=$5 limits=$6 metrics_port=$7
    cat >"$file" <<EOF
# generated by benches/run.sh
[listen]
mysql = "127.0.0.1:$port"

[metrics]
listen = "127.0.0.1:$metrics_port"

[runtime]
threads = $BENCH_SILO_THREADS

[pool]
mode = "$mode"
lease_timeout_ms = 10000
reset_timeout_ms = 2000
max_lifetime_ms = 3600000

[identification]
order = ["username_suffix"]

[[backends]]
id = 1
host = "127.0.0.1"
port = $DB_PORT
max_connections = $backend_max
connect_timeout_ms = 5000
idle_timeout_ms = 300000

$(plan_limits "$limits" "$max_clients" "$backend_max")

[[tenants]]
slug = "$SLUG"
status = "active"
plan = "bench"
backend = 1
database = "$DB"
db_user = "$DB_USER"
db_password = "$DB_PASSWORD"

[[users]]
username = "$APP_USER"
tenant = "$SLUG"
password = "$APP_PASSWORD"
EOF
}

# check_silo_config LABEL FILE : silo check-config; on refusal record why
# in the notes and return 1.
check_silo_config() {
    local label=$1 file=$2
    if ! "$SILO_BIN" check-config --config "$file" >"$file.check.log" 2>&1; then
        cat "$file.check.log" >&2
        NOTES+=("$label: silo check-config refused the generated config ($file): $(tr '\n' ' ' <"$file.check.log" | cut -c1-300)")
        return 1
    fi
}

# launch_silo LABEL CONFIG PORT LOG PID_VAR : start silo (its PID goes to
# the global named PID_VAR at once, so the EXIT trap can stop it), check a
# real login; on failure record why in the notes, stop it and return 1.
launch_silo() {
    local label=$1 config=$2 port=$3 logf=$4 pidvar=$5 pid
    check_silo_config "$label" "$config" || return 1
    RUST_LOG=${RUST_LOG:-warn} "$SILO_BIN" serve --config "$config" </dev/null >>"$logf" 2>&1 &
    pid=$!
    printf -v "$pidvar" '%s' "$pid"
    if ! wait_port "$port" 30 "$pid"; then
        tail -n 20 "$logf" >&2
        NOTES+=("$label: silo did not listen on 127.0.0.1:$port (log tail: $(tail -n 3 "$logf" | tr '\n' ' ' | cut -c1-300))")
        stop_pid "$pid" silo
        printf -v "$pidvar" '%s' ""
        return 1
    fi
    local out
    if ! out=$(timeout -k 2 20 "$MDB_CLIENT" --no-defaults -h127.0.0.1 -P"$port" \
        -u"$APP_USER.$SLUG" -p"$APP_PASSWORD" -N -B \
        -e 'SELECT COUNT(*) FROM sbtest1' "$DB" 2>&1); then
        printf '%s\n' "$out" >&2
        tail -n 20 "$logf" >&2
        NOTES+=("$label: silo refused or failed the login check (mariadb -u$APP_USER.$SLUG ... 'SELECT COUNT(*) FROM sbtest1'): $(printf '%s' "$out" | tr '\n' ' ' | cut -c1-300)")
        stop_pid "$pid" silo
        printf -v "$pidvar" '%s' ""
        return 1
    fi
    log "$label: silo answers: $APP_USER.$SLUG sees $out rows in sbtest1"
}

# start_silo : the main silo (matrix and idle test); on failure it is left
# out and the rest of the bench goes on.
start_silo() {
    launch_silo silo "$TMP/silo.toml" "$SILO_PORT" "$TMP/silo.log" SILO_PID
}

# start_silo_nolimits : the same binary and config but every plan limit
# "unlimited", for the matrix only; on failure it is left out likewise.
start_silo_nolimits() {
    launch_silo silo-nolimits "$TMP/silo-nolimits.toml" "$SILO_NL_PORT" \
        "$TMP/silo-nolimits.log" SILO_NL_PID
}

# start_silo_scraped : the main silo's twin (limits on, metrics port on),
# scraped while it is measured; matrix only, left out likewise on failure.
start_silo_scraped() {
    launch_silo silo-scraped "$TMP/silo-scraped.toml" "$SILO_SC_PORT" \
        "$TMP/silo-scraped.log" SILO_SC_PID
}

# start_scraper SECONDS : fetches silo-scraped's /metrics every
# BENCH_SCRAPE_INTERVAL s in the background, as Prometheus would, for
# SECONDS + 30 s at most (stopped when the run ends); one line per scrape
# in SCRAPES_LOG (HTTP status, bytes, seconds).
start_scraper() {
    # shellcheck disable=SC2016 # expanded by the inner shell
    timeout -k 2 $(($1 + 30)) bash -c '
        while :; do
            curl -s -o /dev/null --max-time 5 -w "%{http_code} %{size_download} %{time_total}\n" "$1" ||
                echo "000 0 0"
            sleep "$2"
        done' scraper "http://127.0.0.1:$SILO_SC_METRICS_PORT/metrics" "$BENCH_SCRAPE_INTERVAL" \
        >>"$SCRAPES_LOG" 2>/dev/null &
    SCRAPER_PID=$!
}

if [ "$NEED_HAPROXY" = 1 ]; then start_haproxy; fi
SILO_OK=0
SILO_NL_OK=0
SILO_SC_OK=0
silo_backend_max=$((max_threads * 2))
[ "$silo_backend_max" -ge 128 ] || silo_backend_max=128
silo_max_clients=$((BENCH_IDLE_CONNS + max_threads * 2 + 100))
if [ "$NEED_SILO" = 1 ]; then
    write_silo_config "$TMP/silo.toml" "$SILO_PORT" "$BENCH_MODE" "$silo_backend_max" \
        "$silo_max_clients" on "$SILO_METRICS_PORT"
    if start_silo; then SILO_OK=1; else log "silo is left out of this run"; fi
fi
if [ "$NEED_SILO_NL" = 1 ]; then
    write_silo_config "$TMP/silo-nolimits.toml" "$SILO_NL_PORT" "$BENCH_MODE" "$silo_backend_max" \
        "$silo_max_clients" off "$SILO_NL_METRICS_PORT"
    if start_silo_nolimits; then SILO_NL_OK=1; else log "silo-nolimits is left out of this run"; fi
fi
if [ "$NEED_SILO_SC" = 1 ]; then
    write_silo_config "$TMP/silo-scraped.toml" "$SILO_SC_PORT" "$BENCH_MODE" "$silo_backend_max" \
        "$silo_max_clients" on "$SILO_SC_METRICS_PORT"
    if start_silo_scraped; then SILO_SC_OK=1; else log "silo-scraped is left out of this run"; fi
fi

# --- measurement -------------------------------------------------------------
# proc_ticks PID : utime + stime of PID (fields 14 and 15 of /proc/PID/stat,
# all threads), in clock ticks.
proc_ticks() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo -; return; }
    local -a f
    read -r -a f <<<"${stat##*) }" # fields from 3 (state) on: field N is f[N-3]
    echo $((f[11] + f[12]))
}

target_pid() {
    case $1 in
    haproxy) echo "$HAP_PID" ;;
    silo) echo "$SILO_PID" ;;
    silo-nolimits) echo "$SILO_NL_PID" ;;
    silo-scraped) echo "$SILO_SC_PID" ;;
    silo-many) echo "$SILO_MANY_PID" ;;
    *) echo "" ;;
    esac
}

# sb_args TARGET : connection arguments for sysbench.
sb_conn() {
    case $1 in
    direct) echo "--mysql-port=$DB_PORT --mysql-user=$DB_USER --mysql-password=$DB_PASSWORD" ;;
    haproxy) echo "--mysql-port=$HAP_PORT --mysql-user=$DB_USER --mysql-password=$DB_PASSWORD" ;;
    silo) echo "--mysql-port=$SILO_PORT --mysql-user=$APP_USER.$SLUG --mysql-password=$APP_PASSWORD" ;;
    silo-nolimits) echo "--mysql-port=$SILO_NL_PORT --mysql-user=$APP_USER.$SLUG --mysql-password=$APP_PASSWORD" ;;
    silo-scraped) echo "--mysql-port=$SILO_SC_PORT --mysql-user=$APP_USER.$SLUG --mysql-password=$APP_PASSWORD" ;;
    silo-many) echo "--mysql-port=$SILO_MANY_PORT --mysql-user=$APP_USER.$SLUG --mysql-password=$APP_PASSWORD" ;;
    esac
}

# per_query_us TICKS QUERIES : CPU microseconds per query, or "-".
per_query_us() {
    if [ "$1" != - ] && [ "$2" != - ] && [ "$2" -gt 0 ]; then
        awk -v t="$1" -v h="$CLK_TCK" -v q="$2" 'BEGIN { printf "%.1f", t / h * 1e6 / q }'
    else
        echo -
    fi
}

# sb_measure OUT THREADS PS TARGET SECONDS : one sysbench run against
# TARGET, output in OUT. Sets SB_RC (exit status; 99 = no result in the
# output), SB_PROXY_TICKS and SB_MDB_TICKS (CPU ticks of the proxy and of
# mariadbd over the run, or "-") and SB_PARSED (sbreport.py parse's line).
sb_measure() {
    local out=$1 threads=$2 ps=$3 target=$4 secs=$5
    local ppid t0p t1p t0m t1m
    SB_RC=0
    ppid=$(target_pid "$target")
    t0p=$([ -n "$ppid" ] && proc_ticks "$ppid" || echo -)
    t0m=$(proc_ticks "$MDB_PID")
    # Connection setup of many threads adds to the run's wall time.
    # shellcheck disable=SC2046 # sb_conn prints separate words without spaces inside
    timeout -k 5 $((secs + 60 + threads / 10)) sysbench "${SB_COMMON[@]}" $(sb_conn "$target") \
        --threads="$threads" --time="$secs" --events=0 --db-ps-mode="$ps" \
        --percentile=99 --histogram=on --report-interval=0 run >"$out" 2>&1 || SB_RC=$?
    t1p=$([ -n "$ppid" ] && proc_ticks "$ppid" || echo -)
    t1m=$(proc_ticks "$MDB_PID")
    SB_PROXY_TICKS=-
    SB_MDB_TICKS=-
    if [ "$t0p" != - ] && [ "$t1p" != - ]; then SB_PROXY_TICKS=$((t1p - t0p)); fi
    if [ "$t0m" != - ] && [ "$t1m" != - ]; then SB_MDB_TICKS=$((t1m - t0m)); fi
    if SB_PARSED=$("$PY" "$SBREPORT" parse "$out"); then :; else
        SB_PARSED=$'-\t-\t-\t-\t-\t-\t-\t-\t-'
        [ "$SB_RC" -ne 0 ] || SB_RC=99
    fi
}

# run_one ROUND THREADS PS TARGET SECONDS [record]
run_one() {
    local round=$1 threads=$2 ps=$3 target=$4 secs=$5 record=${6:-record}
    local out="$TMP/runs/r$round-t$threads-$ps-$target.out"
    if [ "$target" = silo-scraped ] && [ "$record" = record ]; then start_scraper "$secs"; fi
    sb_measure "$out" "$threads" "$ps" "$target" "$secs"
    if [ -n "$SCRAPER_PID" ]; then
        stop_pid "$SCRAPER_PID" "metrics scraper"
        SCRAPER_PID=
    fi
    [ "$record" = record ] || return "$SB_RC"
    local rc=$SB_RC dp=$SB_PROXY_TICKS dm=$SB_MDB_TICKS
    local queries qps p50 p99 sbp99 errors _rest
    IFS=$'\t' read -r queries qps p50 p99 sbp99 errors _rest <<<"$SB_PARSED"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$round" "$threads" "$ps" "$target" "$rc" "$queries" "$qps" "$p50" "$p99" \
        "$sbp99" "$errors" "$dp" "$dm" >>"$RUNS_TSV"
    if [ "$rc" -ne 0 ]; then
        log "round $round threads=$threads ps=$ps $target: FAILED (exit $rc); last lines of $out:"
        tail -n 5 "$out" >&2
        return 0
    fi
    log "$(printf 'round %s threads=%-3s ps=%-7s %-13s %9.0f qps  p50 %6.3f ms  p99 %6.3f ms (sysbench p99 %s)  proxy %5s us/q  mariadbd %5s us/q' \
        "$round" "$threads" "$ps" "$target" "$qps" "$p50" "$p99" "$sbp99" \
        "$(per_query_us "$dp" "$queries")" "$(per_query_us "$dm" "$queries")")"
}

active_targets() {
    local t
    for t in "${TARGETS[@]}"; do
        if [ "$t" = silo ] && [ "$SILO_OK" != 1 ]; then continue; fi
        if [ "$t" = silo-nolimits ] && [ "$SILO_NL_OK" != 1 ]; then continue; fi
        if [ "$t" = silo-scraped ] && [ "$SILO_SC_OK" != 1 ]; then continue; fi
        printf '%s\n' "$t"
    done
}

if [ "$BENCH_MATRIX" = 1 ]; then
    mapfile -t RUN_TARGETS < <(active_targets)
    [ "${#RUN_TARGETS[@]}" -gt 0 ] || die "no target left to measure"

    if [ "$BENCH_WARMUP_SECONDS" -gt 0 ]; then
        for t in "${RUN_TARGETS[@]}"; do
            log "warm-up: $t (${BENCH_WARMUP_SECONDS}s, 8 threads, not recorded)"
            run_one 0 8 auto "$t" "$BENCH_WARMUP_SECONDS" warmup ||
                log "warm-up against $t failed (see $TMP/runs/r0-t8-auto-$t.out)"
        done
    fi

    for ((round = 1; round <= BENCH_ROUNDS; round++)); do
        for threads in "${THREADS[@]}"; do
            for ps in "${PS_MODES[@]}"; do
                n=${#RUN_TARGETS[@]}
                for ((i = 0; i < n; i++)); do
                    target=${RUN_TARGETS[$(((i + round - 1) % n))]}
                    if [ "$target" = silo ] && ! kill -0 "$SILO_PID" 2>/dev/null; then
                        [ "$SILO_OK" = 1 ] && NOTES+=("silo exited during the throughput runs; its remaining runs were skipped (log tail: $(tail -n 3 "$TMP/silo.log" | tr '\n' ' ' | cut -c1-300))")
                        SILO_OK=0
                        continue
                    fi
                    if [ "$target" = silo-nolimits ] && ! kill -0 "$SILO_NL_PID" 2>/dev/null; then
                        [ "$SILO_NL_OK" = 1 ] && NOTES+=("silo-nolimits exited during the throughput runs; its remaining runs were skipped (log tail: $(tail -n 3 "$TMP/silo-nolimits.log" | tr '\n' ' ' | cut -c1-300))")
                        SILO_NL_OK=0
                        continue
                    fi
                    if [ "$target" = silo-scraped ] && ! kill -0 "$SILO_SC_PID" 2>/dev/null; then
                        [ "$SILO_SC_OK" = 1 ] && NOTES+=("silo-scraped exited during the throughput runs; its remaining runs were skipped (log tail: $(tail -n 3 "$TMP/silo-scraped.log" | tr '\n' ' ' | cut -c1-300))")
                        SILO_SC_OK=0
                        continue
                    fi
                    run_one "$round" "$threads" "$ps" "$target" "$BENCH_SECONDS"
                done
            done
        done
    done
    # Only the matrix measures it; its pooled connections would be counted
    # by the many-clients part and it would hold memory in the idle test.
    if [ -n "$SILO_NL_PID" ]; then
        stop_pid "$SILO_NL_PID" silo-nolimits
        SILO_NL_PID=
    fi
    if [ -n "$SILO_SC_PID" ]; then
        stop_pid "$SILO_SC_PID" silo-scraped
        SILO_SC_PID=
    fi
fi

# --- many clients through a small backend pool -------------------------------
# BENCH_MANY_CLIENTS sysbench connections straight to mariadbd, and the same
# through a silo whose backend max_connections is BENCH_MANY_POOL. During
# every run, the PROCESSLIST rows of the tenant's database user are counted
# over the root socket: sysbench (direct) and silo (backend side) log in as
# that user and nothing else does, so the count is the connections MariaDB
# holds for the run.
CONNS_SQL="SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = $(sql_quote "$DB_USER")"

# db_user_conns : connections of DB_USER open on mariadbd now, or "-".
db_user_conns() {
    local n
    n=$(timeout -k 2 10 "$MDB_CLIENT" --no-defaults --protocol=socket -S "$TMP/db/mysql.sock" \
        -uroot -N -B -e "$CONNS_SQL" 2>/dev/null) || n=-
    echo "${n:--}"
}

# wait_db_user_idle : wait (30 s at most) until the previous run's
# connections are gone; print the count left.
wait_db_user_idle() {
    local deadline=$((SECONDS + 30)) n
    while :; do
        n=$(db_user_conns)
        if [ "$n" = 0 ] || [ "$SECONDS" -ge "$deadline" ]; then
            echo "$n"
            return 0
        fi
        sleep 0.2
    done
}

# start_conn_sampler OUT SECONDS : a root client in the background printing
# that count every 0.5 s, for SECONDS + 2 min at most (stopped when the run
# ends). One connection for all samples: no process start and login per
# sample on the CPUs the run uses.
start_conn_sampler() {
    local out=$1 n=$((($2 + 120) * 2)) i
    for ((i = 0; i < n; i++)); do printf '%s;\nDO SLEEP(0.5);\n' "$CONNS_SQL"; done >"$TMP/sampler.sql"
    timeout -k 2 $(($2 + 130)) "$MDB_CLIENT" --no-defaults --protocol=socket -S "$TMP/db/mysql.sock" \
        -uroot -N -B --unbuffered <"$TMP/sampler.sql" >"$out" 2>"$out.err" &
    SAMPLER_PID=$!
}

# conn_stats FILE : "max median samples" of the sampler's counts.
conn_stats() {
    { grep -E '^[0-9]+$' "$1" || true; } | sort -n | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "- - 0"; exit }
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            print v[NR], m, NR
        }'
}

# many_record ROUND PS TARGET RC [PARSED PROXY_TICKS MDB_TICKS BEFORE MAX MEDIAN SAMPLES]
many_record() {
    local parsed=${5:-$'-\t-\t-\t-\t-\t-\t-\t-\t-'}
    local queries qps p50 p99 sbp99 errors _reconnects max_ms spread
    IFS=$'\t' read -r queries qps p50 p99 sbp99 errors _reconnects max_ms spread <<<"$parsed"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$1" "$BENCH_MANY_CLIENTS" "$2" "$3" "$4" "$queries" "$qps" "$p50" "$p99" "$sbp99" \
        "$errors" "${6:--}" "${7:--}" "${8:--}" "${9:--}" "${10:--}" "${11:-0}" "$max_ms" "$spread" >>"$MANY_TSV"
}

# run_many ROUND PS TARGET : one BENCH_MANY_CLIENTS run against direct or
# silo, with the connection count sampled meanwhile.
run_many() {
    local round=$1 ps=$2 target=$3 sbtarget=$3
    local out="$TMP/runs/many-r$round-$ps-$target.out" before cmax cmed nsamp
    if [ "$target" = silo ] && [ "$MANY_SILO_OK" != 1 ]; then
        many_record "$round" "$ps" silo 98 # not run: silo refused the config or did not start
        return 0
    fi
    before=$(wait_db_user_idle)
    [ "$before" = 0 ] || NOTES+=("many clients, round $round ps=$ps $target: $before connections of $DB_USER were still open on mariadbd before the run (counted in its figures)")
    if [ "$target" = silo ]; then
        sbtarget=silo-many
        # A fresh silo for each run: the pooled connections of a running
        # one would still be open on mariadbd during the direct runs.
        if ! launch_silo "many-clients silo (pool mode $BENCH_MANY_MODE)" "$TMP/silo-many.toml" \
            "$SILO_MANY_PORT" "$TMP/silo-many.log" SILO_MANY_PID; then
            MANY_SILO_OK=0
            log "the many-clients silo did not start; its runs are skipped (see the notes)"
            many_record "$round" "$ps" silo 98
            return 0
        fi
    fi
    start_conn_sampler "$out.conns" "$BENCH_SECONDS"
    sb_measure "$out" "$BENCH_MANY_CLIENTS" "$ps" "$sbtarget" "$BENCH_SECONDS"
    stop_pid "$SAMPLER_PID" "connection sampler"
    SAMPLER_PID=
    if [ "$target" = silo ]; then
        kill -0 "$SILO_MANY_PID" 2>/dev/null ||
            NOTES+=("many clients, round $round ps=$ps: silo exited during the run (log tail: $(tail -n 3 "$TMP/silo-many.log" | tr '\n' ' ' | cut -c1-300))")
        stop_pid "$SILO_MANY_PID" silo
        SILO_MANY_PID=
    fi
    read -r cmax cmed nsamp < <(conn_stats "$out.conns")
    many_record "$round" "$ps" "$target" "$SB_RC" "$SB_PARSED" "$SB_PROXY_TICKS" "$SB_MDB_TICKS" \
        "$before" "$cmax" "$cmed" "$nsamp"
    local queries qps p50 p99 sbp99 _errors _reconnects max_ms spread
    IFS=$'\t' read -r queries qps p50 p99 sbp99 _errors _reconnects max_ms spread <<<"$SB_PARSED"
    # Starved clients hardly move QPS or p99 (which are per query): say so.
    if [ "$SB_RC" -eq 0 ] && awk -v s="$spread" 'BEGIN { exit !(s != "-" && s + 0 > 1) }'; then
        NOTES+=("many clients, round $round ps=$ps $target: per-client spread $spread (stddev/mean of the queries each client ran): clients were served very unevenly, which QPS and p99 (per query) do not show")
    fi
    if [ "$SB_RC" -ne 0 ]; then
        log "many clients round $round ps=$ps $target: FAILED (exit $SB_RC); last lines of $out:"
        tail -n 5 "$out" >&2
        [ "$target" != silo ] || tail -n 5 "$TMP/silo-many.log" >&2
        return 0
    fi
    log "$(printf 'many clients round %s ps=%-7s %-6s %5s clients %9.0f qps  p50 %7.3f ms  p99 %7.3f ms  max %s ms  spread %s  silo %5s us/q  mariadbd %5s us/q  %s conns on mariadbd: max %s median %s (%s samples)' \
        "$round" "$ps" "$target" "$BENCH_MANY_CLIENTS" "$qps" "$p50" "$p99" "$max_ms" "$spread" \
        "$(per_query_us "$SB_PROXY_TICKS" "$queries")" "$(per_query_us "$SB_MDB_TICKS" "$queries")" \
        "$DB_USER" "$cmax" "$cmed" "$nsamp")"
}

MANY_SILO_OK=0
if [ "$BENCH_MANY" = 1 ]; then
    # The main silo's pooled backend connections would be counted too; the
    # idle test restarts it anyway.
    if [ -n "$SILO_PID" ]; then
        stop_pid "$SILO_PID" silo
        SILO_PID=
    fi
    if [[ " ${MANY_TARGETS[*]} " == *" silo "* ]]; then
        write_silo_config "$TMP/silo-many.toml" "$SILO_MANY_PORT" "$BENCH_MANY_MODE" \
            "$BENCH_MANY_POOL" $((BENCH_MANY_CLIENTS + 100)) on "$SILO_MANY_METRICS_PORT"
        if check_silo_config "many-clients silo (pool mode $BENCH_MANY_MODE)" "$TMP/silo-many.toml"; then
            MANY_SILO_OK=1
        else
            log "silo refused its many-clients config (pool mode $BENCH_MANY_MODE, see the notes); that part goes on without silo (BENCH_MANY_MODE=session BENCH_MANY_POOL=$((BENCH_MANY_CLIENTS + 100)) runs it in session mode)"
        fi
    fi
    log "many clients: $BENCH_MANY_CLIENTS connections, targets ${MANY_TARGETS[*]}, silo pool mode $BENCH_MANY_MODE with backend max_connections $BENCH_MANY_POOL"
    for ((round = 1; round <= BENCH_ROUNDS; round++)); do
        for ps in "${PS_MODES[@]}"; do
            n=${#MANY_TARGETS[@]}
            for ((i = 0; i < n; i++)); do
                run_many "$round" "$ps" "${MANY_TARGETS[$(((i + round - 1) % n))]}"
            done
        done
    done
fi

# --- idle connections: resident memory --------------------------------------
IDLE_REPORT=$TMP/idle.txt
: >"$IDLE_REPORT"
threads_probe="$(mdb_client) --no-defaults --protocol=socket -S $TMP/db/mysql.sock -uroot -N -B -e \"SHOW GLOBAL STATUS LIKE 'Threads_connected'\""
if [ "$BENCH_IDLE_CONNS" -gt 0 ]; then
    if [ "$SILO_OK" = 1 ]; then
        log "idle test: restarting silo for a clean baseline, then $BENCH_IDLE_CONNS idle logins"
        stop_pid "$SILO_PID" silo
        SILO_PID=
        if start_silo; then
            sleep 1
            {
                echo "silo, $BENCH_IDLE_CONNS idle client connections (logged in as $APP_USER.$SLUG, mysql_native_password, no command sent):"
                "$PY" "$IDLE" --port "$SILO_PORT" --user "$APP_USER.$SLUG" --password "$APP_PASSWORD" \
                    --count "$BENCH_IDLE_CONNS" --watch "silo=$SILO_PID" --probe-cmd "$threads_probe" 2>&1 ||
                    echo "(the idle test against silo did not complete: see above)"
                echo "  (probe = MariaDB Threads_connected: backend connections; silo leases them lazily, at the first command)"
            } | tee -a "$IDLE_REPORT" >&2
        else
            echo "silo idle test: silo did not restart (see notes)" | tee -a "$IDLE_REPORT" >&2
        fi
    fi
    if [ "$BENCH_IDLE_HAPROXY" = 1 ] && [ -n "$HAP_PID" ]; then
        log "idle test, reference: restarting haproxy, then $BENCH_IDLE_CONNS idle logins through it to mariadbd"
        stop_pid "$HAP_PID" haproxy
        HAP_PID=
        start_haproxy
        sleep 1
        {
            echo ""
            echo "reference: HAProxy (tcp) + mariadbd, $BENCH_IDLE_CONNS idle connections logged in as $DB_USER through HAProxy:"
            "$PY" "$IDLE" --port "$HAP_PORT" --user "$DB_USER" --password "$DB_PASSWORD" \
                --count "$BENCH_IDLE_CONNS" --watch "haproxy=$HAP_PID" --watch "mariadbd=$MDB_PID" \
                --probe-cmd "$threads_probe" 2>&1 ||
                echo "(the idle test through haproxy did not complete: see above)"
        } | tee -a "$IDLE_REPORT" >&2
    fi
fi

# --- report --------------------------------------------------------------------
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
silo_rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
REPORT=$TMP/report.txt
{
    echo "silo benchmark — $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "machine: $(nproc) CPUs (${cpu_model:-unknown}), $(uname -sr); sysbench, mariadbd, haproxy and silo all share these CPUs"
    echo "before the start: CPU ${BUSY_START}% busy over 2 s, load average $LOAD_START (anything else busy on the machine skews the figures)"
    echo "versions: $("$(mdb_find_bin mariadbd)" --version | sed 's/^.*Ver //'); $(haproxy -v 2>/dev/null | head -n1 | cut -d' ' -f1-3); $(sysbench --version); silo $silo_rev (${SILO_SRC:-$SILO_BIN}, $SILO_BUILT)"
    echo "workload: sysbench oltp_point_select, 1 table x $BENCH_TABLE_SIZE rows, ${BENCH_SECONDS}s per run, $BENCH_ROUNDS round(s), targets interleaved per (threads, ps-mode), order rotated each round"
    echo "haproxy: mode tcp, nbthread $BENCH_HAPROXY_THREADS; silo: pool mode $BENCH_MODE, clients log in as $APP_USER.$SLUG (username suffix); direct/haproxy log in as $DB_USER"
    echo "silo: every plan limit finite but never reached (checked on every statement); silo-nolimits: a second silo, same binary and config but every limit \"unlimited\", so silo/silo-nolimits is what the limits cost"
    echo "metrics: every silo serves /metrics on its own port (recording is always on); silo-scraped: silo's twin whose /metrics curl fetched every ${BENCH_SCRAPE_INTERVAL}s during its measured runs, so silo-scraped/silo is what serving scrapes costs"
    if [ -s "$SCRAPES_LOG" ]; then
        awk '{ n++; if ($1 == "200") { ok++; bytes += $2; secs += $3 } }
            END { printf "scrapes of silo-scraped: %d (%d answered 200), mean %.0f bytes, mean %.2f ms each\n", n, ok, ok ? bytes / ok : 0, ok ? secs / ok * 1000 : 0 }' "$SCRAPES_LOG"
    fi
    echo "latency: p50/p99 from sysbench's --histogram (per query; point_select = 1 query per event), ms"
    echo "CPU: a process's utime+stime from /proc/PID/stat over the run (incl. connection setup) / queries in the run, in microseconds"
    if [ "$BENCH_MATRIX" = 1 ]; then
        "$PY" "$SBREPORT" table "$RUNS_TSV" "$CLK_TCK"
    fi
    if [ "$BENCH_MANY" = 1 ]; then
        echo ""
        echo "Many clients: $BENCH_MANY_CLIENTS client connections (${MANY_TARGETS[*]}), same workload, ${BENCH_SECONDS}s per run, $BENCH_ROUNDS round(s), interleaved per ps-mode, order rotated each round"
        echo "  silo: pool mode $BENCH_MANY_MODE, backend max_connections $BENCH_MANY_POOL, lease_timeout_ms 10000; a fresh silo for each of its runs"
        echo "  max: sysbench's highest query latency; spread: stddev / mean of the queries each client ran (sysbench's thread fairness; near 0 = every client served, large = a few clients did the work)"
        echo "  conns on mariadbd: PROCESSLIST rows of $DB_USER (silo's backend connections, or sysbench's direct ones), counted every 0.5 s over the root socket while sysbench ran; max and median of the samples"
        "$PY" "$SBREPORT" many "$MANY_TSV" "$CLK_TCK"
    fi
    if [ "$BENCH_MATRIX" = 1 ]; then
        echo ""
        echo "Per-run figures (round threads ps target exit queries qps p50 p99 sysbench-p99 errors proxy-ticks mariadbd-ticks; CLK_TCK=$CLK_TCK):"
        sed 's/^/  /' "$RUNS_TSV"
    fi
    if [ "$BENCH_MANY" = 1 ]; then
        echo ""
        echo "Per-run figures, many clients (round clients ps target exit queries qps p50 p99 sysbench-p99 errors silo-ticks mariadbd-ticks conns-before conns-max conns-median samples max-ms spread; exit 98 = not run, see the notes):"
        sed 's/^/  /' "$MANY_TSV"
    fi
    if [ -s "$IDLE_REPORT" ]; then
        echo ""
        echo "Idle connections, resident memory (VmRSS from /proc/PID/status):"
        sed 's/^/  /' "$IDLE_REPORT"
    fi
    if [ "${#NOTES[@]}" -gt 0 ]; then
        echo ""
        echo "Notes:"
        for n in "${NOTES[@]}"; do echo "  - $n"; done
    fi
} >"$REPORT"
mkdir -p "$(dirname "$BENCH_OUT")"
cp "$REPORT" "$BENCH_OUT"
echo ""
cat "$REPORT"
echo ""
log "results written to $BENCH_OUT"

status=0
if [ "$NEED_SILO" = 1 ] && [ "$SILO_OK" != 1 ]; then
    status=1
fi
if [ "$NEED_SILO_NL" = 1 ] && [ "$SILO_NL_OK" != 1 ]; then
    status=1
fi
if [ "$NEED_SILO_SC" = 1 ] && [ "$SILO_SC_OK" != 1 ]; then
    status=1
fi
if [ -s "$SCRAPES_LOG" ] && awk '$1 != "200" { bad = 1 } END { exit !bad }' "$SCRAPES_LOG"; then
    log "some scrapes of silo-scraped failed (see $SCRAPES_LOG)"
    status=1
fi
if awk -F'\t' '$5 != "0" { bad = 1 } END { exit !bad }' "$RUNS_TSV"; then
    log "some runs failed (see above)"
    status=1
fi
if awk -F'\t' '$5 != "0" { bad = 1 } END { exit !bad }' "$MANY_TSV"; then
    log "some many-clients runs failed or were not run (see above and the notes)"
    status=1
fi
exit "$status"
