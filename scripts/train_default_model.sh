#!/usr/bin/env bash
# Reproduce the shipped liveness model: models/liveness_mnv2_int8.tflite + .json
#
#   scripts/train_default_model.sh [--size 160] [--seed 0] [--work /tmp/edge-liveness-train] [--install]
#
# Needs the workstation extra (TensorFlow) in .venv, the fetched face models
# (`edge-liveness models fetch`) and the team's face data in ../shared/data (or $EDGE_LIVENESS_SHARED_DATA).
# Held out from training, threshold choice and calibration (test only):
#   NUAA subjects 0008-0010; people tranvanluyt (crops AND videos: same recordings), jtboing, wolfhuo, vishal.
# Validation (early stopping, threshold): NUAA 0006, 0007 and balveer. apfol is trained on, never validated
# on (its fake folder shows a second person: identity leaks into the label).
set -euo pipefail

SIZE=160
SEED=0
WORK=/tmp/edge-liveness-train
INSTALL=0
REUSE=0
EPOCHS_HEAD=2
EPOCHS=6
while [[ $# -gt 0 ]]; do
  case "$1" in
    --size) SIZE=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --epochs) EPOCHS=$2; shift 2 ;;
    --install) INSTALL=1; shift ;;
    --reuse) REUSE=1; shift ;;  # keep an already trained $RUN/model.keras
    *) echo "unknown option $1 (use --size N --seed N --work DIR --epochs N --reuse --install)" >&2; exit 2 ;;
  esac
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
PY="$REPO/.venv/bin/python"
EL="$REPO/.venv/bin/edge-liveness"
DATA=${EDGE_LIVENESS_SHARED_DATA:-$REPO/../shared/data}
WEIGHTS=$DATA/models/imagenet_mobilenet_v2_int8_tflite_coral/tf2_mobilenet_v2_1.0_224_ptq.tflite
[[ -f $WEIGHTS ]] || { echo "missing $WEIGHTS (the Coral ImageNet MobileNetV2, Apache-2.0): put the shared data beside the repo" >&2; exit 2; }
TEST_SUBJECTS=0008,0009,0010,tranvanluyt,jtboing,wolfhuo,vishal
VAL_SUBJECTS=0006,0007,balveer
CROPS=$WORK/crops$SIZE
SETS=$WORK/sets$SIZE
RUN=$WORK/run${SIZE}_s$SEED
OUT=$RUN/liveness_mnv2_int8.tflite

# 1. aligned face crops, cut by the daemon's own detector + mesh + align_crop at the model's input size
if [[ ! -f $CROPS/.done ]]; then
  rm -rf "$CROPS"
  X() { "$EL" dataset extract "$@" --size "$SIZE" >/dev/null; }
  X "$DATA/liveness/nuaa/live" --label live --out "$CROPS/nuaa"
  X "$DATA/liveness/nuaa/spoof" --label spoof --out "$CROPS/nuaa" --attack-type print
  for p in tranvanluyt apfol; do
    X "$DATA/liveness/selfie_replay/$p/real" --label live --out "$CROPS/selfie_$p" --subject $p
    X "$DATA/liveness/selfie_replay/$p/fake" --label spoof --out "$CROPS/selfie_$p" --subject $p --attack-type replay
  done
  for p in trickyf0x balveer vishal krzysiek wolfhuo jtboing; do
    X "$DATA/liveness/selfie_replay_more/$p/real" --label live --out "$CROPS/more_$p" --subject $p
    X "$DATA/liveness/selfie_replay_more/$p/fake" --label spoof --out "$CROPS/more_$p" --subject $p --attack-type replay
  done
  V=$DATA/video
  X "$V/tranvanluyt_real.mp4" --label live --out "$CROPS/video_tranvanluyt" --subject tranvanluyt --every 3
  X "$V/tranvanluyt_fake_screen_replay.mp4" --label spoof --out "$CROPS/video_tranvanluyt" --subject tranvanluyt --attack-type replay --every 3
  X "$V/apfol_real2.webm" --label live --out "$CROPS/video_apfol" --subject apfol --every 3
  X "$V/apfol_fake2.webm" --label spoof --out "$CROPS/video_apfol" --subject apfol --attack-type replay --every 3
  X "$V/zubair_real.mov" --label live --out "$CROPS/video_zubair" --subject zubair --every 2
  X "$V/zubair_fake_phone_replay.mp4" --label spoof --out "$CROPS/video_zubair" --subject zubair --attack-type replay --every 2
  touch "$CROPS/.done"
fi

# 2. calibration (train + validation people), validation, and test folders
if [[ ! -f $SETS/.done ]]; then
  rm -rf "$SETS"
  "$PY" - "$CROPS" "$SETS" "$TEST_SUBJECTS" "$VAL_SUBJECTS" <<'EOF'
import sys
from pathlib import Path
from converters.data.dataset import copy_subset
crops, sets = Path(sys.argv[1]), Path(sys.argv[2])
test, val = set(sys.argv[3].split(",")), set(sys.argv[4].split(","))
dirs = sorted(p for p in crops.iterdir() if p.is_dir())
copy_subset(dirs, sets / "calib", exclude_subjects=test)
copy_subset(dirs, sets / "val", only_subjects=val)
copy_subset([crops / "nuaa"], sets / "test_nuaa", only_subjects={"0008", "0009", "0010"})
copy_subset([crops / d for d in ("video_tranvanluyt", "more_jtboing", "more_wolfhuo", "more_vishal")], sets / "test_replay", only_subjects=test)
EOF
  touch "$SETS/.done"
fi

# 3. train (ImageNet weights recovered from Coral's int8 MobileNetV2)
[[ $REUSE == 1 && -f $RUN/model.keras ]] || "$EL" train "$CROPS" --out "$RUN" --size "$SIZE" --seed "$SEED" --weights "$WEIGHTS" \
  --exclude-subjects "$TEST_SUBJECTS" --val-subjects "$VAL_SUBJECTS" --epochs-head "$EPOCHS_HEAD" --epochs "$EPOCHS"

# 4. full-integer int8, threshold on the int8 model's own validation scores; float vs int8 on unseen NUAA
set +e
"$EL" convert "$RUN/model.keras" --quantize int8 --calibration "$SETS/calib" --threshold-data "$SETS/val" \
  -o "$OUT" --eval "$SETS/test_nuaa" --max-drop 0.01 --seed "$SEED" > "$RUN/convert_eval.json"
RC=$?
set -e
[[ $RC -le 1 ]] || exit $RC
"$EL" convert "$RUN/model.keras" --quantize none --calibration "$SETS/calib" --threshold-data "$SETS/val" \
  -o "$RUN/liveness_mnv2_float.tflite" > /dev/null

# 5. held-out report: unseen NUAA subjects, unseen people's replays, the daemon's test videos
VID="--video $DATA/video/tranvanluyt_real.mp4:live --video $DATA/video/tranvanluyt_fake_screen_replay.mp4:spoof"
"$PY" -m converters.reports.report "$OUT" --crops "$CROPS" --out "$RUN/report_int8.json" --plot "$RUN/roc_heldout_int8.png" $VID > /dev/null
"$PY" -m converters.reports.report "$RUN/model.keras" --crops "$CROPS" --out "$RUN/report_float.json" > /dev/null
echo "int8 vs float ACER on unseen NUAA: exit $RC (1 = int8 lost more than 0.01); reports in $RUN" >&2

if [[ $INSTALL == 1 ]]; then
  [[ $RC == 0 ]] || { echo "not installing: int8 lost too much ACER" >&2; exit 1; }
  cp "$OUT" "$REPO/models/liveness_mnv2_int8.tflite"
  cp "${OUT%.tflite}.json" "$REPO/models/liveness_mnv2_int8.json"
  echo "installed models/liveness_mnv2_int8.tflite + .json" >&2
fi
