"""MobileNetV2 (alpha 1.0) in PyTorch with the ImageNet weights recovered from Coral's TFLite file, for
fine-tuning the tight view on a GPU machine (issue 26, item 4).

The frozen-feature recipes (converters/passive/features.py) read the same network through Keras; this is
the same network, conv for conv, so the fine-tuned model starts exactly where the frozen one stands:
- ``export_weights`` (workstation, needs the TFLite runtime) writes the 52 dequantised convolutions with
  their folded BatchNorm biases, in execution order, to an .npz (float16: 7 MB travels to the GPU
  machine);
- ``MobileNetV2Taps`` (torch) holds those convolutions with biases and no BatchNorm (TFLite folded it), pads
  a stride-2 3x3 convolution on the bottom and right only, as TensorFlow's "same" does for even sizes
  (symmetric padding would shift every feature map by half a pixel against the weights), and returns the
  same three taps the frozen recipes pool: ``block_6_expand_relu`` (192), ``block_13_expand_relu`` (576),
  ``out_relu`` (1280);
- ``TightNet``: taps -> global average pools -> LayerNorm -> dropout -> one logit, raw RGB 0..255 in.

torch is imported only by the GPU side; ``export_weights`` needs numpy and the TFLite runtime only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# (expansion, channels, repeats, first stride): Sandler et al. 2018, Table 2, as Keras builds it
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
TAP_BLOCKS = (6, 13)  # expand outputs pooled by the frozen recipes; plus the last conv (out_relu)
N_CONVS = 52


def export_weights(tflite_path: str | Path, out: str | Path) -> Path:
    """The Coral model's backbone convolutions as ``w{i}`` (torch layout) and ``b{i}`` in float16."""
    from converters.passive.imagenet_tflite import read_tflite_weights

    w = read_tflite_weights(tflite_path)
    if len(w.convs) != N_CONVS:
        raise ValueError(f"{tflite_path}: {len(w.convs)} backbone convolutions, a MobileNetV2 1.0 has {N_CONVS}")
    arrays: dict[str, np.ndarray] = {}
    for i, c in enumerate(w.convs):
        k = c.kernel  # Keras layout: conv [H,W,I,O], depthwise [H,W,C,1]
        k = np.transpose(k, (3, 2, 0, 1)) if c.kind == "conv" else np.transpose(k, (2, 3, 0, 1))  # torch [O,I,H,W] / [C,1,H,W]
        arrays[f"w{i}"] = k.astype(np.float16)
        arrays[f"b{i}"] = c.bias.astype(np.float16)
    out = Path(out)
    np.savez(out, **arrays)
    return out


def _torch():
    import torch
    from torch import nn

    return torch, nn


def build(weights_npz: str | Path | None = None, dropout: float = 0.2):
    """A ``TightNet`` with the ImageNet backbone (or random, ``weights_npz=None``, for tests of shape only)."""
    torch, nn = _torch()
    import torch.nn.functional as F

    class Conv(nn.Module):
        def __init__(self, cin: int, cout: int, k: int, stride: int, groups: int, relu: bool):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, stride, padding=0, groups=groups, bias=True)
            self.k, self.stride, self.relu = k, stride, relu

        def forward(self, x):
            if self.k == 3:
                # TF "same": stride 1 pads 1 all round; stride 2 on even sizes pads the bottom and right only
                x = F.pad(x, (1, 1, 1, 1) if self.stride == 1 else (0, 1, 0, 1))
            x = self.conv(x)
            return F.relu6(x) if self.relu else x

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, t: int, stride: int):
            super().__init__()
            hid = cin * t
            self.expand = Conv(cin, hid, 1, 1, 1, True) if t != 1 else None
            self.dw = Conv(hid, hid, 3, stride, hid, True)
            self.project = Conv(hid, cout, 1, 1, 1, False)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            e = self.expand(x) if self.expand is not None else x
            y = self.project(self.dw(e))
            return (x + y if self.residual else y), e

    class MobileNetV2Taps(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = Conv(3, 32, 3, 2, 1, True)
            blocks, cin = [], 32
            for t, c, n, s in STAGES:
                for i in range(n):
                    blocks.append(Block(cin, c, t, s if i == 0 else 1))
                    cin = c
            self.blocks = nn.ModuleList(blocks)
            self.last = Conv(cin, 1280, 1, 1, 1, True)

        def convs(self):
            """The convolutions in TFLite's execution order."""
            out = [self.stem.conv]
            for b in self.blocks:
                out += ([b.expand.conv] if b.expand is not None else []) + [b.dw.conv, b.project.conv]
            return out + [self.last.conv]

        def forward(self, x):
            x = self.stem(x)
            taps = []
            for i, b in enumerate(self.blocks):
                x, e = b(x)
                if i in TAP_BLOCKS:
                    taps.append(e)
            taps.append(self.last(x))
            return taps

    class TightNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = MobileNetV2Taps()
            self.norm = nn.LayerNorm(192 + 576 + 1280)
            self.drop = nn.Dropout(dropout)
            self.fc = nn.Linear(192 + 576 + 1280, 1)

        def features(self, rgb255):
            x = rgb255 / 127.5 - 1.0  # Keras' MobileNetV2 preprocessing
            return torch.cat([t.mean(dim=(2, 3)) for t in self.backbone(x)], 1)

        def forward(self, rgb255):
            return self.fc(self.drop(self.norm(self.features(rgb255)))).squeeze(1)

    net = TightNet()
    if weights_npz is not None:
        load_backbone(net.backbone, weights_npz)
    return net


def load_backbone(backbone, weights_npz: str | Path) -> int:
    """Copy ``export_weights``' arrays into the backbone's convolutions; refuse on any shape mismatch."""
    torch, _ = _torch()
    z = np.load(weights_npz)
    convs = backbone.convs()
    if len(convs) != N_CONVS or f"w{N_CONVS - 1}" not in z:
        raise ValueError(f"{weights_npz}: not an export_weights file for MobileNetV2 1.0 ({len(convs)} convolutions here)")
    with torch.no_grad():
        for i, conv in enumerate(convs):
            w, b = z[f"w{i}"], z[f"b{i}"]
            if tuple(w.shape) != tuple(conv.weight.shape):
                raise ValueError(f"{weights_npz}: conv {i} is {tuple(w.shape)}, the network wants {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(w.astype(np.float32)))
            conv.bias.copy_(torch.from_numpy(b.astype(np.float32)))
    return len(convs)
