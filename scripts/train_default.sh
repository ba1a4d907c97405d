#!/usr/bin/env bash
# The recipe of the shipped default model (config `tiny`, 256x512, trained on synthetic data only;
# real datasets are research-use: evaluation, never training). See docs/training.md.
#
#   scripts/train_default.sh              # generate data (if missing), train (resumes), evaluate
#   scripts/train_default.sh --estimate   # data + 6 timed steps -> projected wall time, then stop
#
# Every knob is an environment variable (defaults below). Seeds: train 1, val 2, test 3 give
# disjoint worlds (world seeds are SeedSequence([seed, world_index])).
#
# Measured with exactly these settings on the shared 2-core CPU box (torch 2.13, batch 8, 256x512,
# mode full, LoRA dropout 0, 2 threads, OMP_WAIT_POLICY=PASSIVE, 1 loader worker) while other jobs
# ran (load average ~6): median 5.7 s/step (`--estimate`). Default plan: 4000 frames x 16 epochs /
# batch 8 = 8000 steps -> ~12.7 h, plus 16 validations of 200 frames (~80 s each) -> ~13 h.
# Rendering 4700 frames: ~25 min with 2 workers, ~1.2 GB on disk.
set -euo pipefail

ROOT=${ROOT:-runs/default}            # everything goes under here
DATA=${DATA:-$ROOT/data}
RUN=${RUN:-$ROOT/tiny_synth}
SIZE=${SIZE:-256x512}
N_TRAIN=${N_TRAIN:-4000}
N_VAL=${N_VAL:-200}
N_TEST=${N_TEST:-500}
EPOCHS=${EPOCHS:-16}
BATCH=${BATCH:-8}
LR=${LR:-1e-3}
WARMUP=${WARMUP:-500}
THREADS=${THREADS:-2}                 # use 1 when the machine is shared with other jobs
WORKERS=${WORKERS:-1}                 # data-loader processes (augmentation runs there)
SYNTH_WORKERS=${SYNTH_WORKERS:-2}
# Idle OpenMP threads must sleep: with the default spin-wait, 2 threads on a busy 2-core box
# ran 5-10x slower than 1 thread (measured); PASSIVE brings them back in line.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

mkdir -p "$DATA"
gen() {  # name, frames, seed
    if [[ -f "$DATA/$1/dataset.json" ]]; then
        echo "have $DATA/$1"
    else
        tadp synth dataset --out "$DATA/$1" --n "$2" --seed "$3" --size "$SIZE" --frames-per-world 4 \
            --workers "$SYNTH_WORKERS"
    fi
}
gen synth_train "$N_TRAIN" 1
gen synth_val "$N_VAL" 2

# first_task_stage=1: stage 0 shared by every task, as the shipped model (docs/runtime.md).
TRAIN_ARGS=(--config tiny --input-size "$SIZE" --mode full --set adapter.dropout=0.0
            --set adapter.first_task_stage=1
            --train "$DATA/synth_train" --val "$DATA/synth_val"
            --batch-size "$BATCH" --lr "$LR" --warmup-steps "$WARMUP" --min-lr-ratio 0.01
            --weight-decay 0.05 --grad-clip 1.0 --seed 0 --workers "$WORKERS" --threads "$THREADS")

if [[ "${1:-}" == "--estimate" ]]; then
    est="$ROOT/estimate"
    tadp train "${TRAIN_ARGS[@]}" --max-steps 6 --warmup-steps 1 --val-every 0 --no-progress \
        --out "$est" --overwrite
    python - "$est/history.json" "$N_TRAIN" "$BATCH" "$EPOCHS" <<'EOF'
import json, statistics, sys
steps = json.load(open(sys.argv[1]))["steps"][1:]  # the first step pays for warm-up
s = statistics.median(r["seconds"] for r in steps)
n = int(sys.argv[2]) // int(sys.argv[3]) * int(sys.argv[4])
print(f"median {s:.2f} s/step (optimizer step only; data loading overlaps in the worker)")
print(f"{n} steps -> {n * s / 3600:.1f} h of training, plus validation")
EOF
    exit 0
fi

# A long run: resume when a checkpoint exists (the same command continues where it stopped).
RESUME=()
[[ -f "$RUN/checkpoints/last/state.json" ]] && RESUME=(--resume)
tadp train "${TRAIN_ARGS[@]}" --epochs "$EPOCHS" --checkpoint-every 250 --out "$RUN" "${RESUME[@]}"

gen synth_test "$N_TEST" 3
tadp eval --model "$RUN" --data "$DATA/synth_test" --threads "$THREADS" --out "$RUN/eval_synth_test"
echo "to ship it: cp $RUN/model.safetensors $RUN/model.yaml perception/assets/default/"
