#!/usr/bin/env bash
# uclaml/SPIN's data pipeline end to end on the tiny Llama (tests/data/train/tiny, 64-token character
# tokenizer of tests/data/cli/train): spin reformat (24 Alpaca records of alpaca_5000.json) ->
# spin generate (two train shards and the test shard; one run SIGKILLed after its first batch
# landed, then resumed) -> spin convert -> spin eval (log-probs against transformers' golden
# scores, the SPIN reward identities, a model trained for a few steps against its opponent) ->
# spin iterate (one iteration of the whole loop: generate, convert, score, train, eval; the SPIN
# loss raising the margins), and
# bad input that must fail naming the file, line, record or key.
# Usage: test_data.sh SPIN_BINARY. SKIPPED (exit 77) when alpaca_5000.json is absent (set
# SPIN_ALPACA to its path; default ../shared/data/alpaca_5000.json beside the repository).
set -u
spin=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
data=$here/../data
alpaca=${SPIN_ALPACA:-$here/../../../shared/data/alpaca_5000.json}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
fails=0
pass() { echo "ok: $1"; }
fail() { echo "FAIL: $1"; fails=$((fails + 1)); }
ok() { local d=$1; shift; if "$@" >"$dir/last.log" 2>&1; then pass "$d"; else fail "$d"; sed 's/^/    /' "$dir/last.log"; fi; }
# err DESCRIPTION EXPECTED-TEXT COMMAND...: must exit non-zero with EXPECTED-TEXT in its output and
# no sanitizer report
err() {
    local d=$1 want=$2 msg
    shift 2
    if msg=$("$@" 2>&1); then
        fail "$d: exit 0"
    elif grep -q -e "Sanitizer" -e "runtime error" <<<"$msg"; then
        fail "$d: sanitizer report"; sed 's/^/    /' <<<"$msg"
    elif ! grep -qF -- "$want" <<<"$msg"; then
        fail "$d: output lacks '$want'"; sed 's/^/    /' <<<"$msg"
    else pass "$d"; fi
}
# num FILE KEY: the first number after "KEY": in a JSON file
num() { grep -o "\"$2\": *[-0-9.e+]*" "$1" | head -1 | sed 's/.*: *//'; }
# close A B TOL: |A - B| <= TOL * max(|B|, 1e-12)
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; exit !(d <= t * (m > 1e-12 ? m : 1e-12)) }'; }
# users FILE: the user prompts of a SPIN JSONL file, sorted (the rows' identity for set comparisons)
users() { grep -o '"real":\[{"role":"user","content":"\([^"\\]\|\\.\)*"' "$1" | sort; }

mkdir model
cp "$data"/train/tiny/* "$data"/cli/train/tokenizer.json "$data"/cli/train/tokenizer_config.json model/

# ---- bad input (handmade files; runs with or without alpaca_5000.json) ----
printf '{"instruction": "a", "input": "", "output": "b"}\n{"instruction": "c", "output": \n' >broken.jsonl
err "reformat: malformed JSONL line" "broken.jsonl:2: not one JSON object" "$spin" reformat --input broken.jsonl --output-dir o1
printf '[{"instruction": "a", "input": "", "output": "b"}, {"instruction": "c", "input": ""}]' >nooutput.json
err "reformat: missing field (JSON array record)" 'nooutput.json: record 1: missing key "output"' \
    "$spin" reformat --input nooutput.json --output-dir o2
printf '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]}\n' >empty.jsonl
err "reformat: empty response" "empty.jsonl:1: messages[1]: empty response" "$spin" reformat --input empty.jsonl --output-dir o3
printf '{"conversations": [{"from": "gpt", "value": "x"}]}\n' >sgpt.jsonl
err "reformat: ShareGPT turn out of order" "sgpt.jsonl:1: conversations[0]: role gpt, expected human" \
    "$spin" reformat --input sgpt.jsonl --output-dir o4
printf '{"text": "x"}\n' >unknown.jsonl
err "reformat: unknown record" 'unknown.jsonl:1: no "messages" key' "$spin" reformat --input unknown.jsonl --output-dir o5
# ShareGPT and messages records with a leading system turn: the first user turn and its answer
printf '{"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"}, {"from": "human", "value": "q2"}]}\n{"messages": [{"role": "user", "content": "q3"}, {"role": "assistant", "content": "a3"}]}\n' >mixed.jsonl
ok "reformat: ShareGPT + messages" "$spin" reformat --input mixed.jsonl --output-dir o6 --test-fraction 0
ok "reformat: ShareGPT row" grep -qxF '{"real":[{"role":"user","content":"q1"},{"role":"assistant","content":"a1"}],"generated":[{"role":"user","content":"q1"},{"role":"assistant","content":""}]}' o6/train_prefs-00000-of-00001.jsonl
ok "reformat: messages row" grep -qxF '{"real":[{"role":"user","content":"q3"},{"role":"assistant","content":"a3"}],"generated":[{"role":"user","content":"q3"},{"role":"assistant","content":""}]}' o6/train_prefs-00000-of-00001.jsonl
ok "reformat: test fraction 0 -> empty test file" [ ! -s o6/test_prefs-00000-of-00001.jsonl ]
err "reformat: never overwrites" "exists (--overwrite replaces it)" "$spin" reformat --input mixed.jsonl --output-dir o6
ok "reformat: --test_input (underscores as uclaml/SPIN's scripts)" "$spin" reformat --input mixed.jsonl --test_input mixed.jsonl --output_dir o7
ok "reformat: --test-input gives the test split" cmp o7/train_prefs-00000-of-00001.jsonl o7/test_prefs-00000-of-00001.jsonl
ok "reformat: --test-input, train split whole" [ "$(wc -l <o7/train_prefs-00000-of-00001.jsonl)" = 2 ]
printf '{"real": [{"role": "user", "content": "q"}], "generated": []}\n' >short.jsonl
err "generate: real with one message" "short.jsonl:1: \"real\" must be a list of at least 2 messages" \
    "$spin" generate --model model --input short.jsonl --output-dir g0
printf '{"generated": []}\n' >noreal.jsonl
err "generate: missing key" 'noreal.jsonl:1: missing key "real"' "$spin" generate --model model --input noreal.jsonl --output-dir g0
err "generate: prompt longer than max_length" "train_prefs-00000-of-00001.jsonl:1: real[0]: the prompt is" \
    "$spin" generate --model model --input o6 --output-dir g0 --max-length 8
mkdir noweights
cp model/config.json model/tokenizer.json model/tokenizer_config.json noweights/
err "generate: model directory missing a file" "no model.safetensors" "$spin" generate --model noweights --input o6 --output-dir g0
err "convert: empty answer (reformat output as a shard)" "generated[1].content is empty" \
    bash -c "mkdir -p c0 && cp o6/train_prefs-00000-of-00001.jsonl c0/loser_0.jsonl && cp c0/loser_0.jsonl c0/loser_0_test.jsonl && '$spin' convert --input-dir c0 --output-dir c0out"
err "convert: no shards" "no loser_<k>.jsonl shards" "$spin" convert --input-dir o6 --output-dir c1

if [ ! -f "$alpaca" ]; then
    echo "SKIP: $alpaca not found (set SPIN_ALPACA); the end-to-end part did not run"
    [ "$fails" = 0 ] && exit 77
    echo "$fails FAILED"
    exit 1
fi

# ---- reformat: 24 Alpaca records, 6 in the test split ----
R="--input $alpaca --max-records 24 --test-fraction 0.25 --seed 7"
ok "reformat alpaca" "$spin" reformat $R --output-dir ref
tr=ref/train_prefs-00000-of-00001.jsonl
te=ref/test_prefs-00000-of-00001.jsonl
ok "reformat: 18 train rows" [ "$(wc -l <$tr)" = 18 ]
ok "reformat: 6 test rows" [ "$(wc -l <$te)" = 6 ]
ok "reformat: schema (every line real [user, assistant], generated [user, empty assistant])" \
    bash -c "[ \$(grep -cE '^\{\"real\":\[\{\"role\":\"user\",\"content\":\".*\"\},\{\"role\":\"assistant\",\"content\":\".+\"\}\],\"generated\":\[\{\"role\":\"user\",\"content\":\".*\"\},\{\"role\":\"assistant\",\"content\":\"\"\}\]\}$' $tr $te | awk -F: '{s += \$2} END {print s}') = 24 ]"
# alpaca record 0: the instruction, a blank line, the input; its output is the real answer
ok "reformat: Alpaca instruction + input is the user turn" grep -qF '[{"role":"user","content":"Are the two sentences below grammatically correct? Output yes or no.\n\nSentence 1: I am going to the store.\nSentence 2: I goes to the store."},{"role":"assistant","content":"No"}]' $tr $te
ok "reformat: same seed, same split" bash -c "'$spin' reformat $R --output-dir ref2 && cmp $tr ref2/train_prefs-00000-of-00001.jsonl && cmp $te ref2/test_prefs-00000-of-00001.jsonl"
ok "reformat: another seed, another split" bash -c "'$spin' reformat $R --seed 8 --output-dir ref3 && ! cmp -s $te ref3/test_prefs-00000-of-00001.jsonl"
users $tr >u_train.txt
users $te >u_test.txt
ok "reformat: train and test hold the 24 records once" [ "$(sort -u u_train.txt u_test.txt | wc -l)" = 24 ]

# ---- generate: shards 0 and 1 of 9 rows of the train split; shard 0 killed after its first batch ----
G="--model model --input_dir ref --output_dir gen --batch_size 4 --frac_len 9 --max-length 2048 --ignore-eos --max-new-tokens 16"
SPIN_GENERATE_TEST_STOP_AFTER=1 "$spin" generate $G --data-frac 0 >kill.log 2>&1 &
pid=$!
st=
for _ in $(seq 400); do
    st=$(ps -o stat= -p $pid 2>/dev/null)
    case $st in T*) break ;; esac
    sleep 0.05
done
ok "generate: stopped after the first batch landed" [ "${st:0:1}" = T ]
err "generate: a second run on a shard being written" "gen/loser_0.jsonl is being written by another process" \
    "$spin" generate $G --data-frac 0
{ kill -KILL $pid && wait $pid; } 2>/dev/null
ok "generate: killed with the first batch (4 rows) on disk" [ "$(wc -l <gen/loser_0.jsonl)" = 4 ]
printf '{"real": [{"role": "us' >>gen/loser_0.jsonl # a write torn by the kill
"$spin" generate $G --data-frac 0 >resume.log 2>&1
ok "generate: rerun resumes" [ $? = 0 ]
ok "generate: the partial line was cut" grep -q "cutting a partial last line" resume.log
ok "generate: resumed 4 rows" grep -q "9 rows (4 resumed, 5 generated" resume.log
ok "generate: 9 rows after the resume" [ "$(wc -l <gen/loser_0.jsonl)" = 9 ]
ok "generate: no duplicate rows" [ -z "$(users gen/loser_0.jsonl | uniq -d)" ]
ok "generate: a finished shard reruns as a no-op" bash -c "'$spin' generate $G --data-frac 0 2>&1 | grep -q '9 rows (9 resumed, 0 generated'"
ok "generate: shard 1" "$spin" generate $G --data-frac 1
# sampled: a run resumed from a torn file writes what the uninterrupted run wrote
S="--model model --input_dir ref --batch_size 4 --frac_len 9 --max-length 2048 --ignore-eos --max-new-tokens 16 --temperature 1 --seed 3"
ok "generate: sampled shard" "$spin" generate $S --data-frac 0 --output_dir gs1
mkdir gs2 && head -n 4 gs1/loser_0.jsonl >gs2/loser_0.jsonl && sed -n 5p gs1/loser_0.jsonl | head -c 30 >>gs2/loser_0.jsonl
cp gs1/loser_0.options.json gs2/
ok "generate: sampled, resumed from row 4" "$spin" generate $S --data-frac 0 --output_dir gs2
ok "generate: sampled resume == uninterrupted, byte for byte" cmp gs1/loser_0.jsonl gs2/loser_0.jsonl
ok "generate: sampled answers differ from greedy" bash -c "! cmp -s gs1/loser_0.jsonl gen/loser_0.jsonl"
ok "generate: the two shards are the train split" [ "$( (users gen/loser_0.jsonl; users gen/loser_1.jsonl) | sort)" = "$(cat u_train.txt)" ]
ok "generate: no empty answers" bash -c "! grep -q '\"role\":\"assistant\",\"content\":\"\"}]}' gen/loser_0.jsonl gen/loser_1.jsonl"
ok "generate: answers are not the real responses" bash -c "! grep -qE '\"content\":\"([^\"]*)\"\\}\\],\"generated\":.*\"content\":\"\\1\"\\}\\]\\}$' gen/loser_0.jsonl"
ok "generate: options sidecar" grep -q '"max_new_tokens":16' gen/loser_0.options.json
err "generate: other options over an existing shard" "was generated with temperature 0.0, this run has 0.5" \
    "$spin" generate $G --data-frac 0 --temperature 0.5
err "generate: shard past the end" "shard 2 of 9 rows each is empty: the train split has 18 rows" "$spin" generate $G --data-frac 2
ok "generate: the test split" "$spin" generate $G --frac-len 0 --split test
ok "generate: loser_0_test.jsonl has the 6 test rows" [ "$(users gen/loser_0_test.jsonl)" = "$(cat u_test.txt)" ]
ok "generate: prompts as uclaml/SPIN's (options file)" grep -q '"prompt":"instruction"' gen/loser_0_test.options.json
ok "generate: --chat-template" "$spin" generate $G --frac-len 0 --split test --chat-template --output-dir genchat
ok "generate: --chat-template recorded" grep -q '"prompt":"zephyr"' genchat/loser_0_test.options.json
ok "generate: --chat-template changes the answers" bash -c "! cmp -s gen/loser_0_test.jsonl genchat/loser_0_test.jsonl"
ok "generate: --chat-template masks the prompt's EOS tokens, as training" grep -q '"prompt_eos":"masked"' genchat/loser_0_test.options.json
ok "generate: the instruction prompt attends to all" grep -q '"prompt_eos":"attended"' gen/loser_0_test.options.json
ok "generate: --attend-prompt-eos" "$spin" generate $G --frac-len 0 --split test --chat-template --attend-prompt-eos --output-dir genatt
ok "generate: --attend-prompt-eos recorded" grep -q '"prompt_eos":"attended"' genatt/loser_0_test.options.json
ok "generate: the EOS mask changes the answers" bash -c "! cmp -s genatt/loser_0_test.jsonl genchat/loser_0_test.jsonl"
err "generate: resuming with the other EOS attention" "was generated with prompt_eos" \
    "$spin" generate $G --frac-len 0 --split test --chat-template --output-dir genatt
ok "generate: --overwrite starts over" "$spin" generate $G --data-frac 1 --overwrite --seed 5 --temperature 1
ok "generate: overwritten shard has 9 rows" [ "$(wc -l <gen/loser_1.jsonl)" = 9 ]

# ---- convert ----
ok "convert" "$spin" convert --input-dir gen --output-dir syn
ok "convert: 18 train rows, shard order" bash -c "cat gen/loser_0.jsonl gen/loser_1.jsonl | cmp - syn/train_prefs-00000-of-00001.jsonl"
ok "convert: 6 test rows" bash -c "cmp gen/loser_0_test.jsonl syn/test_prefs-00000-of-00001.jsonl"
err "convert: never overwrites" "exists (--overwrite replaces it)" "$spin" convert --input-dir gen --output-dir syn
err "convert: missing shard" "missing shard gen/loser_2.jsonl" "$spin" convert --input-dir gen --output-dir syn2 --num-fracs 3
cp -r gen bad
sed -i '$d' bad/loser_1.jsonl
err "convert: incomplete shard" "bad/loser_1.jsonl has 8 rows, its options file says 9" "$spin" convert --input-dir bad --output-dir syn2
cp -r gen dup
rm dup/*.options.json
head -1 dup/loser_0.jsonl >>dup/loser_1.jsonl
err "convert: duplicate rows" "dup/loser_1.jsonl:10 repeats the row of dup/loser_0.jsonl:1" "$spin" convert --input-dir dup --output-dir syn2
ok "convert: --allow-duplicates keeps them" "$spin" convert --input-dir dup --output-dir syn3 --allow-duplicates
ok "convert: 19 rows kept" [ "$(wc -l <syn3/train_prefs-00000-of-00001.jsonl)" = 19 ]
mv dup/loser_0_test.jsonl dup/x
err "convert: missing test shard" "missing shard dup/loser_0_test.jsonl" "$spin" convert --input-dir dup --output-dir syn4 --allow-duplicates

# ---- eval ----
"$spin" eval --model model --opponent model --data syn --output self.json >self.log 2>&1
ok "eval: model against itself" [ $? = 0 ]
ok "eval: 6 test examples" [ "$(num self.json examples)" = 6 ]
ok "eval: against itself the margin is 0" close "$(num self.json margin)" 0 1e-12
ok "eval: against itself the loss is log 2" close "$(num self.json loss)" 0.6931471805599453 1e-9
ok "eval: length statistics of 6 answers" [ "$(num self.json answers)" = 6 ]
ok "eval: table printed" grep -q "rewards/accuracies" self.log
err "eval: never overwrites its report" "self.json exists" "$spin" eval --model model --data syn --output self.json
# log-probs against transformers: tests/ref/make_cli_score_golden.py scored spin_16.jsonl (max_length
# 1024, max_prompt_length 512, f32): the means of its columns are logps/real and logps/generated
ok "eval: the golden fixture" "$spin" eval --model model --data "$data"/cli/train/spin_16.jsonl --output golden.json
gr=$(awk '{ s += $1 } END { printf "%.9g", s / NR }' "$data"/cli/train/score_golden.txt)
gg=$(awk '{ s += $2 } END { printf "%.9g", s / NR }' "$data"/cli/train/score_golden.txt)
ok "eval: logps/real = transformers' mean (rel. error <= 1e-5)" close "$(num golden.json real)" "$gr" 1e-5
ok "eval: logps/generated = transformers' mean (rel. error <= 1e-5)" close "$(num golden.json generated)" "$gg" 1e-5
# a model trained a few SPIN steps on the train split against its opponent on the test split
cp syn/train_prefs-00000-of-00001.jsonl trainset.jsonl
ok "train a few steps" "$spin" train --model model --data trainset.jsonl --output trained --learning_rate 1e-3 \
    --num_train_epochs 2 --max_length 1024 --max_prompt_length 512 --per_device_train_batch_size 8 --bf16=false
ok "eval: trained against its opponent" "$spin" eval --model trained --opponent model --data syn --beta 0.1 --output trained.json
# the reward identities from the report's own log-probs: r = beta * (S_model - S_opponent)
pr=$(grep -A3 '"logps"' trained.json | num /dev/stdin real)
pg=$(grep -A3 '"logps"' trained.json | num /dev/stdin generated)
orr=$(grep -A3 '"opponent_logps"' trained.json | num /dev/stdin real)
og=$(grep -A3 '"opponent_logps"' trained.json | num /dev/stdin generated)
rr=$(grep -A3 '"rewards"' trained.json | num /dev/stdin real)
ok "eval: rewards/real = beta * (S_model - S_opponent) (rel. 1e-9)" close "$rr" "$(awk -v a="$pr" -v b="$orr" 'BEGIN { printf "%.17g", 0.1 * (a - b) }')" 1e-9
ok "eval: margin = beta * ((S_real - S_gen) - (O_real - O_gen)) (rel. 1e-9)" close "$(num trained.json margin)" \
    "$(awk -v a="$pr" -v b="$pg" -v c="$orr" -v d="$og" 'BEGIN { printf "%.17g", 0.1 * ((a - b) - (c - d)) }')" 1e-9
ok "eval: SPIN training moved the held-out margin up" awk -v m="$(num trained.json margin)" 'BEGIN { exit !(m > 0) }'
ok "eval: held-out reward accuracy above 1/2" awk -v m="$(num trained.json accuracy)" 'BEGIN { exit !(m > 0.5) }'
err "eval: prompt longer than max_length" "syn/test_prefs-00000-of-00001.jsonl:1: the prompt is" \
    "$spin" eval --model model --data syn --output x.json --max-length 20 --max-prompt-length 10
err "eval: empty generated answer" "test_prefs-00000-of-00001.jsonl:1: generated[1].content is empty" "$spin" eval --model model --data ref --output y.json
err "eval: opponent directory missing a file" "--opponent noweights" "$spin" eval --model model --opponent noweights --data syn --output z.json

# ---- iterate: the whole loop on the Alpaca slice (generate, convert, score, train, eval) ----
cat >iter.yaml <<EOF
model_name_or_path: model
output_dir: loop
beta: 0.1
optim: rmsprop
learning_rate: 1.0e-3
num_train_epochs: 2
per_device_train_batch_size: 9
max_length: 1024
max_prompt_length: 512
logging_steps: 1
save_strategy: "no"
seed: 42
bf16: false
iterate:
  input: ref
  num_iterations: 1
  generate:
    max_new_tokens: 12
    max_length: 2048
    ignore_eos: true
    batch_size: 9
EOF
ok "iterate: one iteration on the Alpaca slice" "$spin" iterate iter.yaml
ok "iterate: 18 train answers by theta_0" [ "$(wc -l <loop/iter0/generated/loser_0.jsonl)" = 18 ]
ok "iterate: scores for the 18 training pairs (after the fingerprint line)" [ "$(grep -c . loop/iter0/opponent_scores.jsonl)" = 19 ]
ok "iterate: 4 updates logged" [ "$(wc -l <loop/iter0/model/metrics.jsonl)" = 4 ]
# the SPIN loss moves the rewards the expected way: the last update's margin above the first's
m1=$(sed -n 1p loop/iter0/model/metrics.jsonl | num /dev/stdin rewards/margins)
m4=$(sed -n 4p loop/iter0/model/metrics.jsonl | num /dev/stdin rewards/margins)
ok "iterate: training raised rewards/margins ($m1 -> $m4)" awk -v a="$m1" -v b="$m4" 'BEGIN { exit !(b > a) }'
ok "iterate: held-out margin of theta_1 against theta_0 above 0" \
    awk -v m="$(num loop/iter0/eval.json margin)" 'BEGIN { exit !(m > 0) }'
ok "iterate: theta_1 answers the test prompts" [ "$(wc -l <loop/iter1/generated/loser_0_test.jsonl)" = 6 ]

[ "$fails" = 0 ] && { echo "all passed"; exit 0; }
echo "$fails FAILED"
exit 1
