#!/usr/bin/env bash
# Run Signaal's whole test suite against a throwaway PostgreSQL server.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh --test search   # with arguments: just `cargo test --locked ARGS`
#
# What it does:
#   1. finds PostgreSQL server binaries (initdb, pg_ctl), installing Debian's
#      `postgresql` package if there are none, and Chromium with its chromedriver
#      for the browser test (Debian's `chromium`, `chromium-driver`);
#   2. creates a fresh cluster in a temp dir and starts it on a free port on
#      127.0.0.1 (trust auth, durability switched off: it only lives for this run);
#   3. exports SIGNAAL_TEST_POSTGRES_URL & co. so the PostgreSQL variants of the
#      tests run (and fail rather than skip);
#   4. runs `cargo test --locked --all-targets "$@"`, then the doc tests if the
#      package has a library target, and exits with cargo's status.
# The server is stopped and the temp dir removed on exit, whatever the cause
# (test failure, Ctrl-C, SIGTERM).
#
# Environment knobs:
#   SIGNAAL_TEST_DRY_RUN=1   start PostgreSQL and run `psql ... -c 'select version()'`
#                            against it instead of cargo (to check this script
#                            itself without compiling anything).
#   SIGNAAL_PG_BINDIR=DIR    use the initdb/pg_ctl/postgres found in DIR.
#   CI=true                  also sets SIGNAAL_REQUIRE_FIXTURES=1 (see below).
set -euo pipefail

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Work from the repository root, wherever we are called from.
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

dry_run="${SIGNAAL_TEST_DRY_RUN:-0}"
if [[ "$dry_run" != 1 ]] && ! command -v cargo >/dev/null 2>&1; then
    die "cargo not found on PATH; install Rust first (https://rustup.rs)"
fi

# The throwaway PostgreSQL server: find_pg_bindir, pg_create_cluster, pg_start, pg_cleanup, ...
# shellcheck source=scripts/lib/postgres.sh
source "$repo_root/scripts/lib/postgres.sh"

# ---------------------------------------------------------------------------
# 1. PostgreSQL server binaries
# ---------------------------------------------------------------------------

pg_find_or_install

# Chromium and chromedriver for the browser test (tests/coach_page.rs): installed
# like PostgreSQL when missing; exports SIGNAAL_CHROMIUM and SIGNAAL_CHROMEDRIVER.
# shellcheck source=scripts/lib/chromium.sh
source "$repo_root/scripts/lib/chromium.sh"
chromium_find_or_install

# ---------------------------------------------------------------------------
# 2. A fresh cluster in a temp dir
# ---------------------------------------------------------------------------

pg_init_user

# shellcheck disable=SC2317  # only reached through the trap below
cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    pg_cleanup
    exit "$status"
}
trap cleanup EXIT

# The long-running commands (cargo) run through run_child, in their own
# process group. bash defers traps until a *foreground* command finishes, so a
# SIGTERM (CI timeout/cancel) would otherwise wait for the whole test run; with
# `wait` the trap fires at once and can stop the tests (cargo and the test
# binaries it spawned) before the EXIT trap stops PostgreSQL.
child=""
run_child() {
    local rc=0
    if command -v setsid >/dev/null 2>&1; then
        setsid "$@" &
    else
        "$@" &
    fi
    child=$!
    wait "$child" || rc=$?
    child=""
    return "$rc"
}
# shellcheck disable=SC2317  # only reached through the traps below
on_signal() {
    trap '' INT TERM HUP
    if [[ -n "$child" ]]; then
        # The negative pid targets the child's process group (setsid made it
        # a group leader), i.e. cargo and the test binaries it is running.
        kill -TERM -- "-$child" 2>/dev/null || kill -TERM "$child" 2>/dev/null || true
        local i
        for i in $(seq 1 50); do
            kill -0 "$child" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL -- "-$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    exit "$1"
}
# bash does not run the EXIT trap when killed by SIGTERM/SIGHUP; turn those
# (and Ctrl-C) into a normal exit so the server never outlives us.
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP

pg_create_cluster

# ---------------------------------------------------------------------------
# 3. Start it on a free port
# ---------------------------------------------------------------------------

pg_start

ms() { echo $((($2 - $1) / 1000000)); }

# ---------------------------------------------------------------------------
# 4. Environment for the tests
# ---------------------------------------------------------------------------

# Tests create their own databases through this URL.
export SIGNAAL_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
# Fail, rather than silently skip, the PostgreSQL variant of the tests.
export SIGNAAL_TEST_REQUIRE_POSTGRES=1
# In CI, and wherever the shared fixtures folder (official FHIR package etc.)
# is present, tests that need those fixtures must fail rather than skip.
if [[ "${CI:-}" == true || -d "$repo_root/../shared" ]]; then
    export SIGNAAL_REQUIRE_FIXTURES=1
fi

cat >&2 <<EOF
==> PostgreSQL $pg_version, from $pg_bindir
==>   on 127.0.0.1:$port, data in $data_dir, running as ${pg_user:-$(id -un)}
==>   initdb $(ms "$start_ts" "$initdb_ts") ms, start $(ms "$initdb_ts" "$ready_ts") ms
==> SIGNAAL_TEST_POSTGRES_URL=$SIGNAAL_TEST_POSTGRES_URL
==> SIGNAAL_TEST_REQUIRE_POSTGRES=1${SIGNAAL_REQUIRE_FIXTURES:+ SIGNAAL_REQUIRE_FIXTURES=1}
EOF

# ---------------------------------------------------------------------------
# 5. Run the tests
# ---------------------------------------------------------------------------

# Doc tests are only run by `cargo test --doc`, not by --all-targets, and
# `--doc` errors out when there is no library target.
# (Not `cargo metadata | grep -q`: with pipefail, grep quitting early can make
# cargo die of SIGPIPE and the pipeline report failure.)
has_lib_target() {
    local meta
    meta="$(cargo metadata --no-deps --format-version 1 --offline 2>/dev/null)" || return 1
    [[ "$meta" == *'"doctest":true'* ]]
}

if [[ "$dry_run" == 1 ]]; then
    psql_bin="$pg_bindir/psql"
    [[ -x "$psql_bin" ]] || psql_bin="$(command -v psql)" || die "psql not found"
    log "SIGNAAL_TEST_DRY_RUN=1: running psql instead of: cargo test --locked --all-targets $*"
    if command -v cargo >/dev/null 2>&1 && has_lib_target; then
        log "  (and then: cargo test --locked --doc)"
    fi
    run_child "$psql_bin" -X -v ON_ERROR_STOP=1 "$SIGNAAL_TEST_POSTGRES_URL" -c 'select version()'
    exit
fi

status=0
if [[ $# -gt 0 ]]; then
    # A selection (`--test interactions`, a filter): run just that.
    log "cargo test --locked $*"
    run_child cargo test --locked "$@" || status=$?
    exit "$status"
fi
log "cargo test --locked --all-targets"
run_child cargo test --locked --all-targets || status=$?
if [[ $status -eq 0 ]] && has_lib_target; then
    log "cargo test --locked --doc"
    run_child cargo test --locked --doc || status=$?
fi
exit "$status"
