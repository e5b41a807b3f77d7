#!/usr/bin/env bash
# The spin CLI under mpirun (docs/distributed.md), 2 ranks against 1 process on the tiny Llama
# (tests/data/train/tiny) with the 64-token character tokenizer (tests/data/cli/train):
#   score    the scores file byte for byte (a row's score does not depend on its batch or rank);
#   train    2 ranks x batch 2 == 1 process x batch 4, zero_stage 0 and 1: final model.safetensors
#            within a normalised error ||a - b|| / ||b|| <= 1e-6 (measured ~3e-8; f32 sums in
#            another order), one metrics writer, zero_stage 3 refused naming the key; bf16 with
#            ZeRO-1 and the scores computed by train itself (scores byte for byte, model <= 1e-6);
#   resume   a 2-rank checkpoint (stop_after) continued by 1 process with the same global batch ==
#            the straight run (<= 1e-6), another global batch refused;
#   generate greedy shards byte for byte, also resumed by 2 ranks from a torn 1-process file, and
#            sampled shards byte for byte;
#   iterate  two iterations: the same files, the same generated data, final model <= 1e-6.
# Usage: test_cli_mpi.sh MPIRUN SPIN_BINARY ST_NERR
set -u
mpirun=$1
spin=$(realpath "$2")
nerr=$(realpath "$3")
here=$(cd "$(dirname "$0")" && pwd)
data=$here/../data
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
export OMP_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 # CI containers run as root
fails=0
pass() { echo "ok: $1"; }
fail() { echo "FAIL: $1"; fails=$((fails + 1)); }
ok() { local d=$1; shift; if "$@" >"$dir/last.log" 2>&1; then pass "$d"; grep -h "normalised error" "$dir/last.log" | sed "s/^/    /"; else fail "$d"; sed 's/^/    /' "$dir/last.log" | tail -30; fi; }
not() { ! "$@"; }
err() { # err DESCRIPTION EXPECTED-TEXT COMMAND...: must fail with EXPECTED-TEXT in its output
    local d=$1 want=$2 msg
    shift 2
    if msg=$("$@" 2>&1); then
        fail "$d: exit 0"
    elif ! grep -qF -- "$want" <<<"$msg"; then
        fail "$d: output lacks '$want'"; sed 's/^/    /' <<<"$msg" | tail -20
    else pass "$d"; fi
}
run2() { "$mpirun" -np 2 --oversubscribe -x OMP_NUM_THREADS "$@"; }
# within A B TOL: st_nerr(A, B) <= TOL (the number is printed)
within() { local e; e=$("$nerr" "$1" "$2") || return 1; echo "normalised error $e (tolerance $3)"; awk -v e="$e" -v t="$3" 'BEGIN { exit !(e <= t) }'; }
beyond() { local e; e=$("$nerr" "$1" "$2") || return 1; echo "normalised error $e (must exceed $3)"; awk -v e="$e" -v t="$3" 'BEGIN { exit !(e > t) }'; }

mkdir model data
cp "$data"/train/tiny/* "$data"/cli/train/tokenizer.json "$data"/cli/train/tokenizer_config.json model/
cp "$data"/cli/train/spin_16.jsonl data/train_prefs-00000-of-00001.jsonl
head -4 data/train_prefs-00000-of-00001.jsonl >data/test_prefs-00000-of-00001.jsonl
cp "$data"/cli/train/config.yaml config.yaml

# ---- score: batch 3, so the ranks' blocks (rows 0-7, 8-15) cut the 1-process batches ----
S="--bf16=false --per_device_train_batch_size=3"
ok "score: 1 process" "$spin" score config.yaml $S --output=s1.jsonl
run2 "$spin" score config.yaml $S --output=s2.jsonl >s2.log 2>&1
ok "score: 2 ranks" [ $? = 0 ]
ok "score: 2 ranks == 1 process, byte for byte" cmp s1.jsonl s2.jsonl
ok "score: one result line for the job" [ "$(grep -c "spin score: 16 spin examples" s2.log)" = 1 ]

# ---- train: 3 updates of global batch 4, a checkpoint at 2 and at the end ----
T="--bf16=false --learning_rate=1e-3 --logging_steps=1 --max_steps=3 --save_strategy=steps --save_steps=2 --scores=s1.jsonl"
ok "train: 1 process, batch 4" "$spin" train config.yaml $T --per_device_train_batch_size=4 --output_dir=o1
run2 "$spin" train config.yaml $T --per_device_train_batch_size=2 --output_dir=o2 >o2.log 2>&1
ok "train: 2 ranks x batch 2 (zero_stage 0)" [ $? = 0 ]
ok "train: data parallel announced" grep -q "data parallel over 2 ranks (mpi), zero_stage 0, global batch 4" o2.log
ok "train: one final line for the job" [ "$(grep -c "spin train: 3 updates" o2.log)" = 1 ]
ok "train: training moved the model" beyond o1/model.safetensors model/model.safetensors 1e-3
ok "train: 2 ranks == 1 process (final model)" within o2/model.safetensors o1/model.safetensors 1e-6
ok "train: one metrics writer (3 lines)" [ "$(grep -c . o2/metrics.jsonl)" = 3 ]
ok "train: the checkpoints, world_size 2" bash -c 'grep -q "\"world_size\":2" o2/checkpoint-2/trainer_state.json && [ -d o2/checkpoint-3 ]'
ok "train: 2 ranks, zero_stage 1" run2 "$spin" train config.yaml $T --per_device_train_batch_size=2 --zero_stage=1 --output_dir=o3
ok "train: ZeRO-1 == 1 process (final model)" within o3/model.safetensors o1/model.safetensors 1e-6
err "train: zero_stage 3 refused naming the key" "zero_stage: 3 is not implemented" \
    run2 "$spin" train config.yaml $T --zero_stage=3 --output_dir=o9
ok "train: a refused run writes nothing" [ ! -e o9 ]

# bf16 weights (their config's bf16: true) under ZeRO-1, the scores file missing: train scores the
# opponent first with the rows split, rank 0 writes it (the same bytes as one process's)
B="--learning_rate=1e-3 --logging_steps=1 --max_steps=3 --save_strategy=no"
ok "train bf16: 1 process (scores computed first)" "$spin" train config.yaml $B --per_device_train_batch_size=4 --scores=b1.jsonl --output_dir=b1
ok "train bf16: 2 ranks, zero_stage 1 (scores computed first)" run2 "$spin" train config.yaml $B --per_device_train_batch_size=2 --zero_stage=1 --scores=b2.jsonl --output_dir=b2
ok "train bf16: the scores file, byte for byte" cmp b1.jsonl b2.jsonl
ok "train bf16: ZeRO-1 == 1 process (final model)" within b2/model.safetensors b1/model.safetensors 1e-6

# ---- resume: 2 ranks stop after 2 updates, 1 process (batch 4: the same global batch) finishes ----
ok "resume: 2 ranks stop at a checkpoint" run2 "$spin" train config.yaml $T --per_device_train_batch_size=2 --stop_after=2 --output_dir=o4
ok "resume: checkpoint-2, no final model" [ -d o4/checkpoint-2 ] && [ ! -e o4/model.safetensors ]
err "resume: another global batch refused" "this run has" \
    "$spin" train config.yaml $T --per_device_train_batch_size=2 --resume --output_dir=o4
ok "resume: 1 process continues the 2-rank checkpoint" "$spin" train config.yaml $T --per_device_train_batch_size=4 --resume --output_dir=o4
ok "resume: == the straight run (final model)" within o4/model.safetensors o1/model.safetensors 1e-6
ok "resume: 3 metrics lines" [ "$(grep -c . o4/metrics.jsonl)" = 3 ]

# ---- generate: greedy, batch 1 (rounds of 2 ranks x 4 batches x 1 row: two rounds of 16 rows) ----
G="--model model --input data --split train --max-new-tokens 8 --batch-size 1"
ok "generate: 1 process" "$spin" generate $G --output-dir g1
ok "generate: 2 ranks" run2 "$spin" generate $G --output-dir g2
ok "generate: 2 ranks == 1 process, byte for byte" cmp g1/loser_0.jsonl g2/loser_0.jsonl
ok "generate: the same options sidecar" cmp g1/loser_0.options.json g2/loser_0.options.json
ok "generate: nothing else written" [ "$(ls g2 | tr '\n' ' ')" = "loser_0.jsonl loser_0.options.json " ]
mkdir g3
head -n 5 g1/loser_0.jsonl >g3/loser_0.jsonl
sed -n 6p g1/loser_0.jsonl | head -c 40 >>g3/loser_0.jsonl # a torn sixth row
cp g1/loser_0.options.json g3/
run2 "$spin" generate $G --output-dir g3 >g3.log 2>&1
ok "generate: 2 ranks resume a torn file" [ $? = 0 ]
ok "generate: resumed at row 5" grep -q "16 rows (5 resumed, 11 generated" g3.log
ok "generate: resumed == 1 process, byte for byte" cmp g1/loser_0.jsonl g3/loser_0.jsonl
# sampled: a row's samples are keyed by (seed, its row), so 2 ranks write the 1-process bytes too
ok "generate: sampled, 1 process" "$spin" generate $G --temperature 1 --seed 7 --output-dir s1
ok "generate: sampled, 2 ranks" run2 "$spin" generate $G --temperature 1 --seed 7 --output-dir s2
ok "generate: sampled, 2 ranks == 1 process, byte for byte" cmp s1/loser_0.jsonl s2/loser_0.jsonl
ok "generate: sampled differs from greedy" bash -c "! cmp -s s1/loser_0.jsonl g1/loser_0.jsonl"

# ---- iterate: two iterations on 1 process and on 2 ranks (global batch 4 both) ----
cat >iconfig.yaml <<EOF
model_name_or_path: model
output_dir: RUN
bf16: false
beta: 0.1
learning_rate: 1.0e-3
num_train_epochs: 1
per_device_train_batch_size: 4
max_length: 64
max_prompt_length: 40
logging_steps: 1
save_strategy: steps
save_steps: 2
seed: 42
iterate:
  input: data
  num_iterations: 2
  eval_batch_size: 4
  generate:
    max_new_tokens: 6
    batch_size: 2
    ignore_eos: true
EOF
ok "iterate: 1 process" "$spin" iterate iconfig.yaml --output_dir=i1
run2 "$spin" iterate iconfig.yaml --output_dir=i2 --per_device_train_batch_size=2 >i2.log 2>&1
ok "iterate: 2 ranks" [ $? = 0 ]
ok "iterate: the same files" diff <(cd i1 && find . | sort) <(cd i2 && find . | sort)
ok "iterate: each stage announced once" [ "$(grep -c "== spin iterate: iteration" i2.log)" = 13 ]
same=0
for f in iter0/generated/loser_0.jsonl iter0/generated/loser_0_test.jsonl iter0/data/train_prefs-00000-of-00001.jsonl \
    iter1/generated/loser_0.jsonl iter1/data/train_prefs-00000-of-00001.jsonl iter2/generated/loser_0_test.jsonl; do
    cmp -s "i1/$f" "i2/$f" && same=$((same + 1))
done
ok "iterate: the generated data byte for byte (6 files)" [ $same = 6 ]
ok "iterate: θ_2 == 1 process's" within i2/iter1/model/model.safetensors i1/iter1/model/model.safetensors 1e-6
run2 "$spin" iterate iconfig.yaml --output_dir=i2 --per_device_train_batch_size=2 >i3.log 2>&1
ok "iterate: a rerun on 2 ranks skips every stage" [ "$(grep -c ' done (' i3.log)" = 13 ]

# a command that is not distributed would write its files once per rank: refused
err "convert under 2 ranks refused" "spin convert: runs in one process" \
    run2 "$spin" convert --input-dir g1 --output-dir conv
ok "convert under 2 ranks: nothing written" [ ! -e conv ]

echo "test_cli_mpi: $fails failures"
[ $fails = 0 ]
