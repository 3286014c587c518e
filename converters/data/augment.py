"""Training-time augmentation for liveness crops (TensorFlow ops, one image at a time).

What a spoof looks like lives in fine texture and colour: screen moire and pixel grids, a screen's
colour cast and glare, paper texture and halftone dots of prints. Augmentation must therefore vary
what does NOT tell live from spoof (pose in the crop, exposure, camera noise, a little camera blur
and compression) without erasing that texture:

- geometry: rotation +-8 deg, shift +-5 %, zoom 0.92-1.08, horizontal flip. Small, because the
  device's crop is already aligned by the eye line; bilinear resampling of large warps also smooths
  the moire away. Half of the images are not warped at all.
- brightness/contrast: gain 0.8-1.2, offset +-15 (door lighting varies a lot).
- colour: per-channel gain only +-4 % and saturation 0.9-1.1. A screen's colour cast is signal; a
  strong jitter would teach the model to ignore it.
- noise: Gaussian sigma 0-4 grey levels on 30 % (sensor noise at night).
- blur: 3x3 Gaussian sigma 0.4-0.8 on 15 % (focus, motion); never strong, which erases moire.
- JPEG recompression quality 75-95 on 20 % (MJPEG webcams); heavy JPEG would erase print texture.

TensorFlow is imported inside functions (the module is imported by the CLI without it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class AugmentConfig:
    rotation_deg: float = 8.0
    shift_frac: float = 0.05
    zoom: float = 0.08
    flip: bool = True
    p_warp: float = 0.5
    brightness_gain: float = 0.2
    brightness_offset: float = 15.0
    channel_gain: float = 0.04
    saturation: float = 0.1
    p_noise: float = 0.3
    noise_sigma: float = 4.0
    p_blur: float = 0.15
    blur_sigma: tuple[float, float] = (0.4, 0.8)
    p_jpeg: float = 0.2
    jpeg_quality: tuple[int, int] = (75, 95)

    def to_dict(self) -> dict:
        return asdict(self)


def _warp(img, cfg: AugmentConfig, size: int):
    import tensorflow as tf

    ang = tf.random.uniform([], -cfg.rotation_deg, cfg.rotation_deg) * (math.pi / 180.0)
    scale = tf.random.uniform([], 1.0 - cfg.zoom, 1.0 + cfg.zoom)
    tx = tf.random.uniform([], -cfg.shift_frac, cfg.shift_frac) * size
    ty = tf.random.uniform([], -cfg.shift_frac, cfg.shift_frac) * size
    c = (size - 1) / 2.0
    cos, sin = tf.cos(ang) / scale, tf.sin(ang) / scale
    # output -> input mapping (what ImageProjectiveTransform wants): rotate/scale about the centre
    a0, a1 = cos, -sin
    b0, b1 = sin, cos
    a2 = c - a0 * c - a1 * c + tx
    b2 = c - b0 * c - b1 * c + ty
    m = tf.stack([a0, a1, a2, b0, b1, b2, 0.0, 0.0])[None]
    out = tf.raw_ops.ImageProjectiveTransformV3(images=img[None], transforms=m, output_shape=[size, size],
                                                fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")
    return out[0]


def _blur(img, cfg: AugmentConfig):
    import tensorflow as tf

    sigma = tf.random.uniform([], *cfg.blur_sigma)
    x = tf.constant([-1.0, 0.0, 1.0])
    k = tf.exp(-(x ** 2) / (2.0 * sigma ** 2))
    k = k / tf.reduce_sum(k)
    k2 = k[:, None] * k[None, :]
    kernel = tf.tile(k2[:, :, None, None], [1, 1, 3, 1])
    padded = tf.pad(img[None], [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
    return tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")[0]


def augment_image(img, size: int, cfg: AugmentConfig = AugmentConfig(), seed=None):
    """float32 RGB 0..255 (S,S,3) -> augmented float32 RGB 0..255."""
    import tensorflow as tf

    def maybe(p, fn, x):
        return tf.cond(tf.random.uniform([]) < p, lambda: fn(x), lambda: x)

    img = tf.cast(img, tf.float32)
    if cfg.flip:
        img = tf.image.random_flip_left_right(img)
    img = maybe(cfg.p_warp, lambda x: _warp(x, cfg, size), img)
    # JPEG first: a webcam compresses before exposure/noise of the scene are "seen" by us
    img = maybe(cfg.p_jpeg, lambda x: tf.cast(tf.image.adjust_jpeg_quality(
        tf.cast(tf.clip_by_value(x, 0, 255), tf.uint8), tf.random.uniform([], *cfg.jpeg_quality, dtype=tf.int32)), tf.float32), img)
    img = maybe(cfg.p_blur, lambda x: _blur(x, cfg), img)
    gain = tf.random.uniform([], 1.0 - cfg.brightness_gain, 1.0 + cfg.brightness_gain)
    offset = tf.random.uniform([], -cfg.brightness_offset, cfg.brightness_offset)
    ch = tf.random.uniform([3], 1.0 - cfg.channel_gain, 1.0 + cfg.channel_gain)
    img = img * gain * ch + offset
    grey = tf.reduce_mean(img, axis=-1, keepdims=True)
    sat = tf.random.uniform([], 1.0 - cfg.saturation, 1.0 + cfg.saturation)
    img = grey + (img - grey) * sat
    img = maybe(cfg.p_noise, lambda x: x + tf.random.normal(tf.shape(x), 0.0, tf.random.uniform([], 0.0, cfg.noise_sigma)), img)
    img = tf.clip_by_value(img, 0.0, 255.0)
    img.set_shape([size, size, 3])
    return img
