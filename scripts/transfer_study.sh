#!/usr/bin/env bash
# The transfer-learning study behind the README's "Transfer learning vs from scratch" table:
# the seed projects' experiments over seeds (full data), the scratch CNNs on the same machine,
# and the sweeps (20,000-image training subset). Each step is one `fmnist` command; rerunning a
# step skips what finished (sweeps) or trains again (--repeat). Steps run in the order given:
#
#   scripts/transfer_study.sh seeds scratch resize head depth recipe plot
#
# (seeds = frozen head480 finetune, scratch = cnn cnn_best; each can be run alone.)
#
# Outputs go under $OUT (default saved_models/transfer); the frozen rows share one feature cache.
set -euo pipefail
cd "$(dirname "$0")/.."
FMNIST=${FMNIST:-.venv/bin/fmnist}
OUT=${OUT:-saved_models/transfer}
WEIGHTS=${WEIGHTS:-../shared/weights/mobilenet_v2_imagenet_no_top.weights.h5}
[[ -f $WEIGHTS ]] || { echo "error: $WEIGHTS is missing (the shared ImageNet weights)" >&2; exit 3; }
W=(--set "model.weights=$(realpath "$WEIGHTS")")
O=(--set "output.dir=$OUT/runs" --set "output.log_dir=$OUT/logs"
   --set "output.cache_dir=$OUT/cache" --set output.update_best=false)
SUBSET=(--set data.train_limit=20000)

step() {  # bash's own `time` (no optional package): wall and CPU seconds of the step
  echo "== $1: $(date -u +%FT%TZ)"
  shift
  local TIMEFORMAT="   wall %R s, CPU %U+%S s"
  time "$@"
}

run_step() {
  case $1 in
    seeds) for s in frozen head480 finetune; do run_step "$s"; done ;;  # item 1, full data
    frozen)
      step frozen-nearest "$FMNIST" train configs/seeds/mobilenet_frozen_nearest.yaml "${W[@]}" "${O[@]}" --repeat 3
      step frozen-bilinear "$FMNIST" train configs/seeds/mobilenet_frozen_bilinear.yaml "${W[@]}" "${O[@]}" --repeat 3
      ;;
    head480) step head480 "$FMNIST" train configs/seeds/mobilenet_head480.yaml "${W[@]}" "${O[@]}" --repeat 6 ;;
    finetune)
      step finetune-block13 "$FMNIST" train configs/seeds/mobilenet_finetune_block13.yaml "${W[@]}" "${O[@]}" --repeat 3
      ;;
    scratch) for s in cnn cnn_best; do run_step "$s"; done ;;  # the scratch side, full data
    cnn) step cnn "$FMNIST" train configs/cnn.yaml "${O[@]}" --repeat 3 ;;
    cnn_best) step cnn-best "$FMNIST" train configs/cnn_best.yaml "${O[@]}" --repeat 3 ;;
    resize)  # frozen backbone: resize method x input size
      step resize "$FMNIST" sweep configs/seeds/mobilenet_frozen_bilinear.yaml "${W[@]}" "${O[@]}" "${SUBSET[@]}" \
        --grid model.resize_method=nearest,bilinear,bicubic,area \
        --grid model.input_size=32,64,96,128,160 --seeds 3
      ;;
    head)  # frozen backbone: head width x dropout
      step head "$FMNIST" sweep configs/seeds/mobilenet_head480.yaml "${W[@]}" "${O[@]}" "${SUBSET[@]}" \
        --grid model.head.units=0,128,480,1024 --grid model.head.dropout=0.0,0.3,0.5 --seeds 3
      ;;
    depth)  # stage 2: unfreeze depth x learning rate, 3 epochs
      step depth "$FMNIST" sweep configs/seeds/mobilenet_finetune_block13.yaml "${W[@]}" "${O[@]}" "${SUBSET[@]}" \
        --grid finetune.unfreeze_from=block_16,block_13,block_6,Conv1 \
        --grid finetune.learning_rate=0.00001,0.00003,0.0001 --seeds 3
      ;;
    recipe) step recipe "$FMNIST" train configs/mobilenet_best.yaml "${W[@]}" "${O[@]}" --repeat 3 ;;
    plot)  # every run under $OUT/runs: comparison.md/.csv and the accuracy-against-time plot
      step plot "$FMNIST" compare --root "$OUT/runs" --out "$OUT"
      ;;
    *)
      echo "error: unknown step $1 (seeds = frozen head480 finetune; scratch = cnn cnn_best;" \
        "resize, head, depth, recipe, plot)" >&2
      exit 2
      ;;
  esac
}

for name in "$@"; do run_step "$name"; done
