"""PNG plots for training and evaluation reports (matplotlib, imported lazily, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(history: dict[str, list[float]], out: Path, phase_starts: Sequence[int] = ()) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("loss", "accuracy")):
        for k, style in ((key, "-"), (f"val_{key}", "--")):
            if k in history:
                ax.plot(range(1, len(history[k]) + 1), history[k], style, label=k)
        for s in phase_starts:
            ax.axvline(s + 0.5, color="grey", lw=0.8)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def roc(curves: dict[str, tuple[np.ndarray, np.ndarray, float | None]], out: Path, title: str = "ROC") -> Path:
    """curves: name -> (APCER array, 1-BPCER array, AUC)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})" if auc is not None else name)
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("APCER (attacks accepted)")
    ax.set_ylabel("1 - BPCER (live accepted)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def confusion(labels: np.ndarray, scores: np.ndarray, threshold: float, out: Path, title: str = "confusion") -> Path:
    plt = _plt()
    y = np.asarray(labels).astype(int)
    pred = (np.asarray(scores) >= threshold).astype(int)
    m = np.array([[((y == t) & (pred == p)).sum() for p in (0, 1)] for t in (0, 1)])
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(m, cmap="Blues")
    for t in (0, 1):
        for p in (0, 1):
            ax.text(p, t, str(m[t, p]), ha="center", va="center", fontsize=14)
    ax.set_xticks([0, 1], ["spoof", "live"])
    ax.set_yticks([0, 1], ["spoof", "live"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} @ {threshold:.3f}")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
