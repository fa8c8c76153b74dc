#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 30), starting from the seed corpora in
# fuzz/seeds; fails on the first crash (the input is left in fuzz/artifacts/<target>/).
#
#   fuzz/run.sh            # CI: 30 s per target
#   fuzz/run.sh 600        # 10 minutes per target
#   fuzz/run.sh 60 chunked # one target
#
# cargo fuzz needs nightly compiler flags (-Zsanitizer=address). This machine has one stable
# toolchain and cannot fetch another, so the script sets RUSTC_BOOTSTRAP=1, which lets the
# stable compiler accept them (the stable toolchain ships the AddressSanitizer runtime).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-30}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/portcullis-fuzz-target}"
cargo fuzz build -O
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
  mkdir -p "$scratch/$target"
  echo "fuzzing $target for ${seconds}s"
  cargo fuzz run -O "$target" "$scratch/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 2>&1 \
    | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|Done)|panicked|ERROR" || true
  # cargo fuzz exits non-zero on a crash; with pipefail the grep keeps its status, so check
  # for an artifact instead.
  if compgen -G "artifacts/$target/*" > /dev/null; then
    echo "fuzz target $target crashed: $(ls artifacts/$target)"
    exit 1
  fi
done
echo "all fuzz targets ran clean for ${seconds}s each"
