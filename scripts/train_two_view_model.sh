#!/usr/bin/env bash
# Reproduce the two-view liveness model and its leave-one-person-out numbers:
#   models/liveness_two_view_int8.tflite + .json, benchmarks/results/liveness_lopo_<size>px_*.json + .png
#
#   scripts/train_two_view_model.sh [--size 128] [--work /tmp/edge-liveness-lopo] [--install]
#
# About 15 minutes on 2 busy CPU cores: cutting both views of every shared source (scripts/lopo_data.sh),
# frozen ImageNet MobileNetV2 features of each crop (once, cached), a logistic head per fold
# (converters/lopo/run.py), then the final heads and the int8 conversion (converters/lopo/two_view.py).
# The shipped one-view model is scored too when --size is its input size (160).
set -euo pipefail
SIZE=128
WORK=/tmp/edge-liveness-lopo
INSTALL=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --size) SIZE=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --install) INSTALL=1; shift ;;
    *) echo "unknown option $1 (use --size N --work DIR --install)" >&2; exit 2 ;;
  esac
done
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY="$REPO/.venv/bin/python"
DATA=${EDGE_LIVENESS_SHARED_DATA:-$REPO/../shared/data}
WEIGHTS=$DATA/models/imagenet_mobilenet_v2_int8_tflite_coral/tf2_mobilenet_v2_1.0_224_ptq.tflite
[[ -f $WEIGHTS ]] || { echo "missing $WEIGHTS (the Coral ImageNet MobileNetV2, Apache-2.0): put the shared data beside the repo" >&2; exit 2; }
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}  # the heads are small: BLAS threads only contend
cd "$REPO"
"$REPO/scripts/lopo_data.sh" --size "$SIZE" --context-scale 2.7 --work "$WORK"
ROOT=$WORK/crops${SIZE}_ctx2.7
OUT=$WORK/results$SIZE
"$PY" -m converters.lopo "$ROOT" --out "$OUT" --weights "$WEIGHTS" --name "liveness_lopo_${SIZE}px"
"$PY" -m converters.lopo.two_view "$ROOT" -o "$OUT/liveness_two_view_int8.tflite" --weights "$WEIGHTS"
if [[ $INSTALL == 1 ]]; then
  cp "$OUT"/liveness_lopo_${SIZE}px* "$REPO/benchmarks/results/"
  cp "$OUT/liveness_two_view_int8.tflite" "$OUT/liveness_two_view_int8.json" "$REPO/models/"
  echo "installed models/liveness_two_view_int8.tflite + .json and benchmarks/results/liveness_lopo_*" >&2
fi
