#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer, via the libfuzzer-sys crate) of the core's parsers
# of untrusted bytes: shard .idx/.bin, .npy, score-run manifests, selection directories.
# Stable Rust is enough: the coverage instrumentation is plain -C flags (what cargo-fuzz
# passes); libFuzzer itself is built from the crate's C++ sources (needs a C++ compiler).
#
#   bash benches/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   # default 150 s, all four
#   FUZZ_ASAN=1 bash benches/fuzz.sh ...                    # with AddressSanitizer
#
# Seeds come from the core's own writers (examples/fuzz_seeds.rs); the corpus grows in
# rust/core/fuzz/corpus/<target>, crashes land in rust/core/fuzz/artifacts/<target>/.
# Replay one: rust/core/fuzz/target[/asan]/<host triple>/release/<target> FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-150}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(shard npy score_run selection)
fuzz=rust/core/fuzz

flags="--cfg fuzzing -Cdebug-assertions -Coverflow-checks -Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares"
out="$fuzz/target"
rss=1024
if [ "${FUZZ_ASAN:-0}" = 1 ]; then
    # AddressSanitizer too (about 10x slower): a nightly flag, unlocked on the stable
    # toolchain by RUSTC_BOOTSTRAP; its own target dir, so the plain build stays.
    export RUSTC_BOOTSTRAP=1
    flags="$flags -Zsanitizer=address"
    out="$fuzz/target/asan"
    rss=2048 # ASan's shadow and quarantine: about 0.5 GB more
fi
# An explicit --target keeps RUSTFLAGS off the build scripts (they run uninstrumented).
host=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="$flags" cargo build --release --manifest-path "$fuzz/Cargo.toml" --bins \
    --target "$host" --target-dir "$out"
unset RUSTC_BOOTSTRAP
cargo run -q -p miniplm-core --example fuzz_seeds -- "$fuzz/corpus"

# Inputs are written to a file system in memory when there is one.
[ -d /dev/shm ] && export TMPDIR=/dev/shm
status=0
for t in "${targets[@]}"; do
    mkdir -p "$fuzz/artifacts/$t"
    echo "=== $t: ${secs}s"
    # -rss_limit_mb: an input of at most -max_len bytes that makes a parser allocate
    # past this (1 GB, 2 GB with ASan) is a finding (allocations are capped by the
    # file sizes).
    "$out/$host/release/$t" "$fuzz/corpus/$t" -max_total_time="$secs" -max_len=16384 \
        -rss_limit_mb="$rss" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$fuzz/artifacts/$t/" || status=1
done
exit $status
