#!/usr/bin/env bash
# Re-make benchmarks/results/blinks_*.json with the shipped blink model:
#   zju_heldout  the ZJU people the shipped model never saw (named in models/blink_mlp.json)
#   zju_all      all 48 ZJU clips (9 of the 12 people were trained on: not a generalisation figure)
#   shared_videos  the recordings counted by eye under tests/data/blinks (docs/blinks.md)
# The leave-people-out figures over all 12 people come from `blinks train` (its manifest's "cv").
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${EDGE_LIVENESS_SHARED_DATA:-../shared/data}
BIN=${EDGE_LIVENESS_BIN:-.venv/bin/edge-liveness}
OUT=benchmarks/results
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/heldout" "$tmp/all"
held=$(python3 -c "import json;print(' '.join(json.load(open('models/blink_mlp.json'))['held_out_people']))")
for f in "$DATA"/blink/zju/*/*; do
  ln -s "$(readlink -f "$f")" "$tmp/all/"
  for p in $held; do case "$(basename "$f")" in "$p"_*) ln -s "$(readlink -f "$f")" "$tmp/heldout/";; esac; done
done
"$BIN" blinks score "$tmp/heldout" --json --out "$OUT/blinks_zju_heldout.json" >/dev/null
"$BIN" blinks score "$tmp/all" --json --out "$OUT/blinks_zju_all.json" >/dev/null
"$BIN" blinks score tests/data/blinks --videos "$DATA" --json --out "$OUT/blinks_shared_videos.json" >/dev/null
for f in "$OUT"/blinks_zju_heldout.json "$OUT"/blinks_zju_all.json "$OUT"/blinks_shared_videos.json; do
  python3 - "$f" <<'PY'
import json, sys
p = sys.argv[1]; d = json.load(open(p)); d["dir"] = d["dir"].split("/")[-1] if d["dir"].startswith("/tmp") else d["dir"]
d["command"] = "bash scripts/blink_results.sh"; json.dump(d, open(p, "w"), indent=1); print(p, d["total"])
PY
done
