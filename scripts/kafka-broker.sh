#!/usr/bin/env bash
# One Apache Kafka broker for taskpool's tests: KRaft, broker and controller in one process.
# scripts/services.sh starts the shared one with it; tests start private ones the same way.
#
#   scripts/kafka-broker.sh fetch      resolve Kafka's broker with Maven into the cache, once
#                                      (no download at all when the cache has it)
#   scripts/kafka-broker.sh run <dir> <port> [<ssl-port> <sasl-ssl-port>]
#                                      run a broker in the foreground (exec: the caller's child
#                                      is the JVM, so SIGSTOP and SIGKILL reach the broker)
#
# run: a plaintext listener on 127.0.0.1:<port>; with the two other ports, an SSL listener and
# a SASL_SSL listener taking SCRAM-SHA-512, both with the PEM key store $KAFKA_KEYSTORE (key and
# certificate), and the user $KAFKA_SASL_USERNAME / $KAFKA_SASL_PASSWORD created when the log
# directory is formatted. <dir> keeps the configuration and the data: running again on the same
# <dir> restarts that broker with its data and ports. Automatic topic creation is off, as in
# production.
set -euo pipefail

KAFKA_VERSION=4.4.0
# Kafka 4.4 logs through SLF4J 1.7; log4j's binding for it, at the log4j version Kafka takes.
LOG4J_VERSION=2.25.5
CACHE="${TASKPOOL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/taskpool}/kafka-$KAFKA_VERSION"

die() { echo "kafka-broker: $*" >&2; exit 1; }

fetch() {
    [ -f "$CACHE/complete" ] && return 0
    command -v java >/dev/null || die "Java 17 or later is needed (Debian: default-jre-headless)"
    command -v mvn >/dev/null || die "Maven is needed to fetch Kafka (Debian: maven)"
    mkdir -p "$CACHE"
    cat > "$CACHE/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>taskpool.test</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
    echo "kafka-broker: fetching Apache Kafka $KAFKA_VERSION with Maven into $CACHE" >&2
    rm -rf "$CACHE/libs"
    mvn -q -B -f "$CACHE/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$CACHE/libs" >&2 || die "Maven could not fetch Kafka $KAFKA_VERSION"
    cat > "$CACHE/log4j2.yaml" <<'LOG'
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Logger:
      - name: kafka.request.logger
        level: WARN
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
LOG
    touch "$CACHE/complete"
}

# A TCP port nothing listens on, below Linux's ephemeral range (see services.sh).
free_port() {
    local port
    for _ in $(seq 1 200); do
        port=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
    done
    die "no free port found"
}

write_config() { # write_config <dir> <port> [<ssl-port> <sasl-ssl-port>]
    local dir=$1 port=$2 ssl=${3:-} sasl=${4:-} controller listeners advertised protocols
    controller=$(free_port)
    listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller"
    advertised="PLAINTEXT://127.0.0.1:$port"
    protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if [ -n "$ssl" ]; then
        [ -n "${KAFKA_KEYSTORE:-}" ] || die "KAFKA_KEYSTORE (PEM key and certificate) is not set"
        listeners="$listeners,SSL://127.0.0.1:$ssl,SASL_SSL://127.0.0.1:$sasl"
        advertised="$advertised,SSL://127.0.0.1:$ssl,SASL_SSL://127.0.0.1:$sasl"
        protocols="$protocols,SSL:SSL,SASL_SSL:SASL_SSL"
    fi
    cat > "$dir/server.properties" <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protocols
log.dirs=$dir/data
auto.create.topics.enable=false
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPERTIES
    if [ -n "$ssl" ]; then
        cat >> "$dir/server.properties" <<PROPERTIES
ssl.keystore.type=PEM
ssl.keystore.location=$KAFKA_KEYSTORE
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
PROPERTIES
    fi
}

run() { # run <dir> <port> [<ssl-port> <sasl-ssl-port>]
    local dir=$1
    [ $# -ge 2 ] || die "usage: $0 run <dir> <port> [<ssl-port> <sasl-ssl-port>]"
    fetch
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ -f "$dir/server.properties" ] || write_config "$dir" "${@:2}"
    local classpath="$CACHE/libs/*"
    if [ ! -f "$dir/data/meta.properties" ]; then
        local cluster scram=()
        cluster=$(java -cp "$classpath" kafka.tools.StorageTool random-uuid)
        if grep -q '^sasl.enabled.mechanisms' "$dir/server.properties"; then
            [ -n "${KAFKA_SASL_USERNAME:-}" ] && [ -n "${KAFKA_SASL_PASSWORD:-}" ] \
                || die "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are not set"
            scram=(--add-scram "SCRAM-SHA-512=[name=$KAFKA_SASL_USERNAME,password=$KAFKA_SASL_PASSWORD]")
        fi
        java -cp "$classpath" kafka.tools.StorageTool format -t "$cluster" \
            -c "$dir/server.properties" "${scram[@]}" >"$dir/format.log" 2>&1 \
            || die "formatting $dir/data failed, see $dir/format.log"
    fi
    exec java -Xms512m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$CACHE/log4j2.yaml" -cp "$classpath" \
        kafka.Kafka "$dir/server.properties"
}

case "${1:-}" in
    fetch) fetch ;;
    run) shift; run "$@" ;;
    *) echo "usage: $0 fetch | run <dir> <port> [<ssl-port> <sasl-ssl-port>]" >&2; exit 2 ;;
esac
