#!/usr/bin/env bash
# The distributed pipeline on this machine, without containers: the servers of
# scripts/services.sh (PostgreSQL, a Kafka-protocol broker, a MongoDB-wire server), then the
# demo engine on PostgreSQL, kafka-relay and tasklist-api as processes, built in release mode.
#
#   scripts/dev-up.sh          start it all and print the web tasklist's URL
#   scripts/dev-up.sh stop     stop the three processes (the servers keep running;
#                              scripts/services.sh stop ends them)
#
# TASKPOOL_DEV_PORT chooses the tasklist's port (8080). Logs and PIDs: .services/dev/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${TASKPOOL_SERVICES_DIR:-$ROOT/.services}/dev"
PORT="${TASKPOOL_DEV_PORT:-8080}"
PROCESSES=(tasklist-api kafka-relay taskpool-demo)
USERS="kermit:approvers+managers,piggy:approvers,gonzo:purchasing,fozzie:purchasing,rowlf"

log() { echo "dev-up: $*" >&2; }

stop_all() {
    for name in "${PROCESSES[@]}"; do
        local pid_file="$STATE/$name.pid"
        if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
            kill -TERM "$(cat "$pid_file")"
            for _ in $(seq 1 50); do kill -0 "$(cat "$pid_file")" 2>/dev/null || break; sleep 0.2; done
            log "$name stopped"
        fi
        rm -f "$pid_file"
    done
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_healthy() { # wait_healthy <name> <url>
    for _ in $(seq 1 240); do
        if curl -fsS "$2" >/dev/null 2>&1; then return 0; fi
        if ! kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; then
            log "$1 exited; its log:"; tail -n 20 "$STATE/$1.log" >&2; exit 1
        fi
        sleep 0.5
    done
    log "$1 did not become healthy at $2; its log:"; tail -n 20 "$STATE/$1.log" >&2; exit 1
}

start() { # start <name> <binary args...>; the environment is set by the caller
    local name="$1"; shift
    nohup "$@" > "$STATE/$name.log" 2>&1 < /dev/null &
    echo $! > "$STATE/$name.pid"
}

case "${1:-up}" in
    up)
        mkdir -p "$STATE"
        stop_all
        "$ROOT/scripts/services.sh" start
        eval "$("$ROOT/scripts/services.sh" env)"
        log "building the release binaries"
        (cd "$ROOT" && cargo build --release --locked --bins -p kafka-relay -p tasklist-api -p taskpool-demo)
        bin="${CARGO_TARGET_DIR:-$ROOT/target}/release"
        demo_port=$(free_port); relay_port=$(free_port)

        TASKPOOL_DEMO__DATABASE__URL="$DATABASE_URL" \
        TASKPOOL_DEMO__HTTP__LISTEN="127.0.0.1:$demo_port" \
        TASKPOOL_DEMO__DEMO__RATE=2 \
        TASKPOOL_DEMO__LOG__FORMAT=pretty \
        TASKPOOL_DEMO__COMMANDS__BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP" \
        TASKPOOL_DEMO__COMMANDS__TOPIC_PREFIX=dev \
            start taskpool-demo "$bin/taskpool-demo" run
        wait_healthy taskpool-demo "http://127.0.0.1:$demo_port/health/ready"

        TASKPOOL_RELAY__DATABASE__URL="$DATABASE_URL" \
        TASKPOOL_RELAY__KAFKA__BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP" \
        TASKPOOL_RELAY__KAFKA__TOPIC_PREFIX=dev \
        TASKPOOL_RELAY__KAFKA__CREATE_TOPICS=true \
        TASKPOOL_RELAY__HTTP__LISTEN="127.0.0.1:$relay_port" \
        TASKPOOL_RELAY__LOG__FORMAT=pretty \
            start kafka-relay "$bin/kafka-relay" run
        wait_healthy kafka-relay "http://127.0.0.1:$relay_port/health"

        TASKPOOL_TASKLIST__MONGODB__URI="$MONGODB_URI" \
        TASKPOOL_TASKLIST__MONGODB__DATABASE=taskpool_dev \
        TASKPOOL_TASKLIST__KAFKA__BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP" \
        TASKPOOL_TASKLIST__KAFKA__TOPIC_PREFIX=dev \
        TASKPOOL_TASKLIST__KAFKA__GROUP_ID=taskpool-dev \
        TASKPOOL_TASKLIST__DEV_SIGN_IN__USERS="$USERS" \
        TASKPOOL_TASKLIST__HTTP__LISTEN="127.0.0.1:$PORT" \
        TASKPOOL_TASKLIST__LOG__FORMAT=pretty \
            start tasklist-api "$bin/tasklist-api" run
        wait_healthy tasklist-api "http://127.0.0.1:$PORT/health/ready"

        log "demo (PostgreSQL) -> kafka-relay -> broker -> tasklist-api (MongoDB) are running"
        echo "Open http://127.0.0.1:$PORT/ in a browser. Stop with: scripts/dev-up.sh stop"
        ;;
    stop)
        stop_all
        ;;
    *)
        echo "usage: scripts/dev-up.sh [up|stop]" >&2
        exit 2
        ;;
esac
