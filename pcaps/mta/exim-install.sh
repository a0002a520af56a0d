#!/usr/bin/env bash
# Installs a private copy of Exim 4 (exim4-daemon-light, GnuTLS) for tests that run it beside
# Postfix: the two conflict as Debian packages, so the .debs are fetched with `apt-get download`
# and unpacked with `dpkg -x` into $EXIM_ROOT (default /var/tmp/mxcert-pcaps-exim); the
# daemon's libraries are installed normally, and the system user Debian-exim (the binary's
# compiled-in user) is created. Idempotent. Prints the root directory on stdout; the binary is
# $EXIM_ROOT/usr/sbin/exim4. Used by pcaps/make.sh and `cargo xtask setup` (live tests).
# Needs root on Debian 12.
set -euo pipefail
EXIM_ROOT=${EXIM_ROOT:-/var/tmp/mxcert-pcaps-exim}
log() { printf '[exim-install %s] %s\n' "$(date +%T)" "$*" >&2; }
APT_UPDATED=0
apt_update() {
    [[ $APT_UPDATED == 1 ]] || { apt-get -o DPkg::Lock::Timeout=300 update -q >&2; APT_UPDATED=1; }
}
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "$@" >&2 \
        || { apt_update; apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "$@" >&2; }
}
install_exim() {
    if [[ ! -x $EXIM_ROOT/usr/sbin/exim4 ]]; then
        log "fetching exim4-daemon-light + exim4-base (apt-get download, dpkg -x)"
        local d; d=$(mktemp -d)
        chmod 755 "$d"
        if ! ( cd "$d" && apt-get download exim4-daemon-light exim4-base >&2 ); then
            # stale or missing package lists: update once and retry
            apt_update
            ( cd "$d" && apt-get download exim4-daemon-light exim4-base >&2 )
        fi
        # the daemon's shared-library dependencies (exim4-base itself is not installed)
        local libs=() l
        for l in $(dpkg-deb -f "$d"/exim4-daemon-light_*.deb Depends | tr ',' '\n' \
                   | sed 's/(.*//; s/|.*//; s/ //g' | grep '^lib'); do
            dpkg -s "$l" >/dev/null 2>&1 || libs+=("$l")
        done
        if ((${#libs[@]})); then log "installing exim libraries ${libs[*]}"; apt_install "${libs[@]}"; fi
        mkdir -p "$EXIM_ROOT"
        for deb in "$d"/*.deb; do dpkg -x "$deb" "$EXIM_ROOT"; done
        rm -rf "$d"
    fi
    if ldd "$EXIM_ROOT/usr/sbin/exim4" | grep -q 'not found'; then
        log "FATAL: exim4 has missing libraries: $(ldd "$EXIM_ROOT/usr/sbin/exim4" | grep 'not found' | tr '\n' ' ')"
        exit 1
    fi
    getent passwd Debian-exim >/dev/null || useradd --system --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin Debian-exim
}
install_exim
printf '%s\n' "$EXIM_ROOT"
