#!/usr/bin/env bash
# Benchmark Signaal on SQLite and on PostgreSQL, the same way on both.
#
#   scripts/bench.sh
#   SIGNAAL_BENCH_MODE=search scripts/bench.sh    # the search benchmark (issue 3)
#
# What it does:
#   1. builds the release binary (cargo build --release);
#   2. starts a throwaway PostgreSQL exactly as scripts/test.sh does
#      (scripts/lib/postgres.sh: temp dir, free port, fsync=off);
#   3. for SQLite (a temp file) and then PostgreSQL: starts `signaal serve` on a
#      free port on 127.0.0.1, runs `signaal bench` against it (create, read,
#      update over HTTP, plus the raw store insert rate on a second, empty
#      database of the same kind), and stops the server;
#      With --database it also measures the storage each create, read and update
#      adds (bytes per request: SQLite pages in use of the database and its audit
#      log file, PostgreSQL pg_database_size), and with --flag-delay the delay from
#      a weight gain's commit to its Flag under a steady 200 creates/s;
#   4. prints the machine, the settings and both result tables.
# In export mode, step 3 first does what import mode does (and reports it), then starts the
# server on the imported database and times one system-level Bulk Data $export of everything
# (kick-off to manifest): the resources exported per second and the server's peak RSS (VmHWM)
# during the export, with the RSS of the idle server before it for comparison. One run gives
# import and export at the same size (SIGNAAL_BENCH_COPIES=12: about 1.08 million).
# In search mode, step 3 instead loads the Synthea Bundles and SIGNAAL_BENCH_PATIENTS
# synthetic patients into the server's (empty) database, prints the query plan of
# each search query (--explain) and times the five queries (`signaal bench --search`).
# In import mode, step 3 converts the Synthea Bundles to NDJSON (scripts/synthea_ndjson.py,
# SIGNAAL_BENCH_COPIES copies) and times `signaal import` of them into an empty database
# of each store: resources/s and peak RSS (no server runs).
# Everything it started is stopped, and its temp dirs removed, on exit.
#
# Environment knobs:
#   SIGNAAL_BENCH_CLIENTS=8   concurrent clients
#   SIGNAAL_BENCH_SECONDS=20  seconds per phase (4 phases per store)
#   SIGNAAL_BENCH_SYNTHEA=F   a .tar.gz of Synthea transaction Bundles to load once
#                             per store after the timed phases (default:
#                             ../shared/synthea/synthea-r4-300.tar.gz when it exists;
#                             'none' to skip)
#   SIGNAAL_BENCH_MODE=write  'write' (the phases above), 'search', 'import' or 'export'
#   SIGNAAL_BENCH_PATIENTS=2000  search mode: synthetic patients to load
#                             (462 resources each; 2000 + the 300 Synthea ones
#                             are just over one million resources)
#   SIGNAAL_BENCH_SEED=1      search mode: seed of the synthetic patients
#   SIGNAAL_BENCH_COPIES=1    import and export modes: copies of the Synthea sample (89,773
#                             resources each; 12 give about 1.08 million)
#   SIGNAAL_BENCH_BIN=PATH    use this signaal binary instead of building the release one
#   SIGNAAL_BENCH_STORES="sqlite postgres"  the stores to run, in order
#   SIGNAAL_PG_BINDIR=DIR     use the initdb/pg_ctl/postgres found in DIR.
#   SIGNAAL_BENCH_PROFILE=release  or 'debug' (cargo build: dependencies optimised,
#                             Signaal's own code not; quicker to build, slower to run)
#   SIGNAAL_BENCH_SERVER=BIN  run this `signaal` binary as the server (e.g. an older
#                             build, for before/after numbers from the same bench
#                             command); default: the one just built
#   SIGNAAL_BENCH_FLAG_RATE=200  write mode: creates per second under which the
#                             commit→Flag delay is measured (0: no such phase)
#   SIGNAAL_BENCH_BEFORE=BIN  write mode: before each store's run, the same run with
#                             this older `signaal` as both the server and the bench
#                             (its raw store phases then use its store code), on fresh
#                             databases, labelled STORE-before: before/after numbers
#                             from one run of the script
#   SIGNAAL_BENCH_IMPORT_LINES=2000  write mode: lines per $import job (0: no phase)
#   SIGNAAL_BENCH_WRK=auto    write mode: after `signaal bench`, read one Patient by id with
#                             wrk (an outside load generator, the issue's tool: lighter than
#                             the bench's own client, which shares the cores); 'auto' finds
#                             or installs Debian's wrk, 'off' skips it, or a path to wrk
set -euo pipefail

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

clients="${SIGNAAL_BENCH_CLIENTS:-8}"
seconds="${SIGNAAL_BENCH_SECONDS:-20}"
mode="${SIGNAAL_BENCH_MODE:-write}"
patients="${SIGNAAL_BENCH_PATIENTS:-2000}"
seed="${SIGNAAL_BENCH_SEED:-1}"
stores="${SIGNAAL_BENCH_STORES:-sqlite postgres}"
flag_rate="${SIGNAAL_BENCH_FLAG_RATE:-200}"
import_lines="${SIGNAAL_BENCH_IMPORT_LINES:-2000}"
before_bin="${SIGNAAL_BENCH_BEFORE:-}"
if [[ -n "$before_bin" ]]; then
    [[ -x "$before_bin" ]] || die "SIGNAAL_BENCH_BEFORE=$before_bin is not an executable"
    [[ "$mode" == write ]] || die "SIGNAAL_BENCH_BEFORE needs SIGNAAL_BENCH_MODE=write"
fi
copies="${SIGNAAL_BENCH_COPIES:-1}"
[[ "$clients" =~ ^[0-9]+$ && "$import_lines" =~ ^[0-9]+$ && "$seconds" =~ ^[0-9]+$ && "$patients" =~ ^[0-9]+$ && "$seed" =~ ^[0-9]+$ && "$flag_rate" =~ ^[0-9]+$ && "$copies" =~ ^[0-9]+$ ]] ||
    die "SIGNAAL_BENCH_CLIENTS, _SECONDS, _PATIENTS, _SEED, _FLAG_RATE and _COPIES must be numbers"
[[ "$mode" == write || "$mode" == search || "$mode" == import || "$mode" == export ]] ||
    die "SIGNAAL_BENCH_MODE must be 'write', 'search', 'import' or 'export'"
for store in $stores; do
    [[ "$store" == sqlite || "$store" == postgres ]] ||
        die "SIGNAAL_BENCH_STORES: unknown store '$store' (sqlite, postgres)"
done

command -v cargo >/dev/null 2>&1 || die "cargo not found on PATH; install Rust first (https://rustup.rs)"

# shellcheck source=scripts/lib/postgres.sh
source "$repo_root/scripts/lib/postgres.sh"
# shellcheck source=scripts/lib/wrk.sh
source "$repo_root/scripts/lib/wrk.sh"
wrk_bin=""
[[ "$mode" == write ]] && wrk_find_or_install

# ---------------------------------------------------------------------------
# Stopping everything we start, whatever happens
# ---------------------------------------------------------------------------

work_dir=""
server_pid=""
child=""
# shellcheck disable=SC2317  # only reached through the traps below
stop_server() {
    if [[ -n "$server_pid" ]]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        local i
        for i in $(seq 1 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
# shellcheck disable=SC2317
cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    if [[ -n "$child" ]]; then
        kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    stop_server
    pg_cleanup
    if [[ -n "$work_dir" && -d "$work_dir" ]]; then
        rm -rf -- "$work_dir"
    fi
    exit "$status"
}
trap cleanup EXIT
# bash runs no EXIT trap when killed by a signal: make signals a normal exit.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Long commands run in the background and are waited for, so that a signal is
# handled at once rather than after they finish.
run_child() {
    local rc=0
    "$@" &
    child=$!
    wait "$child" || rc=$?
    child=""
    return "$rc"
}

# ---------------------------------------------------------------------------
# 1. Build
# ---------------------------------------------------------------------------

if [[ -n "${SIGNAAL_BENCH_BIN:-}" ]]; then
    bin="$SIGNAAL_BENCH_BIN"
    [[ -x "$bin" ]] || die "SIGNAAL_BENCH_BIN=$bin is not an executable"
    log "using $bin (SIGNAAL_BENCH_BIN), not a build of this checkout"
    profile="given"
else
    profile="${SIGNAAL_BENCH_PROFILE:-release}"
    case "$profile" in
        release) log "cargo build --release"; run_child cargo build --release; profile_dir=release ;;
        debug) log "cargo build (debug: only Signaal's own code unoptimised)"; run_child cargo build; profile_dir=debug ;;
        *) die "SIGNAAL_BENCH_PROFILE must be 'release' or 'debug'" ;;
    esac
    target_dir="${CARGO_TARGET_DIR:-target}"
    [[ "$target_dir" == /* ]] || target_dir="$repo_root/$target_dir"
    bin="$target_dir/$profile_dir/signaal"
    [[ -x "$bin" ]] || die "$bin was not built"
fi
server_bin="${SIGNAAL_BENCH_SERVER:-$bin}"
[[ -x "$server_bin" ]] || die "SIGNAAL_BENCH_SERVER: $server_bin is not an executable"

# ---------------------------------------------------------------------------
# 2. PostgreSQL
# ---------------------------------------------------------------------------

pg_version="(not run)"
if [[ " $stores " == *" postgres "* ]]; then
    pg_find_or_install
    pg_init_user
    pg_create_cluster
    pg_start
    pg_url="postgres://postgres@127.0.0.1:$port"
    psql_bin="$pg_bindir/psql"
    [[ -x "$psql_bin" ]] || psql_bin="$(command -v psql)" || die "psql not found"
    # One database for the server, an empty one for the raw insert rate.
    "$psql_bin" -X -q -v ON_ERROR_STOP=1 "$pg_url/postgres" \
        -c 'create database signaal_http' -c 'create database signaal_raw' \
        -c 'create database signaal_http_before' -c 'create database signaal_raw_before' </dev/null
    log "PostgreSQL $pg_version on 127.0.0.1:$port (fsync=off, synchronous_commit=off, full_page_writes=off)"
fi

work_dir="$(mktemp -d "${TMPDIR:-/tmp}/signaal-bench.XXXXXX")"

synthea="${SIGNAAL_BENCH_SYNTHEA:-$repo_root/../shared/synthea/synthea-r4-300.tar.gz}"
synthea_args=()
if [[ "$mode" == import || "$mode" == export ]]; then
    [[ -f "$synthea" ]] || die "$mode mode needs the Synthea archive (SIGNAAL_BENCH_SYNTHEA)"
    log "converting $synthea to NDJSON ($copies copies)"
    run_child python3 "$repo_root/scripts/synthea_ndjson.py" --copies "$copies" \
        "$work_dir/ndjson" "$synthea" >"$work_dir/ndjson-counts.txt"
    log "NDJSON: $(grep '^total' "$work_dir/ndjson-counts.txt" | cut -f2) resources, $(du -sh "$work_dir/ndjson" | cut -f1)"
elif [[ "$synthea" != none && -f "$synthea" ]]; then
    mkdir -p "$work_dir/synthea"
    tar -xzf "$synthea" -C "$work_dir/synthea"
    synthea_args=(--synthea-dir "$work_dir/synthea")
    log "Synthea Bundles from $synthea: $(find "$work_dir/synthea" -name '*.json' | wc -l) files"
elif [[ "$synthea" != none ]]; then
    log "no Synthea archive at $synthea: skipping the Synthea load (set SIGNAAL_BENCH_SYNTHEA)"
fi

# ---------------------------------------------------------------------------
# 3. One run per store
# ---------------------------------------------------------------------------

results="$work_dir/results.txt"
: >"$results"

# bench LABEL SERVER_DATABASE_URL RAW_DATABASE_URL
start_server() {
    local label="$1" database="$2" attempt
    for attempt in 1 2 3; do
        listen="127.0.0.1:$(free_port)"
        "$bin" serve --listen "$listen" --database "$database" --export-dir "$work_dir/export-$label" \
            --no-scoring >"$work_dir/$label-server.log" 2>&1 &
        server_pid=$!
        local i
        for i in $(seq 1 100); do
            curl -fsS -o /dev/null "http://$listen/health" 2>/dev/null && return 0
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        stop_server
        [[ $attempt -lt 3 ]] && grep -q 'in use' "$work_dir/$label-server.log" && continue
        cat "$work_dir/$label-server.log" >&2
        die "signaal serve on $label did not become ready (log above)"
    done
}

# Export mode: import (timed, as in import mode), start the server, time one $export of
# everything, read the server's peak RSS.
bench_export() {
    local label="$1" database="$2" listen=""
    import "$label" "$database"
    start_server "$label" "$database"
    local idle_kb start end status manifest polls=0
    idle_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$server_pid/status")
    log "$label: \$export on $listen (idle server: $idle_kb kB peak RSS)"
    start=$(date +%s.%N)
    status=$(curl -fsS -D - -o /dev/null -H 'Prefer: respond-async' "http://$listen/fhir/\$export" |
        tr -d '\r' | awk 'tolower($1) == "content-location:" {print $2}')
    [[ -n "$status" ]] || die "the \$export kick-off gave no status URL"
    manifest="$work_dir/$label-manifest.json"
    while :; do
        local code
        code=$(curl -sS -o "$manifest" -w '%{http_code}' "$status")
        [[ "$code" == 200 ]] && break
        [[ "$code" == 202 ]] || die "\$export status $code: $(cat "$manifest")"
        polls=$((polls + 1))
        sleep 0.5
    done
    end=$(date +%s.%N)
    local peak_kb resources files seconds_taken
    peak_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$server_pid/status")
    resources=$(jq '[.output[].count] | add // 0' "$manifest")
    files=$(jq '.output | length' "$manifest")
    seconds_taken=$(echo "$end - $start" | bc -l)
    {
        printf 'export %s: %s resources in %s files, %.1f s kick-off to manifest, %.0f resources/s\n' \
            "$label" "$resources" "$files" "$seconds_taken" "$(echo "$resources / $seconds_taken" | bc -l)"
        printf 'export %s: server peak RSS %s MiB during the export (idle after restart: %s MiB)\n' \
            "$label" "$((peak_kb / 1024))" "$((idle_kb / 1024))"
        printf 'export %s: on disk %s\n' "$label" "$(du -sh "$work_dir/export-$label" | cut -f1)"
    } | tee -a "$results"
    stop_server
}

# bench LABEL SERVER_DATABASE_URL RAW_DATABASE_URL [BENCH_BIN SERVER_BIN]
bench() {
    local label="$1" database="$2" raw="$3" bench_bin="${4:-$bin}" serve_bin="${5:-$server_bin}" listen="" attempt
    if [[ "$mode" == export ]]; then
        bench_export "$label" "$database"
        return
    fi
    for attempt in 1 2 3; do
        listen="127.0.0.1:$(free_port)"
        "$serve_bin" serve --listen "$listen" --database "$database" >"$work_dir/$label-server.log" 2>&1 &
        server_pid=$!
        local i
        for i in $(seq 1 100); do
            curl -fsS -o /dev/null "http://$listen/health" 2>/dev/null && break
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        curl -fsS -o /dev/null "http://$listen/health" 2>/dev/null && break
        stop_server
        if [[ $attempt -lt 3 ]] && grep -q 'in use' "$work_dir/$label-server.log"; then
            log "port of $listen was taken, retrying with another one"
            continue
        fi
        cat "$work_dir/$label-server.log" >&2
        die "signaal serve on $label did not become ready (log above)"
    done
    log "$label: signaal serve on $listen; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    local mode_args=(--raw-database "$raw" --database "$database" --import-lines "$import_lines")
    [[ "$flag_rate" -gt 0 ]] && mode_args+=(--flag-delay --flag-write-rate "$flag_rate")
    if [[ "$mode" == search ]]; then
        mode_args=(--search --explain --database "$database" --seed "$seed")
        [[ "$patients" -gt 0 ]] && mode_args+=(--generate-patients "$patients")
    fi
    printf 'load average before: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >"$work_dir/$label.txt"
    run_child "$bench_bin" bench --url "http://$listen/fhir" --clients "$clients" --seconds "$seconds" \
        --label "$label" "${mode_args[@]}" "${synthea_args[@]}" >>"$work_dir/$label.txt"
    if [[ -n "$wrk_bin" ]]; then
        wrk_read "$listen" "$clients" "$seconds" >>"$work_dir/$label.txt"
    fi
    printf 'load average after: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$work_dir/$label.txt"
    tee -a "$results" <"$work_dir/$label.txt"
    stop_server
}

# import LABEL DATABASE_URL: `signaal import` of the NDJSON into an empty database.
import() {
    local label="$1" database="$2"
    log "$label: signaal import; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    {
        printf '%s import of %s resources (%s)\n' "$label" \
            "$(grep '^total' "$work_dir/ndjson-counts.txt" | cut -f2)" "$database"
        printf 'load average before: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
        run_child "$bin" import "$work_dir/ndjson" --database "$database" 2>&1 |
            grep -E '^(imported|peak RSS|[0-9]+ line)' || true
        printf 'load average after: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
    } >"$work_dir/$label.txt"
    tee -a "$results" <"$work_dir/$label.txt"
}

for store in $stores; do
    if [[ "$mode" == import ]]; then
        case "$store" in
            sqlite) import sqlite "sqlite://$work_dir/import.db" ;;
            postgres) import postgres "$pg_url/signaal_http" ;;
        esac
        continue
    fi
    if [[ -n "$before_bin" ]]; then
        case "$store" in
            sqlite) bench sqlite-before "sqlite://$work_dir/http-before.db" \
                "sqlite://$work_dir/raw-before.db" "$before_bin" "$before_bin" ;;
            postgres) bench postgres-before "$pg_url/signaal_http_before" \
                "$pg_url/signaal_raw_before" "$before_bin" "$before_bin" ;;
        esac
    fi
    case "$store" in
        sqlite) bench sqlite "sqlite://$work_dir/http.db" "sqlite://$work_dir/raw.db" ;;
        postgres) bench postgres "$pg_url/signaal_http" "$pg_url/signaal_raw" ;;
    esac
done

# ---------------------------------------------------------------------------
# 4. Report
# ---------------------------------------------------------------------------

cat <<REPORT

== Signaal benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (src modified)')
machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(free -h | awk '/^Mem:/ {print $2}') RAM
build:   $profile profile, $bin ($(rustc --version)); server: $server_bin$([[ -n "$before_bin" ]] && echo "; before: $before_bin")
stores:  SQLite WAL, synchronous=FULL (every commit fsyncs) on $(df -T "$work_dir" | awk 'NR==2 {print $2}');
         PostgreSQL $pg_version, throwaway server with fsync=off, synchronous_commit=off, full_page_writes=off
mode:    $mode$(case "$mode" in
    search) echo ", $patients synthetic patients of seed $seed plus the Synthea Bundles" ;;
    import | export) echo ", $copies copies of the Synthea sample as NDJSON" ;;
esac)
load:    $clients clients, $seconds s per phase, one keep-alive connection per client, over loopback;
         the load generator runs on the same machine as the server (and the database)
REPORT
cat "$results"
