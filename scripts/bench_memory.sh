#!/usr/bin/env bash
# Memory under hostile bodies (issue 14, item 6): how much resident memory one large invalid
# body costs the server, and whether the memory comes back after a burst of them.
#
#   scripts/bench_memory.sh                      # builds the release binary first
#   SIGNAAL_BIN=target/debug/signaal scripts/bench_memory.sh   # an already built binary
#
# What it does (Linux only: it reads /proc/PID/status of the server):
#   1. starts `signaal serve` on a throwaway SQLite database on a free loopback port and waits
#      until the validation schemas are compiled (the baseline is taken after that);
#   2. writes the bodies: an Observation whose code has SIGNAAL_BENCH_CODINGS codings, each
#      invalid (a code with a leading space), and a Patient with as many `null`s in `given`;
#   3. for each body: resets the server's peak RSS (`echo 5 > /proc/PID/clear_refs`), POSTs it
#      once, and reports the peak (VmHWM), the peak above the RSS before the request per MB of
#      body, and the RSS 2 s later;
#   4. a burst: SIGNAAL_BENCH_BURST of the codings body at once, peak and RSS 2 s after.
# Every answer should be a 400; the status is printed, and the script exits 1 if one was not. Everything it started is stopped and
# its temp dir removed on exit. Numbers are from one run on whatever else the machine is doing;
# compare runs on the same machine.
#
# Environment knobs:
#   SIGNAAL_BENCH_CODINGS=1000000  codings (and nulls) in the hostile bodies
#   SIGNAAL_BENCH_BURST=4          concurrent bodies in the burst
#   SIGNAAL_BIN=PATH               the signaal binary (default: cargo build --release)
set -euo pipefail

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

codings="${SIGNAAL_BENCH_CODINGS:-1000000}"
burst="${SIGNAAL_BENCH_BURST:-4}"
[[ "$codings" =~ ^[0-9]+$ && "$burst" =~ ^[0-9]+$ ]] ||
    die "SIGNAAL_BENCH_CODINGS and SIGNAAL_BENCH_BURST must be numbers"
[[ -r /proc/self/status ]] || die "this benchmark reads /proc (Linux only)"
command -v curl >/dev/null 2>&1 || die "curl not found"
command -v python3 >/dev/null 2>&1 || die "python3 not found (it writes the bodies)"

# shellcheck source=scripts/lib/postgres.sh
source "$repo_root/scripts/lib/postgres.sh" # free_port

work_dir=""
server_pid=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    if [[ -n "$server_pid" ]]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    [[ -n "$work_dir" && -d "$work_dir" ]] && rm -rf -- "$work_dir"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

bin="${SIGNAAL_BIN:-}"
if [[ -z "$bin" ]]; then
    log "cargo build --release"
    cargo build --release
    target_dir="${CARGO_TARGET_DIR:-target}"
    bin="$target_dir/release/signaal"
fi
[[ -x "$bin" ]] || die "$bin is not an executable"

work_dir="$(mktemp -d "${TMPDIR:-/tmp}/signaal-bench-memory.XXXXXX")"

log "writing the bodies ($codings codings / nulls)"
python3 - "$work_dir" "$codings" <<'EOF'
import sys
out, n = sys.argv[1], int(sys.argv[2])
with open(f"{out}/codings.json", "w") as f:
    f.write('{"resourceType":"Observation","status":"final","code":{"coding":[')
    f.write(",".join(['{"code":" x"}'] * n))
    f.write("]}}")
with open(f"{out}/nulls.json", "w") as f:
    f.write('{"resourceType":"Patient","name":[{"given":[')
    f.write(",".join(["null"] * n))
    f.write("]}]}")
EOF

listen="127.0.0.1:$(free_port)"
"$bin" serve --listen "$listen" --database "sqlite://$work_dir/bench.db" >"$work_dir/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 600); do
    grep -q 'validation schemas compiled' "$work_dir/server.log" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work_dir/server.log" >&2; die "the server stopped"; }
    sleep 0.1
done
grep -q 'validation schemas compiled' "$work_dir/server.log" || die "the server did not warm up"
sleep 1

kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$server_pid/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
reset_peak() { echo 5 >"/proc/$server_pid/clear_refs"; }
post() {
    curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/fhir+json' \
        --data-binary "@$1" "http://$listen/fhir/$2"
}

baseline=$(kb VmRSS)
printf 'signaal: %s\nbaseline RSS after warm-up: %s MB\n\n' "$bin" "$(mb "$baseline")"
printf '%-28s %7s %9s %9s %12s %14s\n' body status 'body MB' 'peak MB' 'peak MB/MB' 'RSS after MB'
failed=0

# one NAME FILE TYPE
one() {
    local name="$1" file="$2" rtype="$3" size status before peak after
    size=$(stat -c %s "$file")
    before=$(kb VmRSS)
    reset_peak
    status=$(post "$file" "$rtype")
    [[ "$status" == 400 ]] || failed=1
    peak=$(kb VmHWM)
    sleep 2
    after=$(kb VmRSS)
    printf '%-28s %7s %9.1f %9s %12.1f %14s\n' "$name" "$status" "$(awk -v s="$size" 'BEGIN{print s/1048576}')" \
        "$(mb "$peak")" "$(awk -v p="$peak" -v b="$before" -v s="$size" 'BEGIN{print (p-b)/1024/(s/1048576)}')" \
        "$(mb "$after")"
}

one "Observation, bad codings" "$work_dir/codings.json" Observation
one "Patient, nulls in given" "$work_dir/nulls.json" Patient

reset_peak
pids=()
for i in $(seq 1 "$burst"); do
    post "$work_dir/codings.json" Observation >"$work_dir/burst-$i.status" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
for i in $(seq 1 "$burst"); do
    [[ "$(cat "$work_dir/burst-$i.status")" == 400 ]] || failed=1
done
statuses=$(for i in $(seq 1 "$burst"); do printf '%s ' "$(cat "$work_dir/burst-$i.status")"; done)
peak=$(kb VmHWM)
sleep 2
printf '\nburst of %s codings bodies at once (statuses %s): peak %s MB, RSS 2 s after %s MB (baseline %s MB)\n' \
    "$burst" "$statuses" "$(mb "$peak")" "$(mb "$(kb VmRSS)")" "$(mb "$baseline")"
[[ "$failed" == 0 ]] || die "not every hostile body was answered with 400"
