# shellcheck shell=bash
# shellcheck disable=SC2034  # pg_version, port, *_ts: set here for the sourcing script
# A throwaway PostgreSQL server on 127.0.0.1, for scripts/test.sh and scripts/bench.sh.
# Source it from a script running with `set -euo pipefail` that defines log and die, then:
#
#   pg_bindir="$(find_pg_bindir)"   # or install_postgresql first if empty
#   pg_init_user                    # sets pg_user ("" unless we are root)
#   trap '...; pg_cleanup; ...' EXIT  # stops the server and removes tmp_dir
#   pg_create_cluster               # sets tmp_dir, data_dir, server_log; runs initdb
#   pg_start                        # sets port and pg_version; the server is ready
#   ... postgres://postgres@127.0.0.1:$port/postgres (trust auth) ...
#
# The cluster is created in a temp dir with trust auth and durability switched off
# (fsync, synchronous_commit and full_page_writes off): it only lives for one run.
# Timestamps start_ts, initdb_ts and ready_ts (ns) are set for the caller's log.
#
# Environment knobs:
#   SIGNAAL_PG_BINDIR=DIR    use the initdb/pg_ctl/postgres found in DIR.

# ---------------------------------------------------------------------------
# PostgreSQL server binaries
# ---------------------------------------------------------------------------

# Print the directory holding the newest initdb+pg_ctl pair, or nothing.
# Debian keeps them in /usr/lib/postgresql/<major>/bin, which is not on PATH.
find_pg_bindir() {
    local candidates=() dir best="" best_ver="" ver
    if [[ -n "${SIGNAAL_PG_BINDIR:-}" ]]; then
        candidates+=("$SIGNAAL_PG_BINDIR")
    else
        # Follow symlinks (e.g. /usr/local/bin/pg_ctl -> /usr/lib/postgresql/15/bin)
        # to the real bin dir, which also holds `postgres` and `psql`.
        if command -v pg_ctl >/dev/null 2>&1; then
            candidates+=("$(dirname "$(readlink -f "$(command -v pg_ctl)")")")
        fi
        for dir in /usr/lib/postgresql/*/bin; do
            [[ -d "$dir" ]] && candidates+=("$dir")
        done
    fi
    for dir in "${candidates[@]}"; do
        [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]] || continue
        # "pg_ctl (PostgreSQL) 15.18 (Debian ...)" -> "15.18"
        ver="$("$dir/pg_ctl" --version 2>/dev/null | awk '{print $3}')" || continue
        [[ -n "$ver" ]] || continue
        if [[ -z "$best" ]] || [[ "$(printf '%s\n%s\n' "$best_ver" "$ver" | sort -V | tail -n1)" != "$best_ver" ]]; then
            best="$dir"
            best_ver="$ver"
        fi
    done
    [[ -n "$best" ]] && printf '%s\n' "$best"
    return 0
}

install_postgresql() {
    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            die "PostgreSQL server binaries (initdb, pg_ctl) not found, and we are not root and have no sudo to install them.
       Install them yourself (Debian/Ubuntu: apt-get install postgresql), or set SIGNAAL_PG_BINDIR."
        fi
    fi
    command -v apt-get >/dev/null 2>&1 ||
        die "PostgreSQL server binaries (initdb, pg_ctl) not found and apt-get is not available; install PostgreSQL, or set SIGNAAL_PG_BINDIR."
    log "PostgreSQL server binaries not found; installing Debian's postgresql package"
    # Note: the package may create and start its own cluster on port 5432.
    # We leave that one alone and never use it.
    "${sudo[@]}" apt-get update </dev/null
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql </dev/null
}

# Sets pg_bindir, installing Debian's postgresql package if no binaries are found.
pg_find_or_install() {
    pg_bindir="$(find_pg_bindir)"
    if [[ -z "$pg_bindir" ]]; then
        [[ -z "${SIGNAAL_PG_BINDIR:-}" ]] || die "SIGNAAL_PG_BINDIR=$SIGNAAL_PG_BINDIR has no initdb/pg_ctl"
        install_postgresql
        pg_bindir="$(find_pg_bindir)"
        [[ -n "$pg_bindir" ]] || die "installed postgresql but still cannot find initdb/pg_ctl"
    fi
}

# ---------------------------------------------------------------------------
# The cluster owner
# ---------------------------------------------------------------------------

# initdb and postgres refuse to run as root, so as root we run them as the
# `postgres` system user; otherwise as ourselves.
pg_user=""
pg_init_user() {
    pg_user=""
    if [[ "$(id -u)" -eq 0 ]]; then
        pg_user=postgres
        if ! id -u "$pg_user" >/dev/null 2>&1; then
            log "creating system user $pg_user (initdb refuses to run as root)"
            useradd --system --no-create-home --shell /usr/sbin/nologin "$pg_user"
        fi
    fi
}

# Run a command as the cluster owner, from inside the temp dir (the postgres
# user may not be allowed into the caller's cwd, e.g. under /root).
as_pg() {
    if [[ -z "$pg_user" ]]; then
        (cd "$tmp_dir" && "$@")
    elif command -v runuser >/dev/null 2>&1; then
        (cd "$tmp_dir" && runuser -u "$pg_user" -- "$@")
    else
        (cd "$tmp_dir" && su -s /bin/sh "$pg_user" -c "$(printf '%q ' "$@")")
    fi
}

# ---------------------------------------------------------------------------
# Stopping: call from the caller's EXIT trap
# ---------------------------------------------------------------------------

tmp_dir=""
data_dir=""
server_log=""
# Stops the server (if started) and removes the temp dir. Never fails.
# shellcheck disable=SC2317  # only reached through the caller's trap
pg_cleanup() {
    if [[ -n "$data_dir" && -f "$data_dir/postmaster.pid" ]]; then
        # Immediate mode: we are throwing the data away anyway.
        as_pg "$pg_bindir/pg_ctl" -D "$data_dir" -m immediate -w -t 30 stop >/dev/null 2>&1 </dev/null || true
        # Backstop, should pg_ctl have failed: kill the postmaster we started.
        if [[ -f "$data_dir/postmaster.pid" ]]; then
            local pid
            pid="$(head -n1 "$data_dir/postmaster.pid" 2>/dev/null || true)"
            if [[ "$pid" =~ ^[0-9]+$ ]] && [[ "$(ps -o comm= -p "$pid" 2>/dev/null)" == postgres ]]; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
    fi
    if [[ -n "$tmp_dir" && -d "$tmp_dir" ]]; then
        rm -rf -- "$tmp_dir"
    fi
}

# ---------------------------------------------------------------------------
# A fresh cluster in a temp dir
# ---------------------------------------------------------------------------

pg_create_cluster() {
    # Keep the path short: the Unix socket ($tmp_dir/.s.PGSQL.<port>) must fit in
    # ~107 bytes.
    tmp_dir="$(mktemp -d "${TMPDIR:-/tmp}/signaal-pg.XXXXXX")"
    if [[ -n "$pg_user" ]]; then
        chown "$pg_user" "$tmp_dir"
        if ! as_pg test -w "$tmp_dir"; then
            # e.g. TMPDIR inside /root: the postgres user cannot reach it.
            rm -rf -- "$tmp_dir"
            tmp_dir="$(mktemp -d /tmp/signaal-pg.XXXXXX)"
            chown "$pg_user" "$tmp_dir"
        fi
    fi
    data_dir="$tmp_dir/data"
    server_log="$tmp_dir/server.log"

    local initdb_args=(-D "$data_dir" --auth=trust --username=postgres -E UTF8
        # C locale: always available (no locale packages needed) and gives the
        # same collation everywhere.
        --locale=C)
    local initdb_help
    initdb_help="$("$pg_bindir/initdb" --help 2>/dev/null || true)"
    # Skipping fsync makes initdb several seconds faster; data is throwaway.
    [[ "$initdb_help" == *--no-sync* ]] && initdb_args+=(--no-sync)
    [[ "$initdb_help" == *--no-instructions* ]] && initdb_args+=(--no-instructions)

    start_ts=$(date +%s%N)
    if ! as_pg "$pg_bindir/initdb" "${initdb_args[@]}" >"$tmp_dir/initdb.log" 2>&1 </dev/null; then
        cat "$tmp_dir/initdb.log" >&2
        die "initdb failed (output above)"
    fi
    initdb_ts=$(date +%s%N)
}

# ---------------------------------------------------------------------------
# Start it on a free port
# ---------------------------------------------------------------------------

# Print a TCP port that is currently free on 127.0.0.1.
free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' && return
    fi
    # No python3: probe random high ports; a refused connection means free.
    local port i
    for i in $(seq 1 100); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return
        fi
    done
    die "could not find a free TCP port on 127.0.0.1 (tried $i)"
}

pg_start() {
    # Another process may grab the port between our check and the server's bind,
    # so retry a few times with a fresh port if that is why the start failed.
    port=""
    local attempt
    for attempt in 1 2 3; do
        port="$(free_port)"
        : >"$server_log"
        [[ -n "$pg_user" ]] && chown "$pg_user" "$server_log"
        # fsync & co. off: durability is pointless for a throwaway cluster and
        # costs a lot of time on CI disks. Many tests run in parallel, each with a
        # connection pool, hence max_connections.
        if as_pg "$pg_bindir/pg_ctl" -D "$data_dir" -l "$server_log" -w -t 60 \
            -o "-p $port -k $tmp_dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
            start >"$tmp_dir/pg_ctl.log" 2>&1 </dev/null; then
            break
        fi
        if [[ $attempt -lt 3 ]] && grep -q 'Address already in use' "$server_log"; then
            log "port $port was taken, retrying with another one"
            continue
        fi
        cat "$tmp_dir/pg_ctl.log" >&2
        printf -- '--- PostgreSQL server log (%s) ---\n' "$server_log" >&2
        cat "$server_log" >&2
        die "PostgreSQL failed to start (logs above)"
    done
    ready_ts=$(date +%s%N)

    pg_version="$("$pg_bindir/postgres" --version 2>/dev/null || "$pg_bindir/pg_ctl" --version)"
    pg_version="${pg_version#* (PostgreSQL) }" # "postgres (PostgreSQL) 15.18 (Debian ...)" -> "15.18 (Debian ...)"
}
