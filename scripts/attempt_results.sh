#!/usr/bin/env bash
# Re-make benchmarks/results/attempts_*.json: `edge-liveness evaluate` on every shared recording set,
# attempt by attempt, with the shipped models and the default policy (docs/decision.md).
# Arguments: only these result names (e.g. `stills krzysiek`); none = all.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${EDGE_LIVENESS_SHARED_DATA:-../shared/data}
BIN=${EDGE_LIVENESS_BIN:-.venv/bin/edge-liveness}
PY=${EDGE_LIVENESS_PY:-.venv/bin/python}
MODEL=models/liveness_two_view_int8.tflite  # the default (edge_liveness/liveness/model.py DEFAULT_MODEL_NAME)
OUT=benchmarks/results
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$PY" scripts/make_still_videos.py "$tmp/stills" --shared "$DATA"
"$PY" scripts/make_still_videos.py "$tmp/tilted" --shared "$DATA" --tilted
"$PY" scripts/fullview_replays.py --out "$tmp/fullview" --shared "$DATA" >/dev/null
only=" $* "
run() {  # name dir [mode]
  local name=$1 dir=$2 mode=${3:-blink}
  if [ "$only" != "  " ] && [[ "$only" != *" $name "* ]]; then return 0; fi
  "$BIN" evaluate "$MODEL" "$dir" --json --active "$mode" > "$OUT/attempts_${name}.json.tmp"
  mv "$OUT/attempts_${name}.json.tmp" "$OUT/attempts_${name}.json"
  echo "$OUT/attempts_${name}.json" >&2
}
run video "$DATA/video"
run td_real "$DATA/liveness/real_people/td_real"
run td_selfies "$DATA/liveness/real_people/td_selfies"
run krzysiek "$DATA/liveness/selfie_replay_more/krzysiek/real"
run stills "$tmp/stills"
run tilted "$tmp/tilted"
run fullview "$tmp/fullview"
for mode in blink_and_turn challenge; do
  run "video_$mode" "$DATA/video" "$mode"
  run "stills_$mode" "$tmp/stills" "$mode"
  run "tilted_$mode" "$tmp/tilted" "$mode"
done
