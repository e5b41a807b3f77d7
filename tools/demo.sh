#!/usr/bin/env bash
# Installs what is missing, builds spin, and runs the demo: a small character-level transformer
# trained on the tensor library (this becomes the SPIN demo when the pipeline lands).
set -eu
cd "$(dirname "$0")/.."
. tools/deps.sh
spin_install_deps
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target spin
build/bin/spin info
build/bin/spin demo "$@"
