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
#   Kafka       KAFKA_BOOTSTRAP  Apache Kafka 4.4 (KRaft, one node, automatic topic creation off),
#                              fetched once with Maven into ~/.cache/taskpool (scripts/kafka-broker.sh),
#               KAFKA_TLS_BOOTSTRAP its SSL listener (the test certificate below),
#               KAFKA_SASL_BOOTSTRAP its SASL_SSL listener taking SCRAM-SHA-512 for the user
#                              KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD (made at start);
#                              KAFKA_BROKER_SCRIPT starts private brokers for tests.
#   Operaton    ENGINE_REST_URL Operaton 1.0 (Camunda 7's open-source continuation), unmodified:
#                              its Spring Boot starter with the REST API, fetched once with Maven
#                              (scripts/engine7.sh), on the database ENGINE_DATABASE_URL of the
#                              test server, made afresh at each start; ENGINE_SCHEMA_SQL is its
#                              tables' definition (pg_dump), for databases of a test's own.
#   Camunda 7   CAMUNDA_REST_URL Camunda 7 CE 7.24, the same way: CAMUNDA_DATABASE_URL,
#                              CAMUNDA_SCHEMA_SQL.
#   MongoDB     MONGODB_URI    nx-27017, a MongoDB-wire server on SQLite, from PyPI in a
#                              virtualenv, started through scripts/mongo-launcher.py (patches
#                              for the Rust driver's change streams); MONGO_PYTHON and
#                              MONGO_LAUNCHER let tests start private servers.
#   TLS         TASKPOOL_TLS_CA  a test certificate authority (openssl) whose server certificate
#                              names localhost and 127.0.0.1, for:
#               DATABASE_TLS_URL   a private PostgreSQL cluster that refuses connections without
#                              TLS (verify-full against the test authority);
#               DATABASE_STANDBY_URL a streaming replica of that cluster (hot standby, in
#                              recovery), which the relay must refuse;
#   Browser     CHROMIUM, CHROMEDRIVER  Debian's chromium and chromium-driver, for the web
#                              tasklist's browser test (installed with apt when missing).
#   Compose     docker-compose (Debian's), which validates the compose files; no container
#                              engine is needed (installed with apt when missing).
#   Clients     TASKPOOL_PYTHON (the virtualenv's Python, with psycopg) and PGJDBC_JAR
#                              (PostgreSQL's JDBC driver, from Maven Central into the cache),
#                              which call the SQL functions in the capture tests.
#   Debugger    gdb (Debian's), which holds a PostgreSQL backend at a breakpoint in the relay's
#                              horizon tests (installed with apt when missing).
#
# On a server this script did not start (PostgreSQL on 5432), it creates a test database with
# a name of its own and only ever drops that one.
#
# State (PID files, data, logs, connection settings) lives in .services/ (git-ignored), or in
# $TASKPOOL_SERVICES_DIR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${TASKPOOL_SERVICES_DIR:-$ROOT/.services}"
ENV_FILE="$STATE/env"

log() { echo "services: $*" >&2; }
die() { log "$*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A TCP port nothing listens on, from a range away from the usual service ports and below
# Linux's ephemeral range (32768 and up): a port some outgoing connection holds as its local
# port does not listen, yet cannot be bound ("Address in use").
free_port() {
    local port
    for _ in $(seq 1 200); do
        port=$((20000 + RANDOM % 12000))
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

run_as_postgres() { # PostgreSQL refuses to run as root.
    if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi
}

# start_cluster <dir> <port> [postgres -c options...]: a private cluster, created when missing.
# Prepared transactions are allowed: the relay's stress test writes some.
start_cluster() {
    local own_dir=$1 port=$2; shift 2
    local bindir
    bindir=$(pg_bindir || true)
    if [ -z "$bindir" ]; then
        apt_install postgresql
        bindir=$(pg_bindir) || die "PostgreSQL installed but initdb not found"
    fi
    mkdir -p "$own_dir"
    [ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$own_dir"
    if [ ! -f "$own_dir/data/PG_VERSION" ]; then
        run_as_postgres "'$bindir/initdb' -D '$own_dir/data' -U postgres -A trust >'$own_dir/initdb.log' 2>&1" \
            || die "initdb failed, see $own_dir/initdb.log"
    fi
    if [ -f "$own_dir/setup" ]; then
        # A hook that adjusts the new cluster (certificates, pg_hba.conf) before it starts.
        bash "$own_dir/setup" "$own_dir/data"
        [ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$own_dir"
    fi
    run_as_postgres "'$bindir/pg_ctl' -D '$own_dir/data' -l '$own_dir/server.log' -w -t 60 \
        -o '-p $port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=on -c max_prepared_transactions=20 $*' start" >/dev/null \
        || die "PostgreSQL did not start, see $own_dir/server.log"
    echo "$bindir" > "$own_dir/bindir"
}

stop_cluster() { # stop_cluster <dir> <name>
    local own_dir=$1
    if [ -f "$own_dir/data/postmaster.pid" ] && [ -f "$own_dir/bindir" ]; then
        run_as_postgres "'$(cat "$own_dir/bindir")/pg_ctl' -D '$own_dir/data' -m fast stop" >/dev/null || true
        log "$2: stopped"
    fi
}

# The test database: on a private cluster `taskpool_test`; on a server this script did not
# start, a name of its own, so that it never drops or reuses a database somebody else made.
# A name recorded for the other kind of server is never reused.
test_database() {
    local name private
    private=$(get_env TASKPOOL_PG_PRIVATE || true)
    name=$(get_env TASKPOOL_PG_DATABASE || true)
    if [ "$private" = 1 ]; then
        name=taskpool_test
    elif [[ "$name" != taskpool_test_* ]]; then
        name="taskpool_test_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
    fi
    set_env TASKPOOL_PG_DATABASE "$name"
    echo "$name"
}

start_postgres() {
    local port database
    port=$(get_env TASKPOOL_PG_PORT || true)
    if [ -n "$port" ] && port_open "$port"; then
        return 0
    fi
    if port_open 5432 && [ -z "${TASKPOOL_PRIVATE_POSTGRES:-}" ]; then
        port=5432
        set_env TASKPOOL_PG_PRIVATE 0
        log "PostgreSQL: using the server on 127.0.0.1:5432"
    else
        port=$(free_port)
        set_env TASKPOOL_PG_PRIVATE 1
        log "PostgreSQL: starting a private cluster on port $port"
        start_cluster "$STATE/postgres" "$port"
    fi
    command -v psql >/dev/null || apt_install postgresql-client
    wait_until 30 "PostgreSQL on port $port" psql_at "$port" "SELECT 1"
    database=$(test_database)
    if [ "$(psql_at "$port" "SELECT count(*) FROM pg_database WHERE datname = '$database'")" = 0 ]; then
        psql_at "$port" "CREATE DATABASE $database" >/dev/null
    fi
    set_env TASKPOOL_PG_PORT "$port"
    # Plaintext on purpose: the TLS-only cluster below covers TLS, and tests and benchmarks keep
    # measuring the same thing whether or not this server offers TLS (sqlx would prefer it).
    set_env DATABASE_URL "'postgres://postgres@127.0.0.1:$port/$database?sslmode=disable'"
}

stop_postgres() {
    local port database
    port=$(get_env TASKPOOL_PG_PORT || true)
    database=$(get_env TASKPOOL_PG_DATABASE || true)
    if [ "$(get_env TASKPOOL_PG_PRIVATE || true)" = 0 ] && [ -n "$database" ] && port_open "$port"; then
        psql_at "$port" "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null || true
    fi
    stop_cluster "$STATE/postgres" "PostgreSQL (private cluster)"
}

# Drops and recreates this script's own test database, so each full test run starts clean.
reset_postgres() {
    local port database
    port=$(get_env TASKPOOL_PG_PORT) || die "not started"
    database=$(get_env TASKPOOL_PG_DATABASE) || die "not started"
    psql_at "$port" "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null
    psql_at "$port" "CREATE DATABASE $database" >/dev/null
}

# ---------------------------------------------------------------- TLS

# A test certificate authority and a server certificate for localhost and 127.0.0.1.
make_certificates() {
    local dir="$STATE/tls"
    set_env TASKPOOL_TLS_CA "$dir/ca.pem"
    [ -f "$dir/server.pem" ] && return 0
    command -v openssl >/dev/null || apt_install openssl
    mkdir -p "$dir"
    (
        cd "$dir"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=taskpool test CA" \
            -keyout ca.key -out ca.pem
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile server.ext -out server.pem
    ) >"$STATE/tls.log" 2>&1 || die "cannot make test certificates, see $STATE/tls.log"
}

# A private PostgreSQL cluster that accepts only TLS connections.
start_postgres_tls() {
    local port own_dir="$STATE/postgres-tls"
    port=$(get_env TASKPOOL_PG_TLS_PORT || true)
    if [ -n "$port" ] && port_open "$port"; then
        return 0
    fi
    port=$(free_port)
    log "PostgreSQL: starting a TLS-only cluster on port $port"
    mkdir -p "$own_dir"
    cat > "$own_dir/setup" <<SETUP
set -e
cp "$STATE/tls/server.pem" "$STATE/tls/server.key" "\$1/"
chmod 600 "\$1/server.key"
printf 'local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl replication all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n' > "\$1/pg_hba.conf"
SETUP
    start_cluster "$own_dir" "$port" -c ssl=on -c ssl_cert_file=server.pem -c ssl_key_file=server.key
    wait_until 30 "PostgreSQL (TLS) on port $port" psql_at "$port" "SELECT 1"
    if [ "$(psql_at "$port" "SELECT count(*) FROM pg_database WHERE datname = 'taskpool_test'")" = 0 ]; then
        psql_at "$port" "CREATE DATABASE taskpool_test" >/dev/null
    fi
    set_env TASKPOOL_PG_TLS_PORT "$port"
    set_env DATABASE_TLS_URL "'postgres://postgres@127.0.0.1:$port/taskpool_test?sslmode=verify-full&sslrootcert=$STATE/tls/ca.pem'"
}

# A streaming replica of the TLS-only cluster, in recovery all along: what a relay pointed at a
# hot standby would meet. Made afresh from a base backup at each start.
start_postgres_standby() {
    local port primary bindir own_dir="$STATE/postgres-standby"
    port=$(get_env TASKPOOL_PG_STANDBY_PORT || true)
    if [ -n "$port" ] && port_open "$port"; then
        return 0
    fi
    stop_cluster "$own_dir" "PostgreSQL (standby)"
    primary=$(get_env TASKPOOL_PG_TLS_PORT) || die "the standby needs the TLS cluster"
    bindir=$(cat "$STATE/postgres-tls/bindir")
    rm -rf "$own_dir"
    mkdir -p "$own_dir"
    [ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$own_dir"
    log "PostgreSQL: copying the TLS cluster for a standby"
    # --checkpoint=fast: a spread checkpoint after the test database was created takes minutes.
    run_as_postgres "'$bindir/pg_basebackup' --checkpoint=fast -X stream -R -D '$own_dir/data' \
        -d 'host=127.0.0.1 port=$primary user=postgres sslmode=verify-full sslrootcert=$STATE/tls/ca.pem' \
        >'$own_dir/basebackup.log' 2>&1" || die "pg_basebackup failed, see $own_dir/basebackup.log"
    port=$(free_port)
    log "PostgreSQL: starting the standby on port $port"
    start_cluster "$own_dir" "$port" -c ssl=on -c ssl_cert_file=server.pem -c ssl_key_file=server.key
    wait_until 30 "PostgreSQL (standby) on port $port" psql_at "$port" "SELECT pg_is_in_recovery()"
    set_env TASKPOOL_PG_STANDBY_PORT "$port"
    set_env DATABASE_STANDBY_URL "'postgres://postgres@127.0.0.1:$port/taskpool_test?sslmode=verify-full&sslrootcert=$STATE/tls/ca.pem'"
}

# ---------------------------------------------------------------- Python tools (venv)

VENV="$STATE/venv"

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

# ---------------------------------------------------------------- Kafka and the engines (Java)
# shellcheck source=scripts/services-java.sh
. "$(dirname "${BASH_SOURCE[0]}")/services-java.sh"

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

# ---------------------------------------------------------------- Browser and compose
ensure_tools() {
    command -v chromedriver >/dev/null && command -v chromium >/dev/null ||
        apt_install chromium chromium-driver
    set_env CHROMIUM "$(command -v chromium)"
    set_env CHROMEDRIVER "$(command -v chromedriver)"
    command -v docker-compose >/dev/null || apt_install docker-compose
    # gdb holds PostgreSQL backends at an instruction in the relay's horizon tests.
    command -v gdb >/dev/null || apt_install gdb
    # promtool checks the alert rules in deploy/ (Debian ships it with Prometheus).
    command -v promtool >/dev/null || apt_install prometheus
    ensure_sql_clients
}

# The database drivers of other languages the SQL way in is tested from (decision 0026):
# psycopg in the virtualenv (it uses the system's libpq), PostgreSQL's JDBC driver from Maven
# Central into the cache outside the clone.
PSYCOPG_PACKAGE="psycopg==3.3.6"
PGJDBC_VERSION=42.7.14
ensure_sql_clients() {
    command -v pg_config >/dev/null || dpkg -s libpq5 >/dev/null 2>&1 || apt_install libpq5
    pip_install "$PSYCOPG_PACKAGE" psycopg
    set_env TASKPOOL_PYTHON "$VENV/bin/python"
    local jdbc="${TASKPOOL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/taskpool}/jdbc"
    if [ ! -f "$jdbc/postgresql-$PGJDBC_VERSION.jar" ]; then
        log "fetching PostgreSQL's JDBC driver $PGJDBC_VERSION with Maven into $jdbc"
        mvn -q -B dependency:copy -Dartifact="org.postgresql:postgresql:$PGJDBC_VERSION" \
            -DoutputDirectory="$jdbc" >&2 || die "Maven could not fetch the JDBC driver"
    fi
    set_env PGJDBC_JAR "$jdbc/postgresql-$PGJDBC_VERSION.jar"
}

case "${1:-}" in
    start)
        mkdir -p "$STATE"
        start_postgres
        make_certificates
        start_postgres_tls
        start_postgres_standby
        start_kafka
        start_engine7 operaton Operaton ENGINE
        start_engine7 camunda "Camunda 7" CAMUNDA
        start_mongo
        ensure_tools
        ;;
    stop)
        stop_pid "$STATE/mongo.pid" MongoDB
        stop_pid "$STATE/operaton.pid" Operaton
        stop_pid "$STATE/camunda.pid" "Camunda 7"
        stop_pid "$STATE/kafka.pid" Kafka
        stop_postgres
        stop_cluster "$STATE/postgres-standby" "PostgreSQL (standby)"
        stop_cluster "$STATE/postgres-tls" "PostgreSQL (TLS)"
        rm -f "$ENV_FILE"
        ;;
    env)
        [ -f "$ENV_FILE" ] || die "services are not started: run scripts/services.sh start"
        grep -v -e '^export TASKPOOL_PG_' -e '^export TASKPOOL_KAFKA_' -e '^export TASKPOOL_OPERATON_' -e '^export TASKPOOL_CAMUNDA_' \
            -e '^export TASKPOOL_MONGO_PORT=' "$ENV_FILE"
        ;;
    reset)
        reset_postgres
        tls_port=$(get_env TASKPOOL_PG_TLS_PORT) || die "not started"
        psql_at "$tls_port" "DROP DATABASE IF EXISTS taskpool_test WITH (FORCE)" >/dev/null
        psql_at "$tls_port" "CREATE DATABASE taskpool_test" >/dev/null
        # A fresh MongoDB data file for each full test run.
        stop_pid "$STATE/mongo.pid" MongoDB
        rm -rf "$STATE"/mongo/data "$STATE"/mongo/data.db*
        start_mongo
        ;;
    status)
        [ -f "$ENV_FILE" ] || { echo "not started"; exit 0; }
        state() { if port_open "$1"; then echo "runs on 127.0.0.1:$1"; else echo "DOWN (port $1)"; fi; }
        echo "PostgreSQL:          $(state "$(get_env TASKPOOL_PG_PORT)")"
        echo "PostgreSQL (TLS):    $(state "$(get_env TASKPOOL_PG_TLS_PORT)")"
        echo "PostgreSQL standby:  $(state "$(get_env TASKPOOL_PG_STANDBY_PORT)")"
        echo "Apache Kafka:        $(state "$(get_env TASKPOOL_KAFKA_PORT)") (also $(get_env KAFKA_TLS_BOOTSTRAP) SSL, $(get_env KAFKA_SASL_BOOTSTRAP) SASL_SSL)"
        echo "Operaton:            $(state "$(get_env TASKPOOL_OPERATON_PORT)") ($(get_env ENGINE_REST_URL))"
        echo "Camunda 7:           $(state "$(get_env TASKPOOL_CAMUNDA_PORT)") ($(get_env CAMUNDA_REST_URL))"
        echo "MongoDB (nx-27017):  $(state "$(get_env TASKPOOL_MONGO_PORT)")"
        echo
        cat "$ENV_FILE"
        ;;
    *)
        echo "usage: $0 start|stop|env|reset|status" >&2
        exit 2
        ;;
esac
