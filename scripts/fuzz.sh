#!/usr/bin/env bash
# Fuzzes dcr-gateway with cargo-fuzz (libFuzzer) on a nightly toolchain: the path classifier,
# the strict JSON parser, both body dialects' normaliser, token triage, policy compile, the
# property that a forwarded body is byte for byte the body that was checked, the upstream
# response reader (any bytes as Keycloak's answer, over a loopback socket), and the HTTP/1.1
# fast path against hyper (any bytes from a client read as hyper alone reads them).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     # default 20 s, every target
#   FUZZ_RUNS=10000000 scripts/fuzz.sh 0 json_strict      # a fixed number of executions instead
#
# The fuzz crate is tests/fuzz (its own workspace); corpora go to .state/fuzz/corpus/TARGET and
# crashes to .state/fuzz/artifacts/TARGET. Runs niced. Fails on the first crash.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TOOLCHAIN=${FUZZ_TOOLCHAIN:-nightly}
SECONDS_PER=${1:-20}
shift || true
TARGETS=("$@")
if ((${#TARGETS[@]} == 0)); then
    TARGETS=(route_classify json_strict normalise token_triage policy_compile forwarded_bytes upstream_response http1_fast_path)
fi
command -v cargo-fuzz >/dev/null || { echo "fuzz.sh: cargo-fuzz is not installed (.ci/run installs it)" >&2; exit 1; }

# Sanitizer off: the gateway forbids unsafe code, so the search is for panics, failed
# assertions and hangs, and twice the executions per second find more of them.
fuzz() {
    local sub=$1
    shift
    nice -n 10 cargo "+$TOOLCHAIN" fuzz "$sub" --fuzz-dir tests/fuzz --sanitizer none "$@"
}

fuzz build
for t in "${TARGETS[@]}"; do
    corpus=.state/fuzz/corpus/$t
    artifacts=.state/fuzz/artifacts/$t
    mkdir -p "$corpus" "$artifacts"
    if [[ -d tests/fuzz/seeds/$t ]]; then
        cp -n tests/fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
    fi
    limit=(-max_total_time="$SECONDS_PER")
    [[ -n ${FUZZ_RUNS:-} ]] && limit=(-runs="$FUZZ_RUNS")
    started=$(date +%s)
    log=.state/fuzz/$t.log
    if ! fuzz run "$t" "$corpus" -- "${limit[@]}" -max_len=4096 -timeout=10 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "fuzz.sh: $t crashed; reproducer in $artifacts" >&2
        exit 1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
    echo "fuzz.sh: $t: ${runs:-?} executions in $(($(date +%s) - started)) s, no crash" >&2
done
