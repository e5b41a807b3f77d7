#!/usr/bin/env bash
# tools/spin_parquet_to_jsonl.py on a tiny parquet file made here with pyarrow in the schema of the
# Hub's UCLA-AGI/SPIN_iter* files (real, generated: list<struct<role, content>>; struct fields in
# another order and an extra column, both must not matter): the JSON lines written out literally
# below, `spin eval` reading the result, and bad input naming the file, row or column.
# Usage: test_parquet.sh SPIN_BINARY. SKIPPED (exit 77) when pyarrow cannot be imported by
# $SPIN_PYTHON (default python3).
set -u
spin=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
data=$here/../data
script=$here/../../tools/spin_parquet_to_jsonl.py
py=${SPIN_PYTHON:-python3}
if ! "$py" -c "import pyarrow" 2>/dev/null; then
    echo "SKIP: pyarrow is not importable by $py (pip install pyarrow, or set SPIN_PYTHON)"
    exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
fails=0
pass() { echo "ok: $1"; }
fail() { echo "FAIL: $1"; fails=$((fails + 1)); }
ok() { local d=$1; shift; if "$@" >"$dir/last.log" 2>&1; then pass "$d"; else fail "$d"; sed 's/^/    /' "$dir/last.log"; fi; }
err() {
    local d=$1 want=$2 msg
    shift 2
    if msg=$("$@" 2>&1); then
        fail "$d: exit 0"
    elif ! grep -qF -- "$want" <<<"$msg"; then
        fail "$d: output lacks '$want'"; sed 's/^/    /' <<<"$msg"
    else pass "$d"; fi
}

"$py" - <<'EOF'
import pyarrow as pa, pyarrow.parquet as pq
msg = pa.struct([("content", pa.string()), ("role", pa.string())])
def pair(u, a):
    return [{"content": u, "role": "user"}, {"content": a, "role": "assistant"}]
t = pa.table({
    "generated": pa.array([pair("sum 1 2", "it is 4."), pair('say "hi"\nnow', "hi é")], pa.list_(msg)),
    "real": pa.array([pair("sum 1 2", "it is 3."), pair('say "hi"\nnow', "hi")], pa.list_(msg)),
    "extra": pa.array([1, 2]),
})
pq.write_table(t, "train_prefs-00000-of-00001.parquet")
pq.write_table(t.drop(["generated"]), "nogen.parquet")
pq.write_table(t.set_column(1, "real", pa.array([pair("a", "b")[:1], pair("c", "d")], pa.list_(msg))), "short.parquet")
pq.write_table(pa.table({"real": ["x"], "generated": ["y"]}), "strings.parquet")
EOF
ok "made the parquet files" [ -f train_prefs-00000-of-00001.parquet ]

cat >want.jsonl <<'EOF'
{"real":[{"role":"user","content":"sum 1 2"},{"role":"assistant","content":"it is 3."}],"generated":[{"role":"user","content":"sum 1 2"},{"role":"assistant","content":"it is 4."}]}
{"real":[{"role":"user","content":"say \"hi\"\nnow"},{"role":"assistant","content":"hi"}],"generated":[{"role":"user","content":"say \"hi\"\nnow"},{"role":"assistant","content":"hi é"}]}
EOF
ok "convert to --output-dir" "$py" "$script" train_prefs-00000-of-00001.parquet --output-dir out
ok "the JSON lines" cmp out/train_prefs-00000-of-00001.jsonl want.jsonl
ok "one --output for two inputs" "$py" "$script" train_prefs-00000-of-00001.parquet train_prefs-00000-of-00001.parquet --output two.jsonl
ok "two inputs concatenated" bash -c "cat want.jsonl want.jsonl | cmp - two.jsonl"
err "never overwrites" "exists (--overwrite replaces it)" "$py" "$script" train_prefs-00000-of-00001.parquet --output two.jsonl
ok "--overwrite" "$py" "$script" train_prefs-00000-of-00001.parquet --output two.jsonl --overwrite
ok "--overwrite replaced it" cmp two.jsonl want.jsonl
err "missing column" "nogen.parquet: missing column 'generated'" "$py" "$script" nogen.parquet --output a.jsonl
err "a list with one message" "short.parquet: row 0: 'real' must be a list of at least 2 messages" "$py" "$script" short.parquet --output b.jsonl
err "strings instead of message lists" "strings.parquet: column 'real' has type string" "$py" "$script" strings.parquet --output c.jsonl
ok "no output left by failures" bash -c '[ ! -e a.jsonl ] && [ ! -e a.jsonl.tmp ] && [ ! -e b.jsonl ] && [ ! -e b.jsonl.tmp ] && [ ! -e c.jsonl ]'
err "not a parquet file" "want.jsonl: not a readable parquet file" "$py" "$script" want.jsonl --output d.jsonl

# spin reads the result: the directory as a dataset of `spin eval`
mkdir model
cp "$data"/train/tiny/* "$data"/cli/train/tokenizer.json "$data"/cli/train/tokenizer_config.json model/
ok "spin eval reads the converted split" "$spin" eval --model model --data out --split train --output e.json
ok "spin eval: 2 examples" grep -q '"examples":2' e.json

[ "$fails" = 0 ] && { echo "all passed"; exit 0; }
echo "$fails FAILED"
exit 1
