#!/usr/bin/env bash
# spin iterate and spin demo end to end: `spin demo --quick` (its own byte-level Llama, reformat ->
# SFT -> two SPIN iterations -> an SFT control -> the comparison table and its verdict; bad
# options), then `spin iterate` for two iterations from its SFT model: the layout, the summary,
# iteration 1 training on iteration 0's and its own data, a per-iteration override, a rerun that
# skips every stage, SIGKILL during iteration 1's training and during a generation followed by a
# rerun that ends with the same model, bit for bit, and bad configs that must fail naming the file
# and line. Usage: test_iterate.sh SPIN_BINARY
set -u
spin=$(realpath "$1")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
export OMP_NUM_THREADS=1 # the same thread count in every run: the kill/rerun comparison is bit-exact
fails=0
pass() { echo "ok: $1"; }
fail() { echo "FAIL: $1"; fails=$((fails + 1)); }
ok() { local d=$1; shift; if "$@" >"$dir/last.log" 2>&1; then pass "$d"; else fail "$d"; sed 's/^/    /' "$dir/last.log" | tail -20; fi; }
not() { ! "$@"; }
err() { # err DESCRIPTION EXPECTED-TEXT COMMAND...: must fail with EXPECTED-TEXT and no sanitizer report
    local d=$1 want=$2 msg
    shift 2
    if msg=$("$@" 2>&1); then
        fail "$d: exit 0"
    elif grep -q -e "Sanitizer" -e "runtime error" <<<"$msg"; then
        fail "$d: sanitizer report"; sed 's/^/    /' <<<"$msg"
    elif ! grep -qF -- "$want" <<<"$msg"; then
        fail "$d: output lacks '$want'"; sed 's/^/    /' <<<"$msg" | tail -20
    else pass "$d"; fi
}
lines() { grep -c . "$1"; }

# ---- spin demo --quick: the whole pipeline in seconds ----
"$spin" demo --quick --dir demo >demo.log 2>&1
ok "demo --quick exits 0" [ $? = 0 ]
ok "demo: the comparison table, all four models" grep -q "control: SFT continued" demo.log
ok "demo: SPIN iteration 1 measured" grep -q "SPIN iteration 1 (θ_2)" demo.log
# the verdict is computed from the table: its numbers must be the table's
row() { awk -v k="$1" -v f="$2" 'index($0, k) == 3 {print $f; exit}' demo.log; } # the table's row (before the verdict)
em0=$(row "SFT (θ_0)" 4) lp0=$(row "SFT (θ_0)" 6)
em1=$(row "SPIN iteration 0 (θ_1)" 6) lp1=$(row "SPIN iteration 0 (θ_1)" 8)
emc=$(row "control: SFT continued" 5) lpc=$(row "control: SFT continued" 7)
said() { if [ "$2" = "$3" ]; then echo "left $1 at $2"; else echo "$1 from $2 to $3"; fi; }
ok "demo: the table's numbers read back" bash -c "for v in $em0 $lp0 $em1 $lp1 $emc $lpc ''; do [ -z \"\$v\" ] && break; [[ \$v =~ ^-?[0-9]+[.][0-9]{3}\$ ]] || exit 1; done; [ \$(echo $em0 $lp0 $em1 $lp1 $emc $lpc | wc -w) = 6 ]"
ok "demo: a verdict after the table" grep -q "^spin demo: verdict (held-out" demo.log
ok "demo: the verdict's iteration 0 line has the table's numbers ($em0 -> $em1, $lp0 -> $lp1)" \
    bash -c "grep '^  SPIN iteration 0 (θ_1) ' demo.log | grep -F -- '$(said "exact match" "$em0" "$em1")' | grep -qF -- '$(said "logp(real)" "$lp0" "$lp1")'"
ok "demo: the verdict's control line has the control's numbers ($emc, $lpc)" \
    grep -qF -- "reached $emc and $lpc:" demo.log
ok "demo: the verdict ends with what self-play did in this run" grep -q "^  In this run self-play (two iterations) " demo.log
ok "demo: the model directory made by the program (tokenizer.json with a ByteLevel pre-tokenizer)" \
    grep -q '"ByteLevel"' demo/base-model/tokenizer.json
ok "demo: iterate's summary, two iterations" [ "$(lines demo/spin/iterate_summary.jsonl)" = 2 ]
err "demo: --seed must be an integer" "--seed expects an integer >= 0 (got '4x')" "$spin" demo --seed 4x --dir bad
err "demo: --beta must be positive" "--beta expects a positive number (got '0')" "$spin" demo --beta 0 --dir bad
ok "demo: bad options write nothing" [ ! -e bad ]
err "demo: refuses a directory that is not empty" "exists and is not empty" "$spin" demo --quick --dir demo

# ---- spin iterate from the demo's SFT model ----
cat >config.yaml <<EOF
# a uclaml/SPIN-style config with the iterate section
model_name_or_path: demo/sft-model
output_dir: RUN
beta: 0.1
optim: rmsprop
learning_rate: 1.0e-4
num_train_epochs: 1
per_device_train_batch_size: 8
max_length: 64
max_prompt_length: 40
logging_steps: 1
save_strategy: steps
save_steps: 1
save_total_limit: 2
seed: 42
iterate:
  input: demo/data
  num_iterations: 2
  eval_batch_size: 16
  generate:
    chat_template: true
    max_new_tokens: 8
    batch_size: 4
  iterations:
    - {}
    - {learning_rate: 5.0e-5, num_train_epochs: 30}
EOF
n_train=$(lines demo/data/train_prefs-00000-of-00001.jsonl)
n_test=$(lines demo/data/test_prefs-00000-of-00001.jsonl)

# the plan: every stage to do, nothing written but the training part of the config
"$spin" iterate config.yaml --output_dir=a --dry-run >dry.log 2>&1
ok "dry run exits 0" [ $? = 0 ]
ok "dry run: iteration 1 trains on iteration 0's and its own data" \
    grep -q -- "--dataset_mixer=a/iter0/data,a/iter1/data" dry.log
ok "dry run: the per-iteration override reaches iteration 1's training only" \
    bash -c "grep 'iter1 train ' dry.log | grep -q -- '--learning_rate=5.0e-5' && ! grep 'iter0 train ' dry.log | grep -q -- '--learning_rate='"
ok "dry run: theta_2 answers the test prompts last" grep -q "iter2 generate-test" dry.log
ok "dry run: every stage to do" [ "$(grep -c '\[to do\]' dry.log)" = 13 ]
ok "dry run: writes only train_config.yaml" [ "$(ls a)" = train_config.yaml ]
ok "train_config.yaml: the iterate section blanked, the line numbers kept" \
    bash -c "[ \$(wc -l <a/train_config.yaml) = \$(wc -l <config.yaml) ] && ! grep -q iterate: a/train_config.yaml && sed -n 4p a/train_config.yaml | grep -q '^beta: 0.1'"

# sharded generation: ceil(train rows / frac_len) train shards, convert told how many
sed 's/    batch_size: 4/    batch_size: 4\n    frac_len: 8/' config.yaml >shards.yaml
"$spin" iterate shards.yaml --output_dir=s --dry-run >shards.log 2>&1
shards=$(((n_train + 7) / 8))
ok "dry run: $shards train shards of 8 rows per iteration" \
    [ "$(grep -c 'iter0 generate-train-.*--frac-len 8 --data-frac' shards.log)" = "$shards" ]
ok "dry run: convert expects them all" grep -q -- "--num-fracs $shards" shards.log

# run A: uninterrupted
"$spin" iterate config.yaml --output_dir=a >a.log 2>&1
ok "iterate exits 0" [ $? = 0 ]
for f in train_config.yaml iterate_summary.jsonl metrics.png iter0/generated/loser_0.jsonl \
    iter0/generated/loser_0_test.jsonl iter0/data/train_prefs-00000-of-00001.jsonl \
    iter0/data/test_prefs-00000-of-00001.jsonl iter0/opponent_scores.jsonl iter0/model/model.safetensors \
    iter0/model/metrics.jsonl iter0/eval.json iter0/train.done iter1/model/model.safetensors iter1/eval.json \
    iter2/generated/loser_0_test.jsonl; do
    ok "layout: $f" [ -s "a/$f" ]
done
ok "layout: theta_2 generates no train answers" [ ! -e a/iter2/generated/loser_0.jsonl ]
ok "iteration 0 answers every train prompt" [ "$(lines a/iter0/generated/loser_0.jsonl)" = "$n_train" ]
ok "iteration 1's opponent scores cover iter0 + iter1 rows" \
    [ "$(($(lines a/iter1/opponent_scores.jsonl) - 1))" = "$((2 * n_train))" ]
ok "iteration 0's opponent scores cover its own rows" [ "$(($(lines a/iter0/opponent_scores.jsonl) - 1))" = "$n_train" ]
ok "summary: two lines" [ "$(lines a/iterate_summary.jsonl)" = 2 ]
ok "summary: iteration 1 mixes iteration 0's data" \
    bash -c "sed -n 2p a/iterate_summary.jsonl | grep -q '\"datasets\":\[\"a/iter0/data\",\"a/iter1/data\"\],\"train_examples\":$((2 * n_train))'"
ok "summary: iteration 1's learning rate from its override" \
    bash -c "sed -n 2p a/iterate_summary.jsonl | grep -q '\"learning_rate\":5.0*[0-9]*e-05'"
ok "summary: held-out eval with reward accuracy, exact match of both models" \
    bash -c "sed -n 1p a/iterate_summary.jsonl | grep -q '\"reward_accuracy\":[0-9]' && grep -q '\"exact_match_test\":{\"opponent\":[0-9.]*,\"model\":[0-9.]*,\"examples\":$n_test}' a/iterate_summary.jsonl"
ok "summary: the table on stdout" grep -q "exact match test" a.log
ok "eval against theta_t" grep -q '"opponent":"demo/sft-model"' a/iter0/eval.json

# a rerun skips every stage and writes the same summary
cp a/iterate_summary.jsonl summary.a
"$spin" iterate config.yaml --output_dir=a >rerun.log 2>&1
ok "rerun exits 0" [ $? = 0 ]
ok "rerun: every stage skipped" [ "$(grep -c ' done (' rerun.log)" = 13 ]
ok "rerun: the same summary" cmp a/iterate_summary.jsonl summary.a
"$spin" iterate config.yaml --output_dir=a --dry-run >dry2.log 2>&1
ok "dry run after the run: every stage done" [ "$(grep -c '\[done\]' dry2.log)" = 13 ]

# run B: SIGKILL during iteration 1's training, then the same command again
"$spin" iterate config.yaml --output_dir=b >b1.log 2>&1 &
pid=$!
for _ in $(seq 600); do
    ls b/iter1/model/checkpoint-* >/dev/null 2>&1 && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.05
done
kill -KILL $pid 2>/dev/null
wait $pid 2>/dev/null
ok "B: killed during iteration 1's training" bash -c "[ ! -e b/iter1/train.done ] && ls b/iter1/model/checkpoint-* >/dev/null 2>&1"
"$spin" iterate config.yaml --output_dir=b >b2.log 2>&1
ok "B: rerun exits 0" [ $? = 0 ]
ok "B: the rerun skipped the finished stages" grep -q "iteration 1: generate-train-0 done" b2.log
ok "B: the training resumed from its checkpoint" grep -q -- "--resume_from_checkpoint=true" b2.log
ok "B: the final model equals run A's, bit for bit" cmp a/iter1/model/model.safetensors b/iter1/model/model.safetensors
ok "B: the same final test answers" cmp a/iter2/generated/loser_0_test.jsonl b/iter2/generated/loser_0_test.jsonl
nospeed() { sed 's/"tokens_per_s": [^,]*,//' "$1"; }
ok "B: the same training metrics (but for tokens_per_s)" cmp <(nospeed a/iter1/model/metrics.jsonl) <(nospeed b/iter1/model/metrics.jsonl)

# run C: SIGKILL during iteration 0's generation (the generate test hook stops it after one batch)
SPIN_GENERATE_TEST_STOP_AFTER=1 "$spin" iterate config.yaml --output_dir=c >c1.log 2>&1 &
pid=$!
for _ in $(seq 200); do
    [ "$(ps -o stat= -p $pid 2>/dev/null | cut -c1)" = T ] && break
    sleep 0.05
done
kill -KILL $pid 2>/dev/null
wait $pid 2>/dev/null
ok "C: killed inside the first generation, after one batch" \
    bash -c "[ ! -e c/iter0/generate-train-0.done ] && [ \$(grep -c . c/iter0/generated/loser_0.jsonl) = 4 ]"
"$spin" iterate config.yaml --output_dir=c >c2.log 2>&1
ok "C: rerun exits 0" [ $? = 0 ]
ok "C: the generation resumed" grep -q "(4 resumed" c2.log
ok "C: the final model equals run A's, bit for bit" cmp a/iter1/model/model.safetensors c/iter1/model/model.safetensors

# bad configs name the file and line
printf 'model_name_or_path: demo/sft-model\noutput_dir: x\n' >nosec.yaml
err "no iterate section" "nosec.yaml:1: no \`iterate:\` section" "$spin" iterate nosec.yaml
sed 's/- {learning_rate: 5.0e-5, num_train_epochs: 30}/- {learning_rat: 5.0e-5}/' config.yaml >badkey.yaml
err "unknown per-iteration key names file:line" "badkey.yaml:26: iterations[1]: 'learning_rat' is not a training key" \
    "$spin" iterate badkey.yaml --output_dir=x
sed 's/^seed: 42/dataset_mixer: {demo\/data: 1.0}/' config.yaml >mixer.yaml
err "dataset_mixer refused naming file:line" "mixer.yaml:15: dataset_mixer is set by spin iterate" \
    "$spin" iterate mixer.yaml --output_dir=x
sed 's/num_iterations: 2/num_iterations: 1/' config.yaml >short.yaml
err "more per-iteration entries than iterations" "iterations lists 2 iterations, num_iterations is 1" \
    "$spin" iterate short.yaml --output_dir=x
err "--dataset_mixer on the command line refused" "dataset_mixer is set by spin iterate" \
    "$spin" iterate config.yaml --output_dir=x --dataset_mixer=demo/data
sed 's/  input: demo\/data/  input: nowhere/' config.yaml >noinput.yaml
err "missing input" "needs a train and a test split" "$spin" iterate noinput.yaml --output_dir=x
sed 's/    batch_size: 4/    batch_sise: 4/' config.yaml >badgen.yaml
err "unknown generate option names file:line" "badgen.yaml:23: iterate.generate: unknown key 'batch_sise'" \
    "$spin" iterate badgen.yaml --output_dir=x
"$spin" iterate config.yaml --output_dir=a --learning_rate=2e-5 --dry-run >over.log 2>&1
ok "the command line wins over an iterations entry (with a note)" \
    grep -q "iterations\[1\].learning_rate (config.yaml:26) is overridden by --learning_rate=2e-5" over.log

echo "$fails failure(s)"
[ "$fails" = 0 ]
