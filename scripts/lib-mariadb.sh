# shellcheck shell=bash
# Shared helpers for scripts/demo.sh and benches/run.sh: throwaway mariadbd
# servers (own datadir, socket and port under a temp dir, 127.0.0.1 only),
# port checks and bounded waits. Source it; it defines functions only.
#
# Every server started here runs with --no-defaults, so nothing from
# /etc/mysql leaks in, and is reached by the scripts as root over its own
# unix socket (root has an empty password: the datadir is temporary and the
# TCP listener is bound to 127.0.0.1).

# log MSG... : progress line on stderr.
# Never fails (a closed stderr pipe must not abort a cleanup trap).
log() { printf '%s %s\n' "[$(date +%H:%M:%S)]" "$*" >&2 2>/dev/null || true; }

# die MSG... : error on stderr, exit 1 (the caller's EXIT trap cleans up).
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# port_in_use PORT : true if something listens on PORT (any address).
port_in_use() {
    local port=$1
    if command -v ss >/dev/null 2>&1; then
        [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]
    else
        # No iproute2: try to connect on loopback (catches 0.0.0.0 too).
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
    fi
}

# pick_port START : print the first free port in START..START+199.
pick_port() {
    local p=$1 end=$(($1 + 200))
    while [ "$p" -lt "$end" ]; do
        if ! port_in_use "$p"; then
            printf '%s\n' "$p"
            return 0
        fi
        p=$((p + 1))
    done
    die "no free TCP port in $1..$((end - 1))"
}

# wait_port PORT TIMEOUT_S [PID] : wait until 127.0.0.1:PORT accepts TCP
# connections; fail early if PID (the process meant to listen) has died.
wait_port() {
    local port=$1 deadline=$((SECONDS + $2)) pid=${3:-}
    while [ "$SECONDS" -lt "$deadline" ]; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.1
    done
    return 1
}

# stop_pid PID [NAME] : SIGTERM, wait up to 20 s, then SIGKILL. Only for
# processes this script started (it is given their PID, never a name).
stop_pid() {
    local pid=$1 name=${2:-process} i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "$name (pid $pid) did not stop within 20 s, killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

# mdb_user_args : --user=root when running as root (mariadbd refuses to run
# as root otherwise); nothing for an ordinary user, who owns the datadir.
mdb_user_args() {
    if [ "$(id -u)" = 0 ]; then
        printf '%s\n' "--user=root"
    fi
}

# mdb_find_bin NAME... : print the first of NAME... found in PATH or sbin.
mdb_find_bin() {
    local n d
    for n in "$@"; do
        if command -v "$n" >/dev/null 2>&1; then
            command -v "$n"
            return 0
        fi
        for d in /usr/sbin /usr/local/sbin /sbin; do
            if [ -x "$d/$n" ]; then
                printf '%s\n' "$d/$n"
                return 0
            fi
        done
    done
    return 1
}

# mdb_have_server : true if mariadbd (or mysqld of MariaDB), the installer
# and the client are all present.
mdb_have_server() {
    mdb_find_bin mariadbd >/dev/null &&
        mdb_find_bin mariadb-install-db mysql_install_db >/dev/null &&
        mdb_find_bin mariadb mysql >/dev/null
}

# mdb_ensure_installed : install Debian's mariadb-server and mariadb-client
# if mariadbd is missing (as root, or through sudo); otherwise say exactly
# what to install and fail.
mdb_ensure_installed() {
    mdb_have_server && return 0
    local pkgs="mariadb-server mariadb-client"
    local -a sudo=()
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            die "mariadbd is not installed and this script is not root and has no sudo; install the packages '$pkgs' (Debian/Ubuntu: apt-get install $pkgs) and run it again"
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        die "mariadbd is not installed and apt-get is not available; install MariaDB server and client ($pkgs on Debian/Ubuntu) and run it again"
    fi
    log "installing $pkgs with apt-get"
    "${sudo[@]}" apt-get update -q || die "apt-get update failed"
    # shellcheck disable=SC2086 # $pkgs is a fixed list of words
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs ||
        die "apt-get install $pkgs failed"
    # The package starts a system mariadbd on 3306; we never use it, but it
    # does not clash with the ports used here either.
    mdb_have_server || die "MariaDB was installed but mariadbd/mariadb-install-db/mariadb were not found"
}

# mdb_client : print the client binary (mariadb, or mysql as a fallback).
mdb_client() { mdb_find_bin mariadb mysql; }

# mdb_init DIR : create a fresh datadir DIR/data (root@localhost, empty
# password, no test database). Log in DIR/install.log.
mdb_init() {
    local dir=$1 installer
    installer=$(mdb_find_bin mariadb-install-db mysql_install_db) || die "mariadb-install-db not found"
    mkdir -p "$dir/data"
    # shellcheck disable=SC2046 # mdb_user_args prints zero or one word
    if ! "$installer" --no-defaults --datadir="$dir/data" $(mdb_user_args) \
        --auth-root-authentication-method=normal --skip-test-db \
        --skip-name-resolve >"$dir/install.log" 2>&1; then
        tail -n 30 "$dir/install.log" >&2
        die "mariadb-install-db failed for $dir (log: $dir/install.log)"
    fi
}

# mdb_start DIR PORT [EXTRA_MARIADBD_ARGS...] : start mariadbd on
# 127.0.0.1:PORT with datadir DIR/data, socket DIR/mysql.sock, error log
# DIR/error.log, in the background; its PID goes to DIR/mariadbd.pid-of-start
# and to the global MDB_LAST_PID. Small, fast, throwaway settings; EXTRA
# args (later wins) size it up for a benchmark.
mdb_start() {
    local dir=$1 port=$2 server
    shift 2
    server=$(mdb_find_bin mariadbd mysqld) || die "mariadbd not found"
    # shellcheck disable=SC2046 # mdb_user_args prints zero or one word
    "$server" --no-defaults --datadir="$dir/data" $(mdb_user_args) \
        --port="$port" --bind-address=127.0.0.1 \
        --socket="$dir/mysql.sock" --pid-file="$dir/mariadbd.pid" \
        --log-error="$dir/error.log" \
        --skip-name-resolve --max-connect-errors=1000000 \
        --performance-schema=OFF --skip-log-bin \
        --innodb-buffer-pool-size=64M --innodb-log-file-size=32M \
        --innodb-flush-log-at-trx-commit=2 --innodb-doublewrite=0 \
        --local-infile=1 --max-connections=300 \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
        "$@" </dev/null >"$dir/stdout.log" 2>&1 &
    MDB_LAST_PID=$!
    printf '%s\n' "$MDB_LAST_PID" >"$dir/mariadbd.pid-of-start"
}

# mdb_sql DIR [CLIENT_ARGS...] : run the client as root over DIR's socket
# (SQL on stdin or with -e).
mdb_sql() {
    local dir=$1 client
    shift
    client=$(mdb_client) || die "mariadb client not found"
    "$client" --no-defaults --protocol=socket -S "$dir/mysql.sock" -uroot "$@"
}

# mdb_wait DIR PORT PID TIMEOUT_S : wait until the server accepts a root
# login on its socket and TCP connections on PORT; on failure show the
# error log and die.
mdb_wait() {
    local dir=$1 port=$2 pid=$3 deadline=$((SECONDS + $4))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$dir/error.log" >&2 || true
            die "mariadbd for $dir (port $port) exited during startup (log: $dir/error.log)"
        fi
        if mdb_sql "$dir" -e 'SELECT 1' >/dev/null 2>&1 &&
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    tail -n 30 "$dir/error.log" >&2 || true
    die "mariadbd for $dir (port $port) did not accept logins within $4 s (log: $dir/error.log)"
}

# sql_quote STRING : STRING as a single-quoted SQL literal.
sql_quote() {
    local s=${1//\\/\\\\}
    s=${s//\'/\'\'}
    printf "'%s'" "$s"
}

# mdb_create_tenant DIR DATABASE USER PASSWORD : create DATABASE and
# USER@'%' (mysql_native_password) with all privileges on DATABASE only.
mdb_create_tenant() {
    local dir=$1 db=$2 user=$3 pw=$4
    mdb_sql "$dir" <<SQL
CREATE DATABASE IF NOT EXISTS \`$db\`;
CREATE OR REPLACE USER $(sql_quote "$user")@'%' IDENTIFIED BY $(sql_quote "$pw");
GRANT ALL PRIVILEGES ON \`$db\`.* TO $(sql_quote "$user")@'%';
SQL
}
