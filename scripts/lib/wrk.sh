# shellcheck shell=bash
# wrk, the outside load generator of the read phase in scripts/bench.sh (issue 13 compares
# servers with it), as scripts/lib/chromium.sh provides Chromium. Source it from a script
# running with `set -euo pipefail` that defines log and die, then:
#
#   wrk_find_or_install   # sets wrk_bin (empty when wrk is not to be used)
#
# Installs Debian's `wrk` package with apt-get when it is missing.
#
# Environment knobs:
#   SIGNAAL_BENCH_WRK=auto   'auto' (find or install), 'off' (no wrk phase), or a path to wrk.

wrk_find_or_install() {
    local choice="${SIGNAAL_BENCH_WRK:-auto}"
    wrk_bin=""
    case "$choice" in
        off) return 0 ;;
        auto) ;;
        *) [[ -x "$choice" ]] || die "SIGNAAL_BENCH_WRK=$choice is not an executable"
           wrk_bin="$choice"; return 0 ;;
    esac
    if command -v wrk >/dev/null 2>&1; then
        wrk_bin="$(command -v wrk)"
        return 0
    fi
    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        if ! command -v sudo >/dev/null 2>&1; then
            log "wrk not found, and we are not root and have no sudo to install it: no wrk read phase"
            return 0
        fi
        sudo=(sudo)
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        log "wrk not found and apt-get is not available: no wrk read phase (install wrk, or set SIGNAAL_BENCH_WRK)"
        return 0
    fi
    log "wrk not found; installing Debian's wrk package"
    "${sudo[@]}" apt-get update </dev/null >/dev/null
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wrk </dev/null >/dev/null
    wrk_bin="$(command -v wrk)" || die "installed wrk but still cannot find it"
}

# wrk_read LISTEN CLIENTS SECONDS: one Patient written, then read by id with wrk over CLIENTS
# keep-alive connections (two wrk threads) for SECONDS; prints one result line.
wrk_read() {
    local listen="$1" clients="$2" seconds="$3" id="bench-wrk-read" out
    curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/fhir+json' \
        "http://$listen/fhir/Patient/$id" \
        -d "{\"resourceType\":\"Patient\",\"id\":\"$id\",\"name\":[{\"family\":\"Lezer\",\"given\":[\"Wim\"]}],\"gender\":\"male\",\"birthDate\":\"1948-06-30\"}" ||
        die "the Patient for the wrk read phase could not be written"
    out="$("$wrk_bin" -t2 -c"$clients" -d"${seconds}s" --latency "http://$listen/fhir/Patient/$id")"
    awk -v clients="$clients" '
        /Requests\/sec/ { rate = $2 }
        /^ +50%/ { p50 = $2 } /^ +99%/ { p99 = $2 }
        /Non-2xx/ { bad = $NF }
        END { printf "read (wrk, %s connections, 2 threads): %s req/s, p50 %s, p99 %s%s\n", clients, rate, p50, p99, (bad ? ", non-2xx " bad : "") }
    ' <<<"$out"
}
