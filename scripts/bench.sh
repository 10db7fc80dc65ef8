#!/usr/bin/env bash
# Runs every benchmark of the crate and gathers their summaries into one Markdown file.
#
#   scripts/bench.sh
#
# Bounded: each bench runs under a time limit (about 16 minutes in all) on top of the first build
# (about 3-4 minutes on 2 cores from a fresh checkout); a typical run on a 2-core machine takes
# about 9 minutes with the build. Every comparison in the output is a ratio between variants
# measured in the same run. Loopback (127.0.0.1) only; nothing is downloaded but crates.
#
# Environment (all optional):
#   BENCH_PRIORITY=rt|nice|normal  priority of the measured threads during the short latency
#                                  and paired windows (default: rt when `chrt` is allowed,
#                                  else normal); see benches/common/mod.rs
#   BENCH_RESULTS_DIR, CRITERION_HOME  where summaries and criterion data go (default: the
#                                  cargo target directory's bench-results/ and criterion/)
#   LOOKUP_SIZES, EXPIRY_REPS, E2E_ROUNDS, ...  see the doc comment at the top of each bench
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
export CRITERION_HOME="${CRITERION_HOME:-$target_dir/criterion}"
export BENCH_RESULTS_DIR="${BENCH_RESULTS_DIR:-$target_dir/bench-results}"
if [ -z "${BENCH_PRIORITY:-}" ]; then
    if chrt -f 1 true 2>/dev/null; then
        BENCH_PRIORITY=rt
    else
        BENCH_PRIORITY=normal
    fi
fi
export BENCH_PRIORITY

# Short criterion runs keep the whole script bounded; the paired passes inside the benches
# give the ratios.
crit=(--warm-up-time 1 --measurement-time 3 --sample-size 30 --nresamples 20000 --noplot)

mkdir -p "$BENCH_RESULTS_DIR"
rm -f "$BENCH_RESULTS_DIR"/*.md
started=$(date +%s)

echo "+ cargo bench -p tower-mcp-session-benches --no-run   (build the bench targets first)"
cargo bench -p tower-mcp-session-benches --no-run

failed=()
run() {
    local limit=$1 name=$2
    shift 2
    echo
    echo "+ timeout ${limit}s cargo bench -p tower-mcp-session-benches --bench $name -- $*"
    if ! timeout --kill-after=10 "$limit" cargo bench -p tower-mcp-session-benches --bench "$name" -- "$@"; then
        echo "!! $name failed or hit its ${limit}s limit" >&2
        failed+=("$name")
    fi
}
run 420 lookup "${crit[@]}"
run 60 open "${crit[@]}"
run 60 memory
run 300 expiry
run 90 end_to_end

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
summary="$BENCH_RESULTS_DIR/summary.md"
{
    echo "# Benchmark results"
    echo
    echo "- command: \`scripts/bench.sh\` (criterion flags: \`${crit[*]}\`; BENCH_PRIORITY=$BENCH_PRIORITY)"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (src modified)')"
    echo "- machine: $(nproc) CPUs, ${cpu:-unknown CPU}, $mem RAM, $(uname -sr); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- toolchain: $(rustc --version)"
    echo "- wall time: $(($(date +%s) - started)) s"
    if [ ${#failed[@]} -gt 0 ]; then
        echo "- FAILED or timed out: ${failed[*]}"
    fi
    for f in "$BENCH_RESULTS_DIR"/[0-9]-*.md; do
        [ -e "$f" ] || continue
        echo
        cat "$f"
    done
} >"$summary"

echo
cat "$summary"
echo
echo "Summary written to $summary"
[ ${#failed[@]} -eq 0 ]
