#!/usr/bin/env bash
# silo load benchmark: direct MariaDB vs HAProxy (mode tcp) vs silo, in one
# run, on this machine, with sysbench oltp_point_select.
#
#   cargo build --release && bash benches/run.sh
#
# It starts its own mariadbd (temp datadir), HAProxy and silo, all on
# 127.0.0.1 and on free ports found from 23306 up; prepares one sysbench
# table in the tenant database tenant_acme; then, for each (threads,
# ps-mode), runs the same workload against direct, haproxy and silo back to
# back (interleaved; the order rotates each round), and prints QPS, p50/p99
# latency and each proxy's own CPU time per query. Then it measures silo's
# resident memory with BENCH_IDLE_CONNS idle logged-in client connections
# (and, for reference, HAProxy's and mariadbd's with the same number through
# HAProxy). Everything it starts is stopped on exit. Results are printed and
# written to target/bench-results.txt.
#
# Environment (defaults in brackets):
#   BENCH_SECONDS          seconds per measured run                     [8]
#   BENCH_ROUNDS           rounds of the whole matrix; medians reported [3]
#   BENCH_THREADS          client connection counts                     ["1 8 64"]
#   BENCH_PS_MODES         sysbench --db-ps-mode values                 ["auto disable"]
#   BENCH_TARGETS          subset of "direct haproxy silo"              [all three]
#   BENCH_TABLE_SIZE       rows in sbtest1                              [10000]
#   BENCH_SILO_THREADS     silo's [runtime] threads (0 = one per core)  [0]
#   BENCH_WARMUP_SECONDS   unrecorded warm-up per target at start       [3]
#   BENCH_IDLE_CONNS       idle connections for the memory test, 0=skip [5000]
#   BENCH_IDLE_HAPROXY     also measure the same through HAProxy (1/0)  [1]
#   BENCH_HAPROXY_THREADS  HAProxy nbthread                             [2]
#   SILO_BIN               silo binary                  [target/release/silo]
#   BENCH_OUT              results file           [target/bench-results.txt]
#   BENCH_KEEP_TMP         1 = keep the temp dir (logs) after the run   [0]
#   RUST_LOG               silo's log filter during the run             [warn]
#
# With the defaults a run takes about 10 minutes (3 rounds x 18 runs x 8 s,
# plus setup and the idle-connection test). Several short interleaved rounds
# rather than one long run each: on a small VM the single-connection figures
# swing between runs (where the scheduler puts the client, proxy and server
# threads, idle-CPU wake-up latency), so the tables show the median and the
# min-max range of QPS over the rounds.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib-mariadb.sh
. "$ROOT/scripts/lib-mariadb.sh"

BENCH_SECONDS=${BENCH_SECONDS:-8}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
BENCH_THREADS=${BENCH_THREADS:-"1 8 64"}
BENCH_PS_MODES=${BENCH_PS_MODES:-"auto disable"}
BENCH_TARGETS=${BENCH_TARGETS:-"direct haproxy silo"}
BENCH_TABLE_SIZE=${BENCH_TABLE_SIZE:-10000}
BENCH_SILO_THREADS=${BENCH_SILO_THREADS:-0}
BENCH_WARMUP_SECONDS=${BENCH_WARMUP_SECONDS:-3}
BENCH_IDLE_CONNS=${BENCH_IDLE_CONNS:-5000}
BENCH_IDLE_HAPROXY=${BENCH_IDLE_HAPROXY:-1}
BENCH_HAPROXY_THREADS=${BENCH_HAPROXY_THREADS:-2}
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
    case $t in direct | haproxy | silo) ;; *) die "BENCH_TARGETS: '$t' is not direct, haproxy or silo" ;; esac
done
has_target() {
    local t
    for t in "${TARGETS[@]}"; do [ "$t" = "$1" ] && return 0; done
    return 1
}
max_threads=0
for t in "${THREADS[@]}"; do [ "$t" -gt "$max_threads" ] && max_threads=$t; done

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
if has_target haproxy || [ "$BENCH_IDLE_HAPROXY" = 1 ]; then need_tool haproxy haproxy; fi
if has_target silo && [ ! -x "$SILO_BIN" ]; then
    die "silo binary not found at $SILO_BIN: build it first with
    cargo build --release
(or point SILO_BIN at a build, or leave silo out: BENCH_TARGETS='direct haproxy')"
fi
CLK_TCK=$(getconf CLK_TCK)
PY=python3
SBREPORT=$ROOT/benches/sbreport.py
IDLE=$ROOT/benches/idle_conns.py

# Open files: sysbench/HAProxy/silo/mariadbd inherit this; the idle test
# needs one descriptor per connection in silo and in the client.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ]; then ulimit -n 65536; else ulimit -n "$hard"; fi
need_fds=$((BENCH_IDLE_CONNS * 2 + 1024))
if [ "$(ulimit -n)" -lt "$need_fds" ]; then
    die "open-file limit $(ulimit -n) is below the $need_fds needed for BENCH_IDLE_CONNS=$BENCH_IDLE_CONNS (hard limit $hard): lower BENCH_IDLE_CONNS or raise the limit"
fi

# --- cleanup -----------------------------------------------------------------
TMP=
MDB_PID=
HAP_PID=
SILO_PID=
# shellcheck disable=SC2317 # invoked through trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    trap '' PIPE
    set +e
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
NOTES=()

# Run a private copy of silo: a rebuild during the run (the idle test
# restarts silo) must not swap the binary under the benchmark.
file_date() { date -u -r "$1" '+built %Y-%m-%d %H:%M UTC' 2>/dev/null || echo "not built"; }
SILO_BUILT=$(file_date "$SILO_BIN")
if has_target silo; then
    cp "$SILO_BIN" "$TMP/silo"
    SILO_SRC=$SILO_BIN
    SILO_BIN=$TMP/silo
fi

DB_PORT=$(pick_port 23306)
HAP_PORT=$(pick_port $((DB_PORT + 1)))
SILO_PORT=$(pick_port $((HAP_PORT + 1)))

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
n_runs=$((BENCH_ROUNDS * ${#THREADS[@]} * ${#PS_MODES[@]} * ${#TARGETS[@]}))
log "plan: $n_runs runs of ${BENCH_SECONDS}s (rounds=$BENCH_ROUNDS threads='${THREADS[*]}' ps='${PS_MODES[*]}' targets='${TARGETS[*]}'), about $(((n_runs * (BENCH_SECONDS + 2) + 60) / 60)) min plus the idle test"
log "work dir $TMP; ports: mariadbd $DB_PORT, haproxy $HAP_PORT, silo $SILO_PORT"

# --- MariaDB -------------------------------------------------------------------
# Sized so it is not the bottleneck: the whole table in the buffer pool,
# room for every client and the idle test, no binlog, lazy flushing.
mdb_max_conn=$((BENCH_IDLE_CONNS + max_threads * 2 + 200))
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
write_silo_config() {
    local max_clients=$((BENCH_IDLE_CONNS + max_threads * 2 + 100))
    local backend_max=$((max_threads * 2))
    [ "$backend_max" -ge 128 ] || backend_max=128
    cat >"$TMP/silo.toml" <<EOF
# generated by benches/run.sh
[listen]
mysql = "127.0.0.1:$SILO_PORT"

[runtime]
threads = $BENCH_SILO_THREADS

[pool]
mode = "session"
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

[[plans]]
name = "bench"
weight = 8
max_client_connections = $max_clients
max_backend_leases = $backend_max
queue_timeout_ms = 10000
max_queries_per_second = "unlimited"
burst = "unlimited"
max_query_time_ms = 60000
max_queries_per_day = "unlimited"

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

# start_silo : start silo, check a real login; on failure record why and
# return 1 (silo is then left out, the rest of the bench goes on).
start_silo() {
    if ! "$SILO_BIN" check-config --config "$TMP/silo.toml" >"$TMP/silo-check.log" 2>&1; then
        cat "$TMP/silo-check.log" >&2
        NOTES+=("silo check-config refused the generated config: $(tr '\n' ' ' <"$TMP/silo-check.log" | cut -c1-300)")
        return 1
    fi
    RUST_LOG=${RUST_LOG:-warn} "$SILO_BIN" serve --config "$TMP/silo.toml" </dev/null >>"$TMP/silo.log" 2>&1 &
    SILO_PID=$!
    if ! wait_port "$SILO_PORT" 30 "$SILO_PID"; then
        tail -n 20 "$TMP/silo.log" >&2
        NOTES+=("silo did not listen on 127.0.0.1:$SILO_PORT (see its log above)")
        stop_pid "$SILO_PID" silo
        SILO_PID=
        return 1
    fi
    local out
    if ! out=$(timeout -k 2 20 "$(mdb_client)" --no-defaults -h127.0.0.1 -P"$SILO_PORT" \
        -u"$APP_USER.$SLUG" -p"$APP_PASSWORD" -N -B \
        -e 'SELECT COUNT(*) FROM sbtest1' "$DB" 2>&1); then
        printf '%s\n' "$out" >&2
        tail -n 20 "$TMP/silo.log" >&2
        NOTES+=("silo refused or failed the login check (mariadb -u$APP_USER.$SLUG ... 'SELECT COUNT(*) FROM sbtest1'): $(printf '%s' "$out" | tr '\n' ' ' | cut -c1-300)")
        stop_pid "$SILO_PID" silo
        SILO_PID=
        return 1
    fi
    log "silo answers: $APP_USER.$SLUG sees $out rows in sbtest1"
}

if has_target haproxy || [ "$BENCH_IDLE_HAPROXY" = 1 ]; then start_haproxy; fi
SILO_OK=0
if has_target silo; then
    write_silo_config
    if start_silo; then SILO_OK=1; else log "silo is left out of this run"; fi
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
    case $1 in haproxy) echo "$HAP_PID" ;; silo) echo "$SILO_PID" ;; *) echo "" ;; esac
}

# sb_args TARGET : connection arguments for sysbench.
sb_conn() {
    case $1 in
    direct) echo "--mysql-port=$DB_PORT --mysql-user=$DB_USER --mysql-password=$DB_PASSWORD" ;;
    haproxy) echo "--mysql-port=$HAP_PORT --mysql-user=$DB_USER --mysql-password=$DB_PASSWORD" ;;
    silo) echo "--mysql-port=$SILO_PORT --mysql-user=$APP_USER.$SLUG --mysql-password=$APP_PASSWORD" ;;
    esac
}

# run_one ROUND THREADS PS TARGET SECONDS [record]
run_one() {
    local round=$1 threads=$2 ps=$3 target=$4 secs=$5 record=${6:-record}
    local out="$TMP/runs/r$round-t$threads-$ps-$target.out"
    local ppid t0p t1p t0m t1m rc=0 parsed
    ppid=$(target_pid "$target")
    t0p=$([ -n "$ppid" ] && proc_ticks "$ppid" || echo -)
    t0m=$(proc_ticks "$MDB_PID")
    # shellcheck disable=SC2046 # sb_conn prints separate words without spaces inside
    timeout -k 5 $((secs + 60)) sysbench "${SB_COMMON[@]}" $(sb_conn "$target") \
        --threads="$threads" --time="$secs" --events=0 --db-ps-mode="$ps" \
        --percentile=99 --histogram=on --report-interval=0 run >"$out" 2>&1 || rc=$?
    t1p=$([ -n "$ppid" ] && proc_ticks "$ppid" || echo -)
    t1m=$(proc_ticks "$MDB_PID")
    [ "$record" = record ] || return "$rc"
    local dp=- dm=-
    if [ "$t0p" != - ] && [ "$t1p" != - ]; then dp=$((t1p - t0p)); fi
    if [ "$t0m" != - ] && [ "$t1m" != - ]; then dm=$((t1m - t0m)); fi
    if parsed=$("$PY" "$SBREPORT" parse "$out"); then :; else
        parsed=$'-\t-\t-\t-\t-\t-\t-'
        [ "$rc" -ne 0 ] || rc=99
    fi
    local queries qps p50 p99 sbp99 errors _reconnects
    IFS=$'\t' read -r queries qps p50 p99 sbp99 errors _reconnects <<<"$parsed"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$round" "$threads" "$ps" "$target" "$rc" "$queries" "$qps" "$p50" "$p99" \
        "$sbp99" "$errors" "$dp" "$dm" >>"$RUNS_TSV"
    if [ "$rc" -ne 0 ]; then
        log "round $round threads=$threads ps=$ps $target: FAILED (exit $rc); last lines of $out:"
        tail -n 5 "$out" >&2
        return 0
    fi
    local cpu_p="-" cpu_m="-"
    if [ "$dp" != - ] && [ "$queries" -gt 0 ]; then
        cpu_p=$(awk -v t="$dp" -v h="$CLK_TCK" -v q="$queries" 'BEGIN { printf "%.1f", t / h * 1e6 / q }')
    fi
    if [ "$dm" != - ] && [ "$queries" -gt 0 ]; then
        cpu_m=$(awk -v t="$dm" -v h="$CLK_TCK" -v q="$queries" 'BEGIN { printf "%.1f", t / h * 1e6 / q }')
    fi
    log "$(printf 'round %s threads=%-3s ps=%-7s %-7s %9.0f qps  p50 %6.3f ms  p99 %6.3f ms (sysbench p99 %s)  proxy %5s us/q  mariadbd %5s us/q' \
        "$round" "$threads" "$ps" "$target" "$qps" "$p50" "$p99" "$sbp99" "$cpu_p" "$cpu_m")"
}

active_targets() {
    local t
    for t in "${TARGETS[@]}"; do
        if [ "$t" = silo ] && [ "$SILO_OK" != 1 ]; then continue; fi
        printf '%s\n' "$t"
    done
}

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
                run_one "$round" "$threads" "$ps" "$target" "$BENCH_SECONDS"
            done
        done
    done
done

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
    echo "haproxy: mode tcp, nbthread $BENCH_HAPROXY_THREADS; silo: pool mode session, clients log in as $APP_USER.$SLUG (username suffix); direct/haproxy log in as $DB_USER"
    echo "latency: p50/p99 from sysbench's --histogram (per query; point_select = 1 query per event), ms"
    echo "CPU: a process's utime+stime from /proc/PID/stat over the run (incl. connection setup) / queries in the run, in microseconds"
    "$PY" "$SBREPORT" table "$RUNS_TSV" "$CLK_TCK"
    echo ""
    echo "Per-run figures (round threads ps target exit queries qps p50 p99 sysbench-p99 errors proxy-ticks mariadbd-ticks; CLK_TCK=$CLK_TCK):"
    sed 's/^/  /' "$RUNS_TSV"
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

if has_target silo && [ "$SILO_OK" != 1 ]; then
    exit 1
fi
if awk -F'\t' '$5 != "0" { bad = 1 } END { exit !bad }' "$RUNS_TSV"; then
    log "some runs failed (see above)"
    exit 1
fi
