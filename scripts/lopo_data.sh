#!/usr/bin/env bash
# Cut the leave-one-person-out data: tight + context crops of every labelled source in ../shared/data.
#
#   scripts/lopo_data.sh [--size 160] [--context-scale 2.7] [--work /tmp/edge-liveness-lopo] [--synth]
#
# --synth also cuts synth_* (and synthcrops_*) folders: synthetic screen recaptures (scripts/recapture_synth.py) of every real
# person's frames, labelled replay attacks of that same person, for the +synth recipes; the LOPO never judges
# them and never sets a threshold on them (converters/lopo/recipes.py).
#
# frames_* folders come from full frames (videos, NUAA, photos): their context crop is real.
# crops_* folders come from the repositories' tight face crops: their "context" is only the crop's
# own border replicated, so converters/lopo/run.py uses them for the tight-crop recipe only.
# td_selfies (a "Training Data" watermark runs across its videos) goes to its own folder, so it can
# be kept out of training and reported separately.
set -euo pipefail
SIZE=160
SCALE=2.7
WORK=/tmp/edge-liveness-lopo
SYNTH=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --size) SIZE=$2; shift 2 ;;
    --context-scale) SCALE=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --synth) SYNTH=1; shift ;;
    *) echo "unknown option $1 (use --size N --context-scale S --work DIR --synth)" >&2; exit 2 ;;
  esac
done
REPO=$(cd "$(dirname "$0")/.." && pwd)
EL="$REPO/.venv/bin/edge-liveness"
DATA=${EDGE_LIVENESS_SHARED_DATA:-$REPO/../shared/data}
[[ -d $DATA/liveness ]] || { echo "missing $DATA/liveness: put the shared data beside the repo or set EDGE_LIVENESS_SHARED_DATA" >&2; exit 2; }
C=$WORK/crops${SIZE}_ctx${SCALE}
mkdir -p "$C"
X() {  # X NAME SRC ARGS...: one extract, skipped when done before
  local name=$1 src=$2; shift 2
  local mark="$C/.done_$(echo "$name $src $*" | md5sum | cut -c1-12)"
  [[ -f $mark ]] && return 0
  echo "extract $name <- $src $*" >&2
  "$EL" dataset extract "$src" --out "$C/$name" --size "$SIZE" --context-scale "$SCALE" "$@" >/dev/null
  touch "$mark"
}
L=$DATA/liveness
V=$DATA/video
# full frames: context is real
X frames_nuaa "$L/nuaa/live" --label live
X frames_nuaa "$L/nuaa/spoof" --label spoof --attack-type print
X frames_tranvanluyt "$V/tranvanluyt_real.mp4" --label live --subject tranvanluyt --every 3
X frames_tranvanluyt "$V/tranvanluyt_fake_screen_replay.mp4" --label spoof --subject tranvanluyt --attack-type replay --every 3
X frames_apfol "$V/apfol_real2.webm" --label live --subject apfol --every 3
X frames_apfol "$V/apfol_fake2.webm" --label spoof --subject apfol --attack-type replay --every 3
# zubair's full recording is left out: in his "fake" video the live man stands beside the phone and is the largest
# face, so 14 of 14 "spoof" crops show the live person (checked by eye), not the replay (his full-view cut below is used).
X frames_lestari "$V/lestari_real.mp4" --label live --subject lestari
X frames_lestari "$V/lestari_fake_phone_replay.mp4" --label spoof --subject lestari --attack-type replay
# full-view replays (issue 26): the same replay videos cut to the screen area, no bezel or hand in view
# (scripts/fullview_replays.py); zubair's real video joins with them: in his full-view cut only the
# phone's face remains, so his replay is a real attack presentation there
FV=${EDGE_LIVENESS_FULLVIEW:-$HOME/.cache/edge-liveness/fullview}
"$REPO/.venv/bin/python" "$REPO/scripts/fullview_replays.py" --out "$FV" >/dev/null
X frames_fullview_tranvanluyt "$FV/tranvanluyt_fake_screen_replay_fullview.mp4" --label spoof --subject tranvanluyt --attack-type replay --every 3
X frames_fullview_apfol "$FV/apfol_fake2_fullview.mp4" --label spoof --subject apfol --attack-type replay --every 3
X frames_fullview_lestari "$FV/lestari_fake_phone_replay_fullview.mp4" --label spoof --subject lestari --attack-type replay
X frames_fullview_zubair "$FV/zubair_fake_phone_replay_fullview.mp4" --label spoof --subject zubair --attack-type replay
X frames_zubair "$V/zubair_real.mov" --label live --subject zubair --every 3
X frames_saikan45 "$V/saikan45_backlit_man_1.avi" --label live --subject saikan45 --every 3
X frames_saikan45 "$V/saikan45_backlit_man_2.avi" --label live --subject saikan45 --every 3
X frames_td_real "$L/real_people/td_real" --label live --every 10
X frames_zju "$DATA/blink/zju" --label live --every 10
X watermarked_td_selfies "$L/real_people/td_selfies" --label live --every 10
# tight repository crops: tight view only (lestari's crops are the same man as his videos: kept apart by subject name)
for p in tranvanluyt apfol; do
  X crops_$p "$L/selfie_replay/$p/real" --label live --subject crops_$p
  X crops_$p "$L/selfie_replay/$p/fake" --label spoof --subject crops_$p --attack-type replay
done
for p in trickyf0x balveer vishal krzysiek wolfhuo jtboing lestari dsourav shubhamlala; do
  X crops_$p "$L/selfie_replay_more/$p/real" --label live --subject crops_$p
  X crops_$p "$L/selfie_replay_more/$p/fake" --label spoof --subject crops_$p --attack-type replay
done
if [[ $SYNTH == 1 ]]; then
  # synthetic recaptures of real people only (never of an attack recording): one simulated screen and camera
  # per recording, the screen filling the view or with its bezel (and a hand) in view
  SY=${EDGE_LIVENESS_SYNTH:-$HOME/.cache/edge-liveness/recapture}
  S() {  # S KIND NAME SRC ARGS...: synthesise SRC into $SY/NAME (skips what exists), then cut it as KIND_NAME replay attacks
    local kind=$1 name=$2 src=$3; shift 3
    "$REPO/.venv/bin/python" "$REPO/scripts/recapture_synth.py" "$src" --out "$SY/$name" --framing both "$@" >&2
    X "${kind}_$name" "$SY/$name" --label spoof --attack-type replay
  }
  S synth td_real "$L/real_people/td_real" --every 10
  S synth zju "$DATA/blink/zju" --every 10
  S synth nuaa "$L/nuaa/live" --limit 300
  S synth tranvanluyt "$V/tranvanluyt_real.mp4" --subject tranvanluyt --every 6
  S synth apfol "$V/apfol_real2.webm" --subject apfol --every 6
  S synth lestari "$V/lestari_real.mp4" --subject lestari --every 2
  S synth zubair "$V/zubair_real.mov" --subject zubair --every 6
  S synth saikan45 "$V/saikan45_backlit_man_1.avi" --subject saikan45 --every 6
  # recaptures of the repositories' tight crops are tight-view only (synthcrops_*): around such a crop the
  # context view is black padding, and a context head must not learn that black borders mean an attack
  for p in tranvanluyt apfol; do S synthcrops crops_$p "$L/selfie_replay/$p/real" --subject crops_$p; done
  for p in trickyf0x balveer vishal krzysiek wolfhuo jtboing lestari dsourav shubhamlala; do
    S synthcrops crops_$p "$L/selfie_replay_more/$p/real" --subject crops_$p
  done
fi
echo "done: $C" >&2
