#!/usr/bin/env bash
# Operaton (Camunda 7's open-source continuation), unmodified, for taskpool's tests: the Spring
# Boot starter with its REST API on PostgreSQL, from Maven Central.
#
#   scripts/operaton.sh fetch     resolve it with Maven into the cache and compile the harness,
#                                 once (nothing is downloaded when the cache has it)
#   scripts/operaton.sh run <port> <jdbc-url> [<spring property>...]
#                                 run the engine in the foreground (exec: the caller's child is
#                                 the JVM); the engine creates its tables in that database
set -euo pipefail

OPERATON_VERSION=1.0.3
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/operaton"
CACHE="${TASKPOOL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/taskpool}/operaton-$OPERATON_VERSION"

die() { echo "operaton: $*" >&2; exit 1; }

fetch() {
    # The harness's source is part of the cache key: a changed harness is compiled again.
    local stamp
    stamp=$(cat "$HERE/pom.xml" "$HERE/OperatonHarness.java" | sha256sum | cut -c1-16)
    [ -f "$CACHE/complete-$stamp" ] && return 0
    command -v javac >/dev/null || die "a JDK 17 or later is needed (Debian: default-jdk-headless)"
    command -v mvn >/dev/null || die "Maven is needed to fetch Operaton (Debian: maven)"
    mkdir -p "$CACHE"
    sed "s/OPERATON_VERSION/$OPERATON_VERSION/" "$HERE/pom.xml" > "$CACHE/pom.xml"
    echo "operaton: fetching Operaton $OPERATON_VERSION with Maven into $CACHE" >&2
    rm -rf "$CACHE/libs" "$CACHE/classes" "$CACHE"/complete-*
    mvn -q -B -f "$CACHE/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$CACHE/libs" >&2 || die "Maven could not fetch Operaton $OPERATON_VERSION"
    mkdir -p "$CACHE/classes"
    javac -d "$CACHE/classes" -cp "$CACHE/libs/*" "$HERE/OperatonHarness.java" \
        || die "the harness does not compile"
    touch "$CACHE/complete-$stamp"
}

run() { # run <port> <jdbc-url> [<spring property>...]
    [ $# -ge 2 ] || die "usage: $0 run <port> <jdbc-url> [--property=value ...]"
    local port=$1 url=$2
    shift 2
    fetch
    exec java -Xms256m -Xmx768m -XX:+UseSerialGC -Djava.awt.headless=true \
        -cp "$CACHE/classes:$CACHE/libs/*" taskpool.operaton.OperatonHarness \
        --server.port="$port" --server.address=127.0.0.1 \
        --spring.datasource.url="$url" \
        --operaton.bpm.database.schema-update=true \
        --operaton.bpm.history-level=full \
        --operaton.bpm.generic-properties.properties.job-executor-activate=true \
        --operaton.bpm.generic-properties.properties.restrict-user-operation-log-to-authenticated-users=false \
        --spring.main.banner-mode=off \
        "$@"
}

case "${1:-}" in
    fetch) fetch ;;
    run) shift; run "$@" ;;
    *) echo "usage: $0 fetch | run <port> <jdbc-url> [--property=value ...]" >&2; exit 2 ;;
esac
