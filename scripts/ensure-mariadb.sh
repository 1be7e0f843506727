#!/usr/bin/env bash
# Make sure a MariaDB server binary (mariadbd) is available for the tests.
#
# If it is missing, install Debian's mariadb-server non-interactively, without
# starting or enabling the system service (the tests start their own
# throw-away servers, see the reshard-testkit crate in testkit/). Idempotent;
# instant when installed.
set -euo pipefail

export PATH="$PATH:/usr/sbin:/usr/bin:/sbin:/bin"

find_mariadbd() {
    local name dir
    for name in mariadbd mysqld; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
        for dir in /usr/sbin /usr/bin; do
            if [ -x "$dir/$name" ]; then
                echo "$dir/$name"
                return 0
            fi
        done
    done
    return 1
}

if bin="$(find_mariadbd)"; then
    echo "ensure-mariadb: already installed: $bin ($("$bin" --version 2>/dev/null | head -n1 || true))"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-mariadb: mariadbd not found and apt-get is unavailable; install MariaDB server (mariadbd, mariadb-install-db, mariadb client) by hand" >&2
    exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1; then
    as_root() { sudo -n "$@"; }
else
    echo "ensure-mariadb: mariadbd not found; not root and sudo is unavailable, cannot install mariadb-server" >&2
    exit 1
fi

# Deny service starts during the install (policy-rc.d exit 101 = action
# forbidden); restore whatever was there before.
policy=/usr/sbin/policy-rc.d
backup=""
if [ -e "$policy" ]; then
    backup="$(mktemp)"
    as_root cp -p "$policy" "$backup"
fi
restore_policy() {
    if [ -n "$backup" ]; then
        as_root cp -p "$backup" "$policy" || true
        rm -f "$backup"
    else
        as_root rm -f "$policy" || true
    fi
}
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
as_root chmod 755 "$policy"

start=$(date +%s)
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    mariadb-server >/dev/null

if ! bin="$(find_mariadbd)"; then
    echo "ensure-mariadb: installed mariadb-server but mariadbd is still not found" >&2
    exit 1
fi
echo "ensure-mariadb: installed mariadb-server in $(( $(date +%s) - start ))s: $bin ($("$bin" --version 2>/dev/null | head -n1 || true))"
