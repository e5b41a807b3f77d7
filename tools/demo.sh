#!/usr/bin/env bash
# Installs what is missing, builds spin, and runs the SPIN demo (`spin demo --help`): a tiny Llama
# with a byte-level tokenizer, made by the program, SFT on a string-reversal task, two SPIN iterations
# through `spin iterate`, an SFT control, and held-out metrics per model (docs/spin.md, "The demo").
# Everything goes to build/spin-demo (replaced on each run); about 35 s on two cores
# once built.
set -eu
cd "$(dirname "$0")/.."
. tools/deps.sh
spin_install_deps
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target spin
build/bin/spin info
rm -rf build/spin-demo
build/bin/spin demo --dir build/spin-demo "$@"
