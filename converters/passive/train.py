"""`edge-liveness train`: fine-tune MobileNetV2 on aligned face crops (workstation, TensorFlow).

Recipe (see docs/training.md for the why):
1. split by subject/person/recording: no person has crops on both sides of train/validation;
2. phase 1: backbone frozen, head trained (Adam 1e-3);
3. phase 2: the top of the backbone unfrozen at a lower rate (Adam 1e-4), BatchNormalization kept
   frozen (Keras 3 would otherwise normalise with batch statistics and wreck the weights);
4. class weights, label smoothing (keeps sigmoid outputs off 0/1 so int8 keeps their ranking),
   early stopping on validation loss, the best weights of both phases kept;
5. writes an UNCOMPILED ``model.keras``, ``metrics.json`` and PNG plots into ``--out``.

TensorFlow is imported inside functions only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converters.measure import pad_metrics
from converters.data.crop_folders import CropSet, load_crops
from converters.data.dataset import DatasetError

log = logging.getLogger("converters.train")


@dataclass
class TrainConfig:
    size: int = 128
    alpha: float = 1.0
    weights: str = "imagenet"
    epochs_head: int = 3
    epochs: int = 8  # fine-tuning epochs (upper bound; early stopping)
    batch: int = 32
    lr_head: float = 1e-3
    lr_finetune: float = 1e-4
    fine_tune_from: int = 100  # backbone layer index from which layers train in phase 2
    label_smoothing: float = 0.1
    patience: int = 3
    seed: int = 0
    val_frac: float = 0.2
    augment: bool = True


def split_by_subject(data: CropSet, val_subjects: set[str] | None, val_frac: float, seed: int) -> tuple[np.ndarray, set[str]]:
    """Boolean validation mask and the validation subjects; whole subjects only.

    Without explicit subjects: subjects are shuffled (seeded) and added to validation until it holds
    ``val_frac`` of the samples, with both classes present.
    """
    subjects = np.array(data.subjects)
    if val_subjects:
        unknown = val_subjects - set(data.subjects)
        if unknown:
            raise DatasetError(f"--val-subjects {', '.join(sorted(unknown))} not in the data (subjects: {', '.join(sorted(set(data.subjects)))})")
        chosen = set(val_subjects)
    else:
        rng = np.random.default_rng(seed)
        order = sorted(set(data.subjects))
        rng.shuffle(order)
        chosen: set[str] = set()
        for s in order:
            m = np.isin(subjects, list(chosen))
            if m.sum() >= val_frac * len(subjects) and len(set(data.labels[m].tolist())) == 2:
                break
            if len(chosen) + 1 >= len(order):
                break
            chosen.add(s)
    mask = np.isin(subjects, list(chosen))
    if mask.all() or not mask.any():
        raise DatasetError("cannot split by subject: need at least two subjects (give --val-subjects or more data)")
    if len(set(data.labels[mask].tolist())) < 2:
        raise DatasetError(f"validation subjects {sorted(chosen)} hold only one class: choose --val-subjects with live and spoof crops")
    return mask, chosen


def _dataset(images: np.ndarray, labels: np.ndarray, cfg: TrainConfig, training: bool):
    import tensorflow as tf

    from converters.data.augment import augment_image

    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.float32)))
    if training:
        ds = ds.shuffle(len(labels), seed=cfg.seed, reshuffle_each_iteration=True)
        if cfg.augment:
            ds = ds.map(lambda x, y: (augment_image(x, cfg.size), y), num_parallel_calls=2)
        else:
            ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y))
    else:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y))
    return ds.batch(cfg.batch).prefetch(2)


class _Progress:
    """Keras callback printing one line per epoch to stderr (stdout carries data)."""

    def __new__(cls, phase: str, total: int):
        import keras

        class P(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t = time.monotonic()

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                items = " ".join(f"{k} {v:.4f}" for k, v in logs.items() if isinstance(v, (int, float)) and k != "learning_rate")
                print(f"[{phase}] epoch {epoch + 1}/{total} {items} ({time.monotonic() - self.t:.0f} s)", file=sys.stderr, flush=True)

        return P()


class _KeepBest:
    """Keeps the weights with the lowest val_loss seen over all phases."""

    def __new__(cls, store: dict):
        import keras

        class K(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                v = (logs or {}).get("val_loss")
                if v is not None and v < store.get("loss", np.inf):
                    store.update(loss=float(v), weights=self.model.get_weights(), epoch=store.get("offset", 0) + epoch + 1)

        return K()


def predict(model, images: np.ndarray, batch: int = 64) -> np.ndarray:
    out = []
    for i in range(0, len(images), batch):
        out.append(np.asarray(model(images[i:i + batch].astype(np.float32), training=False)).reshape(-1))
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def train(data: CropSet, out: Path, cfg: TrainConfig, val_subjects: set[str] | None = None) -> dict:
    import keras
    import tensorflow as tf

    from converters.measure import plots
    from converters.passive.model import build_model, set_trainable, uncompiled_copy

    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism() if os.environ.get("EDGE_LIVENESS_DETERMINISTIC") else None
    val_mask, val_set = split_by_subject(data, val_subjects, cfg.val_frac, cfg.seed)
    tr, va = data.subset(~val_mask), data.subset(val_mask)
    n_live, n_spoof = int(tr.labels.sum()), int((tr.labels == 0).sum())
    if n_live == 0 or n_spoof == 0:
        raise DatasetError(f"training subjects hold only one class ({n_live} live, {n_spoof} spoof): add data of both classes")
    # balanced class weights: each class contributes half of the loss
    class_weight = {0: len(tr) / (2.0 * n_spoof), 1: len(tr) / (2.0 * n_live)}
    print(f"train: {len(tr)} crops ({n_live} live, {n_spoof} spoof) from {len(set(tr.subjects))} subjects; "
          f"validation: {len(va)} crops from {sorted(val_set)}", file=sys.stderr, flush=True)

    model = build_model(cfg.size, cfg.alpha, cfg.weights)
    train_ds = _dataset(tr.images, tr.labels, cfg, training=True)
    val_ds = _dataset(va.images, va.labels, cfg, training=False)
    loss = keras.losses.BinaryCrossentropy(label_smoothing=cfg.label_smoothing)
    metrics = ["accuracy", keras.metrics.AUC(name="auc")]
    best: dict = {}
    history: dict[str, list[float]] = {}
    phase_starts = []

    def run_phase(name: str, epochs: int, lr: float):
        if epochs <= 0:
            return
        phase_starts.append(len(history.get("loss", [])))
        best["offset"] = len(history.get("loss", []))
        model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=metrics)
        cbs = [_Progress(name, epochs), _KeepBest(best),
               keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=False)]
        h = model.fit(train_ds, validation_data=val_ds, epochs=epochs, class_weight=class_weight, callbacks=cbs, verbose=0)
        for k, v in h.history.items():
            history.setdefault(k, []).extend(float(x) for x in v)

    t0 = time.monotonic()
    set_trainable(model, "head")
    run_phase("head", cfg.epochs_head, cfg.lr_head)
    set_trainable(model, "finetune", cfg.fine_tune_from)
    run_phase("finetune", cfg.epochs, cfg.lr_finetune)
    if "weights" in best:
        model.set_weights(best["weights"])
    seconds = time.monotonic() - t0

    final = uncompiled_copy(model)
    model_path = out / "model.keras"
    final.save(model_path)
    val_scores = predict(final, va.images)
    thr = pad_metrics.choose_threshold(va.labels, val_scores)
    val_rates = pad_metrics.rates(va.labels, val_scores, thr)
    fpr, tpr, _ = pad_metrics.roc_curve(va.labels, val_scores)
    plots.training_curves(history, out / "training_curves.png", phase_starts[1:])
    plots.roc({"validation": (fpr, tpr, val_rates.auc)}, out / "roc.png", "validation ROC (unseen subjects)")
    plots.confusion(va.labels, val_scores, thr, out / "confusion.png", "validation")
    result = {
        "model": str(model_path),
        "config": cfg.__dict__,
        "crop": data.crop or {"size": cfg.size, "margin": None},
        "train": {"n": len(tr), "n_live": n_live, "n_spoof": n_spoof, "subjects": sorted(set(tr.subjects))},
        "validation": {"n": len(va), "subjects": sorted(val_set), **val_rates.to_dict(),
                       "per_subject": pad_metrics.per_group(va.labels, val_scores, va.subjects, thr)},
        "threshold": thr,
        "threshold_note": "chosen on the float model's validation scores; convert re-chooses it on the int8 model's own",
        "best_epoch": best.get("epoch"),
        "best_val_loss": best.get("loss"),
        "history": history,
        "phase_starts": phase_starts,
        "train_seconds": round(seconds, 1),
        "class_weight": {str(k): round(v, 4) for k, v in class_weight.items()},
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"done in {seconds:.0f} s: best epoch {best.get('epoch')}, validation AUC {val_rates.auc}, ACER {val_rates.acer:.4f} "
          f"at {thr:.3f} -> {model_path}", file=sys.stderr)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", metavar="DATA_DIR", nargs="+", help="dataset folder(s) from `dataset extract` (index.csv) or live/spoof folders")
    parser.add_argument("--out", required=True, help="output folder: model.keras, metrics.json, PNG plots")
    parser.add_argument("--alpha", type=float, default=1.0, help="MobileNetV2 width (default 1.0)")
    parser.add_argument("--size", type=int, default=128, help="input size in pixels (default 128); crops should be cut at it")
    parser.add_argument("--epochs", type=int, default=8, help="fine-tuning epochs, upper bound with early stopping (default 8)")
    parser.add_argument("--epochs-head", type=int, default=3, help="head-only epochs before fine-tuning (default 3)")
    parser.add_argument("--weights", default="imagenet", help="imagenet | none | FILE (.keras/.h5 or a MobileNetV2 ImageNet .tflite)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4, help="fine-tuning learning rate (head: 10x)")
    parser.add_argument("--fine-tune-from", type=int, default=100, help="first backbone layer trained in phase 2 (default 100)")
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--val-subjects", default="", help="comma-separated subjects for validation (default: a seeded subject split)")
    parser.add_argument("--val-frac", type=float, default=0.2, help="share of crops for validation when --val-subjects is not given")
    parser.add_argument("--exclude-subjects", default="", help="comma-separated subjects left out entirely (held-out test people)")
    parser.add_argument("--no-augment", action="store_true")


def _csv_set(s: str) -> set[str]:
    return {x.strip() for x in s.split(",") if x.strip()}


def main(args) -> int:
    from converters.passive.model import WeightsError

    cfg = TrainConfig(size=args.size, alpha=args.alpha, weights=args.weights, epochs_head=args.epochs_head, epochs=args.epochs,
                      batch=args.batch, lr_head=args.lr * 10, lr_finetune=args.lr, fine_tune_from=args.fine_tune_from,
                      label_smoothing=args.label_smoothing, seed=args.seed, val_frac=args.val_frac, augment=not args.no_augment)
    try:
        data = load_crops([Path(d) for d in args.data_dir], size=cfg.size, exclude_subjects=_csv_set(args.exclude_subjects))
        if data.crop and data.crop.get("size") not in (None, cfg.size):
            log.warning("crops were cut at %s px but --size is %d", data.crop.get("size"), cfg.size)
        train(data, Path(args.out), cfg, _csv_set(args.val_subjects) or None)
    except (DatasetError, WeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
