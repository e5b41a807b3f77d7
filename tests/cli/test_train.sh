#!/usr/bin/env bash
# spin score -> spin train end to end on the tiny Llama (tests/data/train/tiny) with a 64-token
# character tokenizer (tests/data/cli/train): uclaml/SPIN's configs/config.yaml with only the paths
# changed, the metrics schema, the SPIN loss moving the rewards the expected way, mode (a) = mode (b),
# DPO and SPPO data, bit-exact resume after SIGTERM, and bad input that must fail naming the file,
# line or key. Usage: test_train.sh SPIN_BINARY
set -u
spin=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
data=$here/../data
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
fails=0
pass() { echo "ok: $1"; }
fail() { echo "FAIL: $1"; fails=$((fails + 1)); }
ok() { local d=$1; shift; if "$@" >"$dir/last.log" 2>&1; then pass "$d"; else fail "$d"; sed 's/^/    /' "$dir/last.log"; fi; }
not() { ! "$@"; }
# err DESCRIPTION EXPECTED-TEXT COMMAND...: must fail (non-zero) with EXPECTED-TEXT in its output and
# no sanitizer report (under ASan a leak on an error path also exits non-zero)
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
# field FILE LINE KEY -> the number of "KEY": in line LINE of a metrics file
field() { sed -n "${2}p" "$1" | grep -o "\"$3\": [^,}]*" | head -1 | sed 's/.*: //'; }
# gt A B: A > B as numbers
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }
# close A B TOL: |A - B| <= TOL * max(|B|, 1e-30)
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; exit !(d <= t * (m > 1e-30 ? m : 1e-30)) }'; }

# the model directory: the tiny Llama (vocab 64) with the tokenizer and zephyr tokenizer_config
mkdir model data
cp "$data"/train/tiny/* "$data"/cli/train/tokenizer.json "$data"/cli/train/tokenizer_config.json model/
cp "$data"/cli/train/config.yaml config.yaml
spin_row() { # spin_row A B GENERATED
    printf '{"real": [{"role": "user", "content": "sum %d %d"}, {"role": "assistant", "content": "it is %d."}], "generated": [{"role": "user", "content": "sum %d %d"}, {"role": "assistant", "content": "%s"}]}\n' \
        "$1" "$2" $(($1 + $2)) "$1" "$2" "$3"
}
cp "$data"/cli/train/spin_16.jsonl data/train_prefs-00000-of-00001.jsonl
printf '{"real": [{"role": "user", "content": "sum 1 1"}, {"role": "assistant", "content": "it is 2."}], "generated": [{"role": "user", "content": "sum 1 1"}, {"role": "assistant", "content": "no"}]}\n' >data/test_prefs-00000-of-00001.jsonl

# --help lists the options with their defaults
"$spin" train --help >help.txt 2>&1
ok "train --help" [ $? = 0 ]
ok "train --help: loss_type and its default" grep -q "default sigmoid" help.txt
ok "train --help: --dry-run" grep -q -- "--dry-run" help.txt
ok "train --help: every used key" grep -q "save_total_limit N (default null" help.txt
"$spin" score --help >help.txt 2>&1
ok "score --help" [ $? = 0 ]
ok "score --help: --overwrite" grep -q -- "--overwrite" help.txt

# their config.yaml unchanged except paths: the dry run resolves it (bf16 per the trainer's support)
"$spin" train config.yaml --dry-run >dry.out 2>dry.err
rc=$?
if grep -q "bf16 training is not available" dry.err; then
    ok "config.yaml: bf16 refused naming file:line" grep -q "config.yaml:17: bf16" dry.err
    BF16=--bf16=false
    "$spin" train config.yaml --dry-run $BF16 >dry.out 2>dry.err
    rc=$?
else
    BF16=
fi
ok "config.yaml dry run exits 0" [ $rc = 0 ]
ok "dry run: 16 rows, batch 8, 3 epochs -> 6 steps, ceil(0.6) = 1 warmup" grep -q "steps: 6 total, 1 warmup" dry.out
ok "dry run: resolved keys name their origin" grep -q "learning_rate: 5e-07  # config.yaml:25" dry.out
ok "dry run: memory estimate" grep -q "total  *~" dry.out
ok "dry run: ignored keys listed with the reason" grep -q "hub_model_id: nothing is uploaded" dry.err
ok "dry run: ignored keys listed once" [ "$(grep -c "hub_model_id" dry.err)" = 1 ]
ok "dry run writes nothing" [ ! -e outputs ] && [ ! -e data/opponent_scores.jsonl ]

# spin score: the scores file beside the data, atomic, no silent overwrite
"$spin" score config.yaml $BF16 >score.log 2>&1
ok "score" [ $? = 0 ]
ok "score: progress lines in a log" grep -q "scoring the opponent: 8/16 examples" score.log
ok "score: header with the fingerprint" grep -q '"spin_opponent_scores": 1, "rows": 16' data/opponent_scores.jsonl
ok "score: one line per example" [ "$(wc -l <data/opponent_scores.jsonl)" = 17 ]
ok "score: no temporary file left" [ -z "$(ls data | grep -v -e '^train_prefs' -e '^test_prefs' -e '^opponent_scores.jsonl$')" ]
before=$(md5sum <data/opponent_scores.jsonl)
err "score: existing file refused" "exists (--overwrite replaces it)" "$spin" score config.yaml $BF16
ok "score: refused file untouched" [ "$(md5sum <data/opponent_scores.jsonl)" = "$before" ]
ok "score --overwrite" "$spin" score config.yaml $BF16 --overwrite
ok "score is deterministic" [ "$(md5sum <data/opponent_scores.jsonl)" = "$before" ]

# the scores against transformers (tests/ref/make_cli_score_golden.py: uclaml/SPIN's templating and
# collator, LlamaForCausalLM in f32). The scores file is in the mixer's shuffled order and the golden
# in file order, so both are sorted by the real score; normalised error over all 32 values <= 1e-5.
ok "score in f32" "$spin" score config.yaml --bf16=false --output=f32.jsonl
sed -n '2,$p' f32.jsonl | sed 's/.*"chosen": \([^,]*\), "rejected": \([^}]*\)}.*/\1 \2/' | sort -g >ours.txt
sort -g "$data"/cli/train/score_golden.txt >golden.txt
ok "scores match transformers (16 rows)" [ "$(wc -l <ours.txt)" = 16 ]
ok "scores match transformers: ||ours - golden|| / ||golden|| <= 1e-5" awk '
    NR == FNR { g1[FNR] = $1; g2[FNR] = $2; next }
    { d += ($1 - g1[FNR])^2 + ($2 - g2[FNR])^2; n += g1[FNR]^2 + g2[FNR]^2 }
    END { printf "normalised error %.3g\n", sqrt(d / n); exit !(sqrt(d / n) <= 1e-5) }' golden.txt ours.txt

# spin train on the stored scores: metrics schema, the SPIN loss raises the margins
T="--learning_rate=1e-3 --logging_steps=1"
ok "train (mode b, their config)" "$spin" train config.yaml $BF16 $T
m=outputs/metrics.jsonl
ok "metrics: 6 lines" [ "$(wc -l <$m)" = 6 ]
for k in step epoch loss learning_rate grad_norm rewards/real rewards/generated rewards/accuracies \
    rewards/margins logps/real logps/generated logits/real logits/generated tokens_per_s skipped; do
    [ -n "$(field $m 6 "$k")" ] || fail "metrics: $k missing"
done
pass "metrics: every field named as SPIN names it"
ok "metrics: no chosen/rejected names on SPIN data" not grep -q "rewards/chosen" $m
# policy = opponent at the start: margin exactly 0, loss log 2; then the margin grows
ok "step 1: margin 0 (policy = opponent)" [ "$(field $m 1 rewards/margins)" = 0 ]
ok "step 1: loss log(2)" close "$(field $m 1 loss)" 0.693147182 1e-6
ok "margins grow (step 3 > 0.1)" gt "$(field $m 3 rewards/margins)" 0.1
ok "margins grow (step 6 > step 3)" gt "$(field $m 6 rewards/margins)" "$(field $m 3 rewards/margins)"
ok "real reward up" gt "$(field $m 6 rewards/real)" 0
ok "generated reward down" gt 0 "$(field $m 6 rewards/generated)"
ok "loss down" gt "$(field $m 1 loss)" "$(field $m 6 loss)"
ok "checkpoint per epoch" [ -d outputs/checkpoint-2 ] && [ -d outputs/checkpoint-4 ] && [ -d outputs/checkpoint-6 ]
ok "final model in output_dir" [ -f outputs/model.safetensors ] && [ -f outputs/config.json ] && [ -f outputs/tokenizer.json ]
ok "final model differs from the initial one" not cmp -s outputs/model.safetensors model/model.safetensors
ok "final model = last checkpoint" cmp -s outputs/model.safetensors outputs/checkpoint-6/model.safetensors
printf '{"prompt": "sum 1 2"}\n' >p.jsonl
[ -z "$BF16" ] && ok "bf16 run: the final model is stored as bf16" grep -q '"torch_dtype": "bfloat16"' outputs/config.json
ok "final model loads (spin complete)" "$spin" complete --model outputs --input p.jsonl --max-new-tokens 2

# existing output: refused without --overwrite / --resume
before=$(md5sum <$m)
err "existing output refused" "holds a previous run" "$spin" train config.yaml $BF16 $T
ok "refused output untouched" [ "$(md5sum <$m)" = "$before" ]
ok "--overwrite replaces the run" "$spin" train config.yaml $BF16 $T --overwrite
ok "--overwrite: the same run again" [ "$(md5sum <$m | cut -c1-32)" != "" ] && cmp -s outputs/model.safetensors outputs/checkpoint-6/model.safetensors

# mode (a), the opponent in memory, gives the same losses (rows are scored independently of the batch)
ok "train (mode a)" "$spin" train config.yaml $BF16 $T --opponent=model --output_dir=outA
for s in 1 3 6; do
    close "$(field outA/metrics.jsonl $s loss)" "$(field $m $s loss)" 1e-5 || fail "mode a vs b: loss at step $s"
    close "$(field outA/metrics.jsonl $s rewards/margins)" "$(field $m $s rewards/margins)" 1e-4 ||
        fail "mode a vs b: margin at step $s"
done
pass "mode (a) = mode (b): losses within 1e-5, margins within 1e-4 relative"

# interruption: SIGTERM writes a checkpoint; --resume finishes bit for bit as the straight run
# f32 (their config ran in bf16 where available): its own scores file, as the fingerprint differs
R="--data=data --model=model --learning_rate=1e-3 --logging_steps=1 --max_steps=24 --save_strategy=no --scores=f32.jsonl"
ok "straight 24 steps" "$spin" train $R --output=straight
"$spin" train $R --output=cut >cut.log 2>&1 &
pid=$!
for _ in $(seq 1 300); do
    [ -f cut/metrics.jsonl ] && [ "$(wc -l <cut/metrics.jsonl)" -ge 3 ] && break
    sleep 0.05
done
kill -TERM $pid
wait $pid
rc=$?
ok "SIGTERM: exit 130" [ $rc = 130 ]
ok "SIGTERM: a checkpoint" ls -d cut/checkpoint-*
ok "SIGTERM: no final model" [ ! -f cut/model.safetensors ]
err "interrupted output refused without --resume" "holds a previous run" "$spin" train $R --output=cut
ok "--resume" "$spin" train $R --output=cut --resume
ok "resume: final model bit-identical" cmp -s cut/model.safetensors straight/model.safetensors
ok "resume: the same metrics" cmp -s <(sed 's/"tokens_per_s": [^,]*,//' cut/metrics.jsonl) \
    <(sed 's/"tokens_per_s": [^,]*,//' straight/metrics.jsonl)
ok "stop_after: stops with a checkpoint" "$spin" train $R --output=stop --stop_after=2
ok "stop_after: checkpoint-2" [ -d stop/checkpoint-2 ] && [ ! -f stop/model.safetensors ]

# DPO (strings) and SPPO data, other losses
for i in 1 2 3 4; do
    printf '{"prompt": "<|user|>\\nsum %d 1</s>\\n<|assistant|>\\n", "chosen": "it is %d.</s>\\n", "rejected": "no.</s>\\n", "chosen_probs": 0.7, "chosen_probs_win": 0.6, "chosen_probs_lose": 0.4}\n' $i $((i + 1))
done >sppo.jsonl
sed 's/, "chosen_probs.*}/}/' sppo.jsonl >dpo.jsonl
ok "DPO strings, hinge, mode a" "$spin" train --model model --data dpo.jsonl --output dpo --loss hinge --opponent model --per_device_train_batch_size=2 --logging_steps=1
ok "DPO metrics: chosen/rejected names" grep -q '"rewards/chosen"' dpo/metrics.jsonl
ok "SPPO, sppo loss" "$spin" train --model model --data sppo.jsonl --output sppo --loss sppo --beta 0.001 --per_device_train_batch_size=2
ok "SPPO: scores beside the file" [ -f sppo.opponent_scores.jsonl ]
ok "ipo, reference-free, no scores needed" "$spin" train --model model --data dpo.jsonl --output ipo --loss ipo --reference-free --scores=none.jsonl
ok "reference-free: no scores file" [ ! -e none.jsonl ]
ok "sigmoid with label smoothing" "$spin" train --model model --data dpo.jsonl --output ls --label-smoothing 0.1 --opponent=model
# weight decay with the Trainer's groups: after one AdamW update the tiny Llama's norm weights equal
# the run without decay byte for byte, its projections differ (python3 reads the safetensors)
W="--model model --data dpo.jsonl --opponent model --optim adamw_torch --lr_scheduler_type constant --warmup_ratio 0 --max_steps 1 --learning_rate 1e-2 --per_device_train_batch_size=2"
ok "adamw, weight_decay 0.1" "$spin" train $W --output wd1 --weight_decay 0.1
ok "adamw, weight_decay 0" "$spin" train $W --output wd0
tensor_bytes() { # FILE NAME -> hex of the tensor's bytes
    python3 -c 'import json,struct,sys
f=open(sys.argv[1],"rb"); n=struct.unpack("<Q",f.read(8))[0]; h=json.loads(f.read(n)); a,b=h[sys.argv[2]]["data_offsets"]
f.seek(8+n+a); print(f.read(b-a).hex())' "$1" "$2"
}
ok "weight_decay: norm weights not decayed" [ "$(tensor_bytes wd1/model.safetensors model.layers.0.input_layernorm.weight)" = \
    "$(tensor_bytes wd0/model.safetensors model.layers.0.input_layernorm.weight)" ]
ok "weight_decay: projections decayed" [ "$(tensor_bytes wd1/model.safetensors model.layers.0.self_attn.q_proj.weight)" != \
    "$(tensor_bytes wd0/model.safetensors model.layers.0.self_attn.q_proj.weight)" ]
err "label smoothing with hinge refused" "label_smoothing" "$spin" train --model model --data dpo.jsonl --output x --loss hinge --label-smoothing 0.1
err "unknown loss" "sppo_hard" "$spin" train --model model --data dpo.jsonl --output x --loss dpo
ok "SPPO loss on data without the columns refused" not "$spin" train --model model --data dpo.jsonl --output x --loss sppo --opponent=model

# dataset_mixer: the prefix fraction of each dataset, concatenated
for i in 1 2 3 4; do spin_row $i 9 "no"; done >extra.jsonl
"$spin" train --model model --data=data:0.5,extra.jsonl --output mix --dry-run >mix.out 2>&1
ok "mixer: int(0.5 x 16) + 4 rows" grep -q "data: 12 spin examples" mix.out
ok "mixer: several datasets keep their scores in output_dir" grep -q "stored scores mix/opponent_scores.jsonl" mix.out
# a scores file beside train.jsonl (spin score's default) is not read as more train data
mkdir sc && cp extra.jsonl sc/train.jsonl && printf '{"not": "data"}\n' >sc/train.opponent_scores.jsonl
"$spin" train --model model --data=sc --output scx --dry-run >sc.out 2>&1
ok "a directory's train.opponent_scores.jsonl is not data" grep -q "data: 4 spin examples" sc.out
err "mixer: SPIN and DPO data mixed" "dpo.jsonl:1: dpo data, but the rows before it are spin data" "$spin" train --model model --data=data,dpo.jsonl --output x --dry-run
err "mixer: fraction above 1" "fraction of each dataset must be in [0, 1]" "$spin" train --model model --data=data:1.5 --output x --dry-run

# global options
ok "--threads 1 --device cpu" "$spin" score config.yaml $BF16 --threads 1 --device cpu --output=cpu.jsonl
err "--device: an absent device" "no device" "$spin" score config.yaml $BF16 --device=nosuch:7 --output=x.jsonl
err "--threads: not a number" "--threads expects an integer" "$spin" train config.yaml --threads=many --dry-run

# bad input names the file and line, or the key
sed 's/^warmup_ratio: 0.1/warmup_rato: 0.1/' config.yaml >bad1.yaml
err "unknown config key: file:line" "bad1.yaml:40: unknown key 'warmup_rato'" "$spin" train bad1.yaml --dry-run $BF16
printf 'use_peft: true\n' | cat config.yaml - >bad2.yaml
err "use_peft: true refused" "bad2.yaml:41: use_peft: true is not supported" "$spin" train bad2.yaml --dry-run $BF16
printf 'beta: 0.2\n' | cat config.yaml - >bad3.yaml
err "duplicate key" "bad3.yaml:41: key 'beta' is given twice (first at line 18)" "$spin" train bad3.yaml --dry-run $BF16
err "unknown --key" "unknown option or config key '--learning-rat'" "$spin" train config.yaml --learning-rat=1 --dry-run
err "bad number" "--learning_rate=abc: learning_rate: expected a number" "$spin" train config.yaml --learning_rate=abc --dry-run
err "push_to_hub: true refused" "push_to_hub: true is not supported" "$spin" train config.yaml --push_to_hub=true --dry-run
mkdir b
{ spin_row 1 2 "x"; printf '{"real": [{"role": "user"\n'; } >b/train.jsonl
err "malformed JSONL line: file:line" "b/train.jsonl:2:" "$spin" train --model model --data b/train.jsonl --output x --dry-run
{ spin_row 1 2 "x"; spin_row 2 2 "x"; printf '{"real": [{"role": "user", "content": "sum 1 1"}, {"role": "assistant", "content": "2"}]}\n'; } >b/train.jsonl
err "missing field: file:line" 'b/train.jsonl:3: missing key "generated"' "$spin" train --model model --data b/train.jsonl --output x --dry-run
{ spin_row 1 2 "x"; printf '\n'; spin_row 2 2 ""; } >b/train.jsonl
err "empty response: file:line" "b/train.jsonl:3: the generated response is empty" "$spin" train --model model --data b/train.jsonl --output x --dry-run
long=$(printf 'sum %.0s' $(seq 1 20))
{ spin_row 1 2 "x"; printf '{"real": [{"role": "user", "content": "%s"}, {"role": "assistant", "content": "a"}], "generated": [{"role": "user", "content": "%s"}, {"role": "assistant", "content": "b"}]}\n' "$long" "$long"; } >b/train.jsonl
"$spin" train --model model --data b/train.jsonl --output x --dry-run --max_length=48 --max_prompt_length=16 >long.out 2>&1
ok "prompt longer than max_length: reported with file:line" grep -q "b/train.jsonl:2: the prompt alone is 118 tokens, not shorter than max_length 48: it keeps 16 tokens" long.out
err "max_prompt_length >= max_length refused" "max_prompt_length: must be in [1, max_length)" "$spin" train --model model --data data --output x --dry-run --max_length=48 --max_prompt_length=48
mkdir m1 m2
cp model/config.json model/tokenizer.json model/tokenizer_config.json m1/
cp model/model.safetensors model/tokenizer.json model/tokenizer_config.json m2/
err "model directory without weights" "no model.safetensors" "$spin" train --model m1 --data data --output x
err "model directory without config.json" "m2/config.json: cannot open" "$spin" train --model m2 --data data --output x --dry-run
err "missing dataset" "nowhere: No such file or directory" "$spin" train --model model --data nowhere --output x --dry-run
err "dataset directory without a train split" "has no train_x split" "$spin" train --model model --data b --output x --dry-run --dataset_splits=train_x
# stale scores: a changed row no longer matches its stored hash
sed -i '5s/it is/it was/' data/train_prefs-00000-of-00001.jsonl
err "stale scores refused" "train_prefs-00000-of-00001.jsonl:5)" "$spin" train config.yaml $BF16 $T --output_dir=stale
ok "stale scores: nothing trained" [ ! -e stale/metrics.jsonl ]
err "stale scores: different max_length" "max_length" "$spin" train config.yaml $BF16 $T --output_dir=stale --max_length=512

echo "$fails failure(s)"
[ $fails = 0 ]
