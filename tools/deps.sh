#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages spin builds with, when missing. Sourced by test.sh and demo.sh.
# Other systems: install CMake >= 3.25, a C11 compiler with OpenMP, OpenBLAS (with cblas.h),
# cmocka, json-c, Oniguruma, cairo, libyaml and pkg-config, then run the same scripts.
spin_install_deps() {
    local pkgs=(cmake make gcc pkg-config git libopenblas-dev libopenblas0-openmp libcmocka-dev libjson-c-dev libonig-dev libcairo2-dev libyaml-dev binutils)
    local missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "spin: missing packages: ${missing[*]}" >&2
        echo "spin: this is not a Debian/Ubuntu system: install CMake >= 3.25, gcc with OpenMP, OpenBLAS, cmocka, json-c, Oniguruma, cairo and pkg-config" >&2
        return 1
    fi
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "spin: installing ${missing[*]}"
    $sudo apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Optional: the OpenCL backend's build and test dependencies (headers, ICD loader, CLBlast, and PoCL
# to run OpenCL on the CPU). Called by test.sh's OpenCL phase only; returns 1 when they are missing
# and cannot be installed (no apt-get, no root or sudo, no network), and the phase is then skipped.
spin_install_opencl_deps() {
    local pkgs=(ocl-icd-opencl-dev opencl-headers pocl-opencl-icd libclblast-dev)
    local missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || return 1
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null || return 1
        sudo="sudo"
    fi
    echo "spin: installing ${missing[*]}"
    $sudo apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Optional: MPI for multi-process training (-DSPIN_MPI=ON; Open MPI's headers, library and mpirun).
# Called by test.sh's mpi phase only; returns 1 when they are missing and cannot be installed.
spin_install_mpi_deps() {
    local pkgs=(libopenmpi-dev openmpi-bin)
    local missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || return 1
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null || return 1
        sudo="sudo"
    fi
    echo "spin: installing ${missing[*]}"
    $sudo apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Optional: the ROCm backend's compile dependencies (Debian 12: HIP 5.2 with its clang, the HIP runtime
# and headers, the AMD GPU device libraries; rocBLAS is not packaged and is loaded at run time).
# Called by test.sh's rocm phase only; returns 1 when they are missing and cannot be installed. The
# CUDA toolkit is never installed here: the cuda phase runs where nvcc already is.
spin_install_rocm_deps() {
    local pkgs=(hipcc libamdhip64-dev rocm-device-libs)
    local missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || return 1
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null || return 1
        sudo="sudo"
    fi
    echo "spin: installing ${missing[*]}"
    $sudo apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Optional: a Python with pyarrow for the parquet converter's test (tools/spin_parquet_to_jsonl.py),
# in a venv under the cache from PyPI. Prints the interpreter's path; prints nothing (and the test
# is SKIPPED with its reason) when venv or PyPI is unavailable.
spin_pyarrow_python() {
    local venv=${SPIN_CACHE:-$HOME/.cache/spin}/pyarrow-venv
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import pyarrow" 2>/dev/null; then
        python3 -m venv "$venv" >/dev/null 2>&1 &&
            "$venv/bin/pip" install -q --disable-pip-version-check pyarrow >/dev/null 2>&1 || return 0
    fi
    echo "$venv/bin/python"
}
