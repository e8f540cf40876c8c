# Part of scripts/services.sh, which sources it: the servers that run on Java, Apache Kafka
# and the Camunda 7 engines (Operaton, Camunda 7 CE). Uses services.sh's helpers and state.

# ---------------------------------------------------------------- Kafka (Apache Kafka)

KAFKA_SCRIPT="$ROOT/scripts/kafka-broker.sh"

# The broker's PEM key store: the test server's key and certificate, in one file.
kafka_keystore() {
    local keystore="$STATE/tls/kafka-keystore.pem"
    [ -f "$keystore" ] || cat "$STATE/tls/server.key" "$STATE/tls/server.pem" > "$keystore"
    echo "$keystore"
}

# One broker with three listeners: plaintext, SSL, and SASL_SSL with a SCRAM user of its own.
start_kafka() {
    local pid_file="$STATE/kafka.pid" plain ssl sasl password
    if pid_alive "$pid_file" && plain=$(get_env TASKPOOL_KAFKA_PORT) && port_open "$plain"; then
        return 0
    fi
    stop_pid "$pid_file" Kafka
    command -v java >/dev/null || apt_install default-jre-headless
    command -v mvn >/dev/null || apt_install maven
    "$KAFKA_SCRIPT" fetch
    plain=$(free_port)
    ssl=$(free_port)
    sasl=$(free_port)
    while [ "$ssl" = "$plain" ] || [ "$sasl" = "$plain" ] || [ "$sasl" = "$ssl" ]; do
        ssl=$(free_port)
        sasl=$(free_port)
    done
    password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
    rm -rf "$STATE/kafka"
    log "Kafka: starting Apache Kafka on 127.0.0.1: $plain plaintext, $ssl SSL, $sasl SASL_SSL"
    KAFKA_KEYSTORE=$(kafka_keystore) KAFKA_SASL_USERNAME=taskpool KAFKA_SASL_PASSWORD=$password \
        nohup "$KAFKA_SCRIPT" run "$STATE/kafka" "$plain" "$ssl" "$sasl" \
        > "$STATE/kafka.log" 2>&1 < /dev/null &
    echo $! > "$pid_file"
    wait_until 120 "Kafka on port $plain (see $STATE/kafka.log)" port_open "$plain"
    wait_until 30 "Kafka's SASL_SSL listener on port $sasl" port_open "$sasl"
    set_env TASKPOOL_KAFKA_PORT "$plain"
    set_env KAFKA_BOOTSTRAP "127.0.0.1:$plain"
    set_env KAFKA_TLS_BOOTSTRAP "127.0.0.1:$ssl"
    set_env KAFKA_SASL_BOOTSTRAP "127.0.0.1:$sasl"
    set_env KAFKA_SASL_USERNAME taskpool
    set_env KAFKA_SASL_PASSWORD "$password"
    set_env KAFKA_BROKER_SCRIPT "$KAFKA_SCRIPT"
    # What the broker's log directory was formatted with: a test checks the broker answers it.
    set_env KAFKA_CLUSTER_ID "$(sed -n 's/^cluster.id=//p' "$STATE/kafka/data/meta.properties")"
}

# ---------------------------------------------------------------- Camunda 7 engines (the real ones)

ENGINE7_SCRIPT="$ROOT/scripts/engine7.sh"

# A Camunda 7 engine (operaton or camunda) with its REST API on a database of its own on the test
# server, created afresh at each start (the engine creates its tables). Operaton's variables are
# ENGINE_*, Camunda 7 CE's CAMUNDA_*.
start_engine7() {
    local flavour=$1 name=$2 prefix=$3 pid_file="$STATE/$1.pid" port pg_port database="taskpool_$1"
    local port_key
    port_key="TASKPOOL_$(echo "$flavour" | tr '[:lower:]' '[:upper:]')_PORT"
    if pid_alive "$pid_file" && port=$(get_env "$port_key") && port_open "$port"; then
        return 0
    fi
    stop_pid "$pid_file" "$name"
    command -v javac >/dev/null || apt_install default-jdk-headless
    command -v mvn >/dev/null || apt_install maven
    "$ENGINE7_SCRIPT" "$flavour" fetch
    pg_port=$(get_env TASKPOOL_PG_PORT)
    psql_at "$pg_port" "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null
    psql_at "$pg_port" "CREATE DATABASE $database" >/dev/null
    port=$(free_port)
    log "$name: starting the engine on port $port (database $database)"
    nohup "$ENGINE7_SCRIPT" "$flavour" run "$port" \
        "jdbc:postgresql://127.0.0.1:$pg_port/$database?user=postgres&sslmode=disable" \
        > "$STATE/$flavour.log" 2>&1 < /dev/null &
    echo $! > "$pid_file"
    wait_until 180 "$name's REST API on port $port (see $STATE/$flavour.log)" \
        curl -sf "http://127.0.0.1:$port/engine-rest/engine"
    # The engine's tables as it made them, for tests that need a database of their own to
    # install into (before any test installed anything here).
    PGCONNECT_TIMEOUT=5 pg_dump -h 127.0.0.1 -p "$pg_port" -U postgres --schema-only --no-owner \
        "$database" > "$STATE/$flavour-schema.dump" || die "cannot dump the engine's schema"
    # Plain SQL for any client: without psql's meta-commands (\restrict, ...).
    grep -v '^\\' "$STATE/$flavour-schema.dump" > "$STATE/$flavour-schema.sql"
    set_env "${prefix}_SCHEMA_SQL" "$STATE/$flavour-schema.sql"
    set_env "$port_key" "$port"
    set_env "${prefix}_REST_URL" "http://127.0.0.1:$port/engine-rest"
    set_env "${prefix}_DATABASE_URL" "'postgres://postgres@127.0.0.1:$pg_port/$database?sslmode=disable'"
}
