#!/usr/bin/env bash
# Benchmark risk scoring on SQLite and on PostgreSQL, the same way on both.
#
#   scripts/bench_scoring.sh
#
# For each store: start `signaal serve --no-scoring`, load the Synthea sample (every Bundle
# as a transaction), stop it, and time `signaal score --all` over everything loaded (full
# re-score, patients/s); then start `signaal serve` with its scoring worker and run
# `signaal bench --flag-delay` (commit→Flag delay while the clients keep ingesting).
# The throwaway PostgreSQL comes from scripts/lib/postgres.sh, as in scripts/test.sh.
#
# Environment knobs:
#   SIGNAAL_BENCH_CLIENTS=8   concurrent clients of the flag-delay phase
#   SIGNAAL_BENCH_SECONDS=20  seconds per bench phase
#   SIGNAAL_BENCH_SYNTHEA=F   the Synthea archive (default ../shared/synthea/synthea-r4-300.tar.gz)
set -euo pipefail

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
clients="${SIGNAAL_BENCH_CLIENTS:-8}"
seconds="${SIGNAAL_BENCH_SECONDS:-20}"
synthea="${SIGNAAL_BENCH_SYNTHEA:-$repo_root/../shared/synthea/synthea-r4-300.tar.gz}"
[[ -f "$synthea" ]] || die "no Synthea archive at $synthea (set SIGNAAL_BENCH_SYNTHEA)"

# shellcheck source=scripts/lib/postgres.sh
source "$repo_root/scripts/lib/postgres.sh"

work_dir=""
server_pid=""
stop_server() {
    if [[ -n "$server_pid" ]]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    stop_server
    pg_cleanup
    [[ -n "$work_dir" && -d "$work_dir" ]] && rm -rf -- "$work_dir"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

log "cargo build --release"
cargo build --release --locked
bin="${CARGO_TARGET_DIR:-$repo_root/target}/release/signaal"
[[ -x "$bin" ]] || die "$bin was not built"

pg_find_or_install
pg_init_user
pg_create_cluster
pg_start
pg_url="postgres://postgres@127.0.0.1:$port"
work_dir="$(mktemp -d "${TMPDIR:-/tmp}/signaal-bench-scoring.XXXXXX")"
mkdir -p "$work_dir/synthea"
tar -xzf "$synthea" -C "$work_dir/synthea"

# serve LABEL DATABASE [OPTIONS…]: starts the server, sets $listen
serve() {
    local label="$1" database="$2"
    shift 2
    listen="127.0.0.1:$(free_port)"
    "$bin" serve --listen "$listen" --database "$database" "$@" >>"$work_dir/$label-server.log" 2>&1 &
    server_pid=$!
    local i
    for i in $(seq 1 100); do
        curl -fsS -o /dev/null "http://$listen/health" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$work_dir/$label-server.log" >&2
    die "signaal serve on $label did not become ready"
}

results="$work_dir/results.txt"
: >"$results"

run() {
    local label="$1" database="$2"
    serve "$label" "$database" --no-scoring
    log "$label: loading $(find "$work_dir/synthea" -name '*.json' | wc -l) Synthea Bundles"
    # Practitioners and organisations first: patient Bundles refer to them.
    for f in "$work_dir"/synthea/{practitioner,hospital}Information*.json; do
        [[ -f "$f" ]] && curl -fsS -o /dev/null -H 'Content-Type: application/fhir+json' \
            --data-binary "@$f" "http://$listen/fhir"
    done
    find "$work_dir/synthea" -name '*.json' ! -name '*Information*' -print0 |
        xargs -0 -P 4 -I{} curl -fsS -o /dev/null -H 'Content-Type: application/fhir+json' \
            --data-binary @{} "http://$listen/fhir"
    stop_server
    log "$label: signaal score --all"
    "$bin" score --all --database "$database" 2>"$work_dir/$label-score.txt"
    { echo "[$label] $(tail -n 1 "$work_dir/$label-score.txt")"; } | tee -a "$results"
    serve "$label" "$database"
    "$bin" bench --url "http://$listen/fhir" --clients "$clients" --seconds "$seconds" \
        --transaction-sizes 10 --flag-delay --label "$label" | tee -a "$results"
    stop_server
}

run sqlite "sqlite://$work_dir/scoring.db"
"$pg_bindir/psql" -X -q "$pg_url/postgres" -c 'create database signaal_scoring' </dev/null ||
    psql -X -q "$pg_url/postgres" -c 'create database signaal_scoring' </dev/null
run postgres "$pg_url/signaal_scoring"

echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
cat "$results"
