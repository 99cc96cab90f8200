# shellcheck shell=bash
# Chromium and its WebDriver for the browser tests (tests/coach_page.rs), as
# scripts/lib/postgres.sh provides PostgreSQL. Source it from a script running with
# `set -euo pipefail` that defines log and die, then:
#
#   chromium_find_or_install   # sets and exports SIGNAAL_CHROMIUM, SIGNAAL_CHROMEDRIVER
#
# Installs Debian's `chromium` and `chromium-driver` packages with apt-get when either
# binary is missing. The tests read the two variables (falling back to PATH), and fail
# (never skip) when they find no browser.
#
# Environment knobs:
#   SIGNAAL_CHROMIUM=PATH, SIGNAAL_CHROMEDRIVER=PATH   use these binaries.
#   SIGNAAL_NO_CHROMIUM=1   do not install (the browser test will then fail).

# Print the path of the first of the given commands found, or nothing.
chromium_which() {
    local name
    for name in "$@"; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
    done
    return 0
}

install_chromium() {
    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            die "chromium/chromedriver not found, and we are not root and have no sudo to install them.
       Install them yourself (Debian: apt-get install chromium chromium-driver), or set SIGNAAL_CHROMIUM and SIGNAAL_CHROMEDRIVER."
        fi
    fi
    command -v apt-get >/dev/null 2>&1 ||
        die "chromium/chromedriver not found and apt-get is not available; install them, or set SIGNAAL_CHROMIUM and SIGNAAL_CHROMEDRIVER."
    log "chromium or chromedriver not found; installing Debian's chromium and chromium-driver packages"
    "${sudo[@]}" apt-get update </dev/null
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        chromium chromium-driver fonts-dejavu-core </dev/null
}

chromium_find_or_install() {
    local browser driver
    browser="${SIGNAAL_CHROMIUM:-$(chromium_which chromium chromium-browser google-chrome)}"
    driver="${SIGNAAL_CHROMEDRIVER:-$(chromium_which chromedriver)}"
    if [[ -z "$browser" || -z "$driver" ]]; then
        if [[ "${SIGNAAL_NO_CHROMIUM:-0}" == 1 ]]; then
            log "SIGNAAL_NO_CHROMIUM=1: not installing chromium (the browser test will fail)"
            return 0
        fi
        install_chromium
        browser="$(chromium_which chromium chromium-browser google-chrome)"
        driver="$(chromium_which chromedriver)"
        [[ -n "$browser" && -n "$driver" ]] || die "installed chromium but still cannot find chromium and chromedriver"
    fi
    export SIGNAAL_CHROMIUM="$browser" SIGNAAL_CHROMEDRIVER="$driver"
}
