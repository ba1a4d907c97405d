#!/usr/bin/env bash
# The recipe of the shipped default model, exactly as it was run: config `tiny` at 256x512,
# trained on our synthetic world only (real datasets are research-use: evaluation, never
# training). Fourteen runs, each continuing the previous model with --init. README "Default model"
# has the figures and the wall time of each run on the 2-core CPU box (about 16 h in total).
#
#   scripts/train_default.sh              # data (if missing), then every run not yet finished
#   scripts/train_default.sh --estimate   # data + 6 timed steps -> projected wall time, then stop
#
# It can be stopped at any time: run it again and it skips the finished runs and resumes the
# current one from its last checkpoint. Every knob is an environment variable (defaults below).
# The train and validation worlds are seed-disjoint (world seeds are SeedSequence([seed, index])).
set -euo pipefail

ROOT=${ROOT:-runs/default}            # everything goes under here
DATA=${DATA:-$ROOT/data}
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
        tadp synth dataset --out "$DATA/$1" --n "$2" --seed "$3" --size 256x512 --frames-per-world 4 \
            --depth npy --workers "$SYNTH_WORKERS"
    fi
}
gen train 3000 1001
gen val 300 2002
gen train2 12000 3003  # r10's: 3,000 new worlds (r9 had seen data/train's 750 worlds 31 times)
gen train3 12000 5005  # r14's: 3,000 more new worlds (r10-r13 had seen train2 7.1 times)
gen dev 300 4004       # r14's validation during training, so that data/val is only measured on

COMMON=(--train "$DATA/train" --val "$DATA/val" --max-val-samples 100 --batch-size 4
        --weight-decay 0.05 --grad-clip 1.0 --workers "$WORKERS" --threads "$THREADS"
        --checkpoint-every 100 --no-progress)
FIRST=(--config tiny --mode full --set adapter.dropout=0.0)

if [[ "${1:-}" == "--estimate" ]]; then
    est="$ROOT/estimate"
    tadp train "${FIRST[@]}" --set adapter.first_task_stage=1 "${COMMON[@]}" --max-steps 6 \
        --warmup-steps 1 --val-every 0 --out "$est" --overwrite
    python - "$est/history.json" <<'EOF'
import json, statistics, sys
steps = json.load(open(sys.argv[1]))["steps"][1:]  # the first step pays for warm-up
s = statistics.median(r["seconds"] for r in steps)
n = 800 + 1200 + 900 + 1600 + 5000 + 1250 + 2000 + 3500 + 7000 + 6637 + 5699 + 5000 + 4000 + 5000
print(f"median {s:.2f} s/step (optimizer step only; data loading overlaps in the worker)")
print(f"{n} steps -> {n * s / 3600:.1f} h of training, plus validation")
EOF
    exit 0
fi

step_of() {  # the step of RUN's last checkpoint, 0 when it has none
    python -c 'import json, sys; print(json.load(open(sys.argv[1]))["step"])' \
        "$1/checkpoints/last/state.json" 2>/dev/null || echo 0
}

run() {  # name, step it was paused at (0: run to its end), then the run's own flags.
          # Skips a finished run and resumes an interrupted one.
    local stop=$2 out=$ROOT/$1 at
    shift 2
    at=$(step_of "$out")
    if { [[ "$stop" -eq 0 ]] && [[ -f "$out/model.safetensors" ]]; } ||
       { [[ "$stop" -gt 0 ]] && [[ "$at" -ge "$stop" ]]; }; then
        echo "have $out"
        return
    fi
    local extra=()
    [[ "$stop" -gt 0 ]] && extra+=(--stop-at "$stop")
    [[ "$at" -gt 0 ]] && extra+=(--resume)
    tadp train "${COMMON[@]}" "$@" --out "$out" "${extra[@]}"  # a run's own flags win
}

# r1 was stopped after its step-800 checkpoint (a 1,000-step schedule); r2 continues from there.
run r1 800 "${FIRST[@]}" --max-steps 1000 --lr 1e-3 --warmup-steps 80 --min-lr-ratio 0.01 --seed 0
run r2 0 --init "$ROOT/r1/checkpoints/last" --max-steps 1200 --lr 4e-4 --warmup-steps 60 \
    --min-lr-ratio 0.02 --seed 1
run r3 0 --init "$ROOT/r2/model.safetensors" --max-steps 900 --lr 3e-4 --warmup-steps 50 \
    --min-lr-ratio 0.02 --seed 2 --val-every 0
# r4 switches to a shared stage 0 (every task ~30 % cheaper at run time, docs/runtime.md).
run r4 0 --init "$ROOT/r3/model.safetensors" --set adapter.first_task_stage=1 --max-steps 1600 \
    --lr 3e-4 --warmup-steps 50 --min-lr-ratio 0.02 --seed 3 --val-every 0
run r5 0 --init "$ROOT/r4/model.safetensors" --max-steps 5000 --lr 4e-4 --warmup-steps 100 \
    --min-lr-ratio 0.02 --seed 4 --val-every 0
# r6 was paused at step 1,250 of its 5,000-step schedule: the machine had become too slow to
# finish it. (The shipped model learned depth in the recorded training focal length from r6 on,
# the code of that day; with this code every run does, since r1 records it.)
run r6 1250 --init "$ROOT/r5/model.safetensors" --max-steps 5000 --lr 4e-4 --warmup-steps 100 \
    --min-lr-ratio 0.02 --seed 5 --val-every 0
run r7 0 --init "$ROOT/r6/checkpoints/last" --max-steps 2000 --lr 3e-4 --warmup-steps 50 \
    --min-lr-ratio 0.02 --seed 6 --val-every 0
# r8 doubles depth's loss weight: depth is the one task short of its target.
run r8 0 --init "$ROOT/r7/model.safetensors" --set tasks.depth.loss_weight=2.0 --max-steps 3500 \
    --lr 3e-4 --warmup-steps 50 --min-lr-ratio 0.02 --seed 7 --val-every 0

# r9 triples it on a longer schedule, paused at step 7,000 of 8,000 to fit a working session
# (the learning rate is down to 6 % of its peak by then); its checkpoint is the shipped model.
run r9 7000 --init "$ROOT/r8/model.safetensors" --set tasks.depth.loss_weight=3.0 --max-steps 8000 \
    --lr 3e-4 --warmup-steps 100 --min-lr-ratio 0.02 --seed 8 --val-every 0
if [[ ! -f "$ROOT/r9/model.safetensors" ]]; then  # a paused run has a checkpoint, not a model file
    tadp export-model "$ROOT/r9/checkpoints/last" --out "$ROOT/r9/model.safetensors"
fi

# r10 quadruples it, on 12,000 frames of new worlds, with bfloat16 autocast: 1.6x faster per
# step on CPUs with AVX512-BF16 or AMX (Zen 4), several times slower on others (tadp train warns
# there): run the script with BF16= to train r10 in float32 instead. It was paused (SIGTERM) at
# step 6,637 of 7,500 to fit a working session, its learning rate down to 5 % of its peak.
BF16=${BF16---bf16}
# shellcheck disable=SC2086  # an empty $BF16 is no argument
run r10 6637 --init "$ROOT/r9/model.safetensors" --set tasks.depth.loss_weight=4.0 \
    --train "$DATA/train2" $BF16 --max-steps 7500 --lr 3e-4 --warmup-steps 100 \
    --min-lr-ratio 0.02 --seed 9 --val-every 0
if [[ ! -f "$ROOT/r10/model.safetensors" ]]; then
    tadp export-model "$ROOT/r10/checkpoints/last" --out "$ROOT/r10/model.safetensors"
fi

# r11 gives depth its two new settings (today's tiny config has them, so a re-run has them from
# r1 on): the ground-plane height rule (labels at the training cameras' mean mounting height,
# scaled back by the camera's own) and 4x4 sub-pixel upsampling (the output layer grows 16
# zero channels, so r11 starts exactly where r10 ended). Paused (SIGTERM) at step 5,699 of
# 6,500 to fit a working session, its learning rate down to 6 % of its peak.
# shellcheck disable=SC2086
run r11 5699 --init "$ROOT/r10/model.safetensors" --set tasks.depth.loss_weight=4.0 \
    --set tasks.depth.height_exponent=1.0 --set tasks.depth.subpixel=4 --train "$DATA/train2" \
    $BF16 --max-steps 6500 --lr 3e-4 --warmup-steps 100 --min-lr-ratio 0.02 --seed 11 --val-every 0
if [[ ! -f "$ROOT/r11/model.safetensors" ]]; then
    tadp export-model "$ROOT/r11/checkpoints/last" --out "$ROOT/r11/model.safetensors"
fi

# r12 and r13 add depth's gradient-matching loss term (grad_loss_weight 0.5, in today's tiny
# config) and run two full schedules at peak learning rate from r11.
# shellcheck disable=SC2086
run r12 0 --init "$ROOT/r11/model.safetensors" --set tasks.depth.loss_weight=4.0 \
    --set tasks.depth.grad_loss_weight=0.5 --train "$DATA/train2" $BF16 --max-steps 5000 --lr 3e-4 \
    --warmup-steps 100 --min-lr-ratio 0.02 --seed 12 --val-every 0
# shellcheck disable=SC2086
run r13 0 --init "$ROOT/r12/model.safetensors" --set tasks.depth.loss_weight=4.0 \
    --set tasks.depth.grad_loss_weight=0.5 --train "$DATA/train2" $BF16 --max-steps 4000 --lr 3e-4 \
    --warmup-steps 100 --min-lr-ratio 0.02 --seed 13 --val-every 0

# r14 trains on 3,000 worlds none of r1-r13 saw (data/train3), depth's loss weight 6 instead of 4,
# a lower peak learning rate (2e-4) for a run that starts from a converged model, and validates
# on data/dev (seed 4004) instead of data/val.
# shellcheck disable=SC2086
run r14 0 --init "$ROOT/r13/model.safetensors" --set tasks.depth.loss_weight=6.0 \
    --set tasks.depth.grad_loss_weight=0.5 --train "$DATA/train3" --val "$DATA/dev" $BF16 \
    --max-steps 5000 --lr 2e-4 --warmup-steps 100 --min-lr-ratio 0.02 --seed 14 --val-every 0

tadp eval --model "$ROOT/r14/model.safetensors" --data "$DATA/val" --threads "$THREADS" --out "$ROOT/r14/eval_val"
echo "to ship it: cp $ROOT/r14/model.safetensors $ROOT/r14/model.yaml perception/assets/default/"
