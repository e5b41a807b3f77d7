#!/usr/bin/env bash
# spin plot: PNG and SVG charts of metrics.jsonl files, the panels present for the metrics given,
# errors that name the file and line, and no silent overwrite. Usage: test_plot.sh SPIN_BINARY
set -u
spin=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
ok() { local d=$1; shift; if "$@" >/dev/null 2>&1; then echo "ok: $d"; else echo "FAIL: $d"; fails=$((fails + 1)); fi; }
# png_size FILE -> "W H" from the IHDR chunk (bytes 16..23, big-endian)
png_size() { od -An -tu1 -j16 -N8 "$1" | awk '{printf "%d %d\n", $1*2^24+$2*2^16+$3*2^8+$4, $5*2^24+$6*2^16+$7*2^8+$8}'; }
not() { ! "$@"; }
is_png() { [ "$(od -An -tx1 -N8 "$1" | tr -d ' \n')" = "89504e470d0a1a0a" ]; }

mkdir -p "$dir/iter0" "$dir/iter1"
for it in 0 1; do
    for s in 1 2 3 4 5; do
        printf '{"step": %d, "epoch": 0.%d, "loss": 0.%d, "learning_rate": 5e-07, "grad_norm": 1.5, "rewards/real": 0.%d, "rewards/generated": -0.%d, "rewards/accuracies": 0.75, "rewards/margins": 0.%d, "logps/real": -10.5, "logps/generated": -12, "logits/real": -1, "logits/generated": -1, "tokens_per_s": 100, "skipped": 0}\n' \
            $s $s $((9 - s)) $s $s $((2 * s))
    done >"$dir/iter$it/metrics.jsonl"
done
printf '{"step": 1, "loss": 0.7}\n{"step": 2, "loss": 0.6}\n' >"$dir/loss_only.jsonl"

# all six panels: 40 + 6*220 + 5*30 + 40 + 20 pixels high; the loss alone: one panel
ok "two iterations to PNG" "$spin" plot "$dir/iter0/metrics.jsonl" "$dir/iter1/metrics.jsonl" --output "$dir/a.png"
ok "the PNG is a PNG" is_png "$dir/a.png"
ok "six panels" [ "$(png_size "$dir/a.png")" = "900 1570" ]
ok "loss only to PNG" "$spin" plot "$dir/loss_only.jsonl" --output "$dir/b.png"
ok "one panel" [ "$(png_size "$dir/b.png")" = "900 320" ]
ok "default output beside the metrics" "$spin" plot "$dir/iter0/metrics.jsonl"
ok "default output is a PNG" is_png "$dir/iter0/metrics.png"
ok "SVG" "$spin" plot "$dir/iter0/metrics.jsonl" --output "$dir/c.svg" --title "iteration 0"
ok "the SVG is an SVG document" grep -q '</svg>' "$dir/c.svg"
# the same metrics draw the same picture; other metrics a different one
"$spin" plot "$dir/iter1/metrics.jsonl" --output "$dir/d.svg" --title "iteration 0" >/dev/null 2>&1
ok "same metrics, same SVG" cmp -s "$dir/c.svg" "$dir/d.svg"
sed -i 's/"loss": 0.8/"loss": 0.1/' "$dir/iter1/metrics.jsonl"
"$spin" plot "$dir/iter1/metrics.jsonl" --output "$dir/e.svg" --title "iteration 0" >/dev/null 2>&1
ok "other metrics, another SVG" not cmp -s "$dir/c.svg" "$dir/e.svg"

# no silent overwrite; --overwrite replaces
before=$(md5sum <"$dir/b.png")
ok "existing output refused" not "$spin" plot "$dir/iter0/metrics.jsonl" --output "$dir/b.png"
ok "refused output untouched" [ "$(md5sum <"$dir/b.png")" = "$before" ]
ok "--overwrite replaces" "$spin" plot "$dir/iter0/metrics.jsonl" --output "$dir/b.png" --overwrite
ok "replaced" [ "$(png_size "$dir/b.png")" = "900 1570" ]

# errors name the file and line
err() { # err DESCRIPTION EXPECTED-TEXT FILE-CONTENT
    printf '%b' "$3" >"$dir/bad.jsonl"
    local msg
    if msg=$("$spin" plot "$dir/bad.jsonl" --output "$dir/bad.png" --overwrite 2>&1); then
        echo "FAIL: $1: exit 0"; fails=$((fails + 1))
    elif ! grep -qF -- "$2" <<<"$msg"; then
        echo "FAIL: $1: message '$msg' lacks '$2'"; fails=$((fails + 1))
    else echo "ok: $1"; fi
}
err "malformed line" "bad.jsonl:2: not a JSON object" '{"step": 1, "loss": 1}\n{"step": 2, "loss"\n{"step": 3, "loss": 1}\n'
err "missing step" "bad.jsonl:1: missing integer field \"step\"" '{"loss": 1}\n'
err "not a number" "bad.jsonl:2: field \"loss\" is not a number" '{"step": 1, "loss": 1}\n{"step": 2, "loss": "x"}\n'
err "no loss at all" "no metrics lines with a loss" '{"step": 1}\n'
ok "missing file exits non-zero" not "$spin" plot "$dir/nope.jsonl" --output "$dir/n.png"
ok "wrong extension refused" not "$spin" plot "$dir/loss_only.jsonl" --output "$dir/x.jpg"
# a run still writing leaves a partial last line: skipped with a warning
printf '{"step": 1, "loss": 1}\n{"step": 2, "lo' >"$dir/torn.jsonl"
ok "a partial last line is skipped" "$spin" plot "$dir/torn.jsonl" --output "$dir/t.png"

echo "test_plot: $fails failure(s)"
[ $fails -eq 0 ]
