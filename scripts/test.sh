#!/usr/bin/env bash
# The single test entry: starts the servers the tests need, then checks formatting, lints and
# runs every test. Works on a fresh Debian machine with only the Rust toolchain.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

started_here=false
if ! scripts/services.sh env >/dev/null 2>&1; then started_here=true; fi
if $started_here; then trap 'scripts/services.sh stop' EXIT; fi
scripts/services.sh start
scripts/services.sh reset
eval "$(scripts/services.sh env)"

step() { echo "== $*" >&2; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The workspace build turns Kafka on everywhere; single-node and the tasklist library are
# built as `cargo run` builds them, without it (decision 0030).
cargo clippy -p taskpool -p taskpool-tasklist --lib --bins --locked -- -D warnings

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast --lib --bins --tests
fi

step "doc tests"
cargo test --workspace --locked --doc

step "deployment files against the binaries"
cargo build --workspace --bins --locked
# Debian's Python: docker-compose brings its YAML module.
/usr/bin/python3 scripts/check-deployment.py "${CARGO_TARGET_DIR:-target}/debug"

step "all checks passed"
