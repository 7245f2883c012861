# shellcheck shell=bash
# Small helpers shared by the scripts in this directory. Source it; do not run it.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Name used as the prefix of every message (the sourcing script's file name).
DCR_PROG=${DCR_PROG:-$(basename "${BASH_SOURCE[1]:-$0}")}

# log MESSAGE... — one line to stderr.
log() {
    printf '%s: %s\n' "$DCR_PROG" "$*" >&2
}

# die MESSAGE... — "PROG: error: MESSAGE" to stderr, then exit 1.
die() {
    printf '%s: error: %s\n' "$DCR_PROG" "$*" >&2
    exit 1
}

# require_cmd CMD... — die unless every command is on PATH.
require_cmd() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || die "required command '$c' not found on PATH"
    done
}

# dcr_cache_dir — the project's download cache (not created here).
dcr_cache_dir() {
    printf '%s\n' "${DCR_CACHE:-${HOME:?HOME is not set}/.cache/dcr-gateway}"
}

# is_uint STRING — true if STRING is a non-empty run of decimal digits.
is_uint() {
    [[ $1 =~ ^[0-9]+$ ]]
}

# port_in_use PORT — true if something accepts TCP connections on 127.0.0.1:PORT.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
