#!/usr/bin/env bash
# `make bench`: ztgate's overhead against a canned upstream, as ratios to baselines measured in
# the same run (see bench/README.md). Installs wrk and nginx if missing; arguments go to
# bench/gateway.py (try --help).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

# The first of the candidates that the package index knows.
available() {
    local pkg
    for pkg in "$@"; do
        # grep reads it all: with -q it would stop early and, under pipefail, fail the pipe
        if apt-cache policy "$pkg" 2>/dev/null | grep 'Candidate: [0-9]' >/dev/null; then
            echo "$pkg"
            return 0
        fi
    done
    return 1
}

install_tools() {
    local missing=() nginx_pkg
    have wrk || missing+=(wrk)
    have nginx || missing+=(nginx)
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "bench: please install: ${missing[*]}" >&2
        exit 1
    fi
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    echo "bench: installing ${missing[*]} with apt-get" >&2
    "${sudo[@]}" apt-get update -qq
    local pkgs=()
    for tool in "${missing[@]}"; do
        if [ "$tool" = nginx ]; then
            nginx_pkg="$(available nginx-light nginx)" || {
                echo "bench: no nginx package found" >&2
                exit 1
            }
            pkgs+=("$nginx_pkg")
        else
            pkgs+=("$tool")
        fi
    done
    # Keep Debian's postinst from starting the system nginx on port 80: the bench runs its own
    # from a private prefix. policy-rc.d is the standard switch; add one only for this install.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod +x "$policy"
        added_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${pkgs[@]}" >/dev/null
    [ "$added_policy" -eq 0 ] || "${sudo[@]}" rm -f "$policy"
}

install_tools

if [ ! -x .venv/bin/python ]; then
    make -C "$root" .venv/.installed
fi

export ZTGATE_BENCH_COMMAND="bench/run.sh${*:+ $*}"
exec .venv/bin/python bench/gateway.py "$@"
