"""The network the Pi 4 projection is anchored on, as a TFLite file the device runtime can time.

The Pi 4 side of the ratio is a published figure: XNNPACK's FP32 MobileNet v2 1.0X on a Raspberry Pi 4
(BCM2711, 4 threads), 44 ms (github.com/google/XNNPACK README, "Raspberry Pi" table). The x86 side has
to be the same network timed on this machine, and timed in the same minutes as the stages it scales:
on a shared VM one hour's single-thread speed differs from the next by up to 2x (the same 224 px
network measured 3.6 to 7.0 ms in different hours: benchmarks/README.md), so a ratio taken in one hour
and stage costs taken in another move the projection by that much. `edge-liveness bench` therefore builds this file (in a
child process: TensorFlow never loads into the bench) and times it between its passes.

    python -m converters.reports.pi_reference --out FILE    # writes FILE, prints its path

Keras MobileNetV2 alpha 1.0, 224 px, float32, untrained weights (speed does not depend on them),
converted to TFLite as it comes. TensorFlow is imported inside functions only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from converters.reports.seed_baseline import tensorflow_child, tensorflow_here

SIZE = 224


def write_reference(path: Path) -> Path:
    """MobileNetV2 1.0 224 float32 as TFLite at ``path``."""
    import tensorflow as tf

    net = tf.keras.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), alpha=1.0, weights=None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(net).convert())
    return path


def make_in_subprocess(path: Path) -> Path | str:
    """What the bench calls: the file at ``path``, or one line saying why there is none."""
    proc = tensorflow_child("converters.reports.pi_reference", "--out", str(path))
    if isinstance(proc, str):
        return proc
    return path if path.is_file() else f"converters.reports.pi_reference wrote no {path.name}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converters.reports.pi_reference", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="the .tflite file to write")
    args = ap.parse_args(argv)
    if not tensorflow_here():
        return 3
    try:
        print(write_reference(Path(args.out)))
    except OSError as e:
        print(f"error: --out {args.out}: {e.strerror or e}: give a writable path", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
