#!/usr/bin/env bash
# A Camunda 7 engine, unmodified, for taskpool's tests: Operaton (Camunda 7's open-source
# continuation) or Camunda 7 CE, each its Spring Boot starter with the REST API on PostgreSQL,
# from Maven Central.
#
#   scripts/engine7.sh <operaton|camunda> fetch
#       resolve it with Maven into the cache and compile the harness, once (nothing is
#       downloaded when the cache has it)
#   scripts/engine7.sh <operaton|camunda> run <port> <jdbc-url> [<spring property>...]
#       run the engine in the foreground (exec: the caller's child is the JVM); the engine
#       creates its tables in that database
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/engine7"

die() { echo "engine7: $*" >&2; exit 1; }

case "${1:-}" in
    operaton)
        NAME=Operaton VERSION=1.0.3 PREFIX=operaton
        STARTER=org.operaton.bpm.springboot:operaton-bpm-spring-boot-starter-rest ;;
    camunda)
        NAME="Camunda 7" VERSION=7.24.0 PREFIX=camunda
        STARTER=org.camunda.bpm.springboot:camunda-bpm-spring-boot-starter-rest ;;
    *) die "usage: $0 <operaton|camunda> fetch | run <port> <jdbc-url> [--property=value ...]" ;;
esac
shift
CACHE="${TASKPOOL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/taskpool}/$PREFIX-$VERSION"

fetch() {
    # The harness's source is part of the cache key: a changed harness is compiled again.
    local stamp
    stamp=$(cat "$HERE/pom.xml" "$HERE/Engine7Harness.java" | sha256sum | cut -c1-16)
    [ -f "$CACHE/complete-$stamp" ] && return 0
    command -v javac >/dev/null || die "a JDK 17 or later is needed (Debian: default-jdk-headless)"
    command -v mvn >/dev/null || die "Maven is needed to fetch $NAME (Debian: maven)"
    mkdir -p "$CACHE"
    sed -e "s/STARTER_GROUP/${STARTER%%:*}/" -e "s/STARTER_ARTIFACT/${STARTER##*:}/" \
        -e "s/ENGINE_VERSION/$VERSION/" "$HERE/pom.xml" > "$CACHE/pom.xml"
    echo "engine7: fetching $NAME $VERSION with Maven into $CACHE" >&2
    rm -rf "$CACHE/libs" "$CACHE/classes" "$CACHE"/complete-*
    mvn -q -B -f "$CACHE/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$CACHE/libs" >&2 || die "Maven could not fetch $NAME $VERSION"
    mkdir -p "$CACHE/classes"
    javac -d "$CACHE/classes" -cp "$CACHE/libs/*" "$HERE/Engine7Harness.java" \
        || die "the harness does not compile"
    touch "$CACHE/complete-$stamp"
}

run() { # run <port> <jdbc-url> [<spring property>...]
    [ $# -ge 2 ] || die "usage: $0 $PREFIX run <port> <jdbc-url> [--property=value ...]"
    local port=$1 url=$2
    shift 2
    fetch
    # Operation log entries for unauthenticated REST calls too: the tests count claims there.
    exec java -Xms256m -Xmx768m -XX:+UseSerialGC -Djava.awt.headless=true \
        -cp "$CACHE/classes:$CACHE/libs/*" taskpool.engine7.Engine7Harness \
        --server.port="$port" --server.address=127.0.0.1 \
        --spring.datasource.url="$url" \
        --$PREFIX.bpm.database.schema-update=true \
        --$PREFIX.bpm.history-level=full \
        --$PREFIX.bpm.generic-properties.properties.job-executor-activate=true \
        --$PREFIX.bpm.generic-properties.properties.restrict-user-operation-log-to-authenticated-users=false \
        --spring.main.banner-mode=off \
        "$@"
}

case "${1:-}" in
    fetch) fetch ;;
    run) shift; run "$@" ;;
    *) die "usage: $0 $PREFIX fetch | run <port> <jdbc-url> [--property=value ...]" ;;
esac
