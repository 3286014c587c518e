"""Physics-based screen recapture: what a replay attack does to a real face image (workstation).

Replays of more people do not exist, so training replays are synthesised from real people's images. The
model must learn what a SCREEN does to a face (subpixel grid, moire, gamut, glare, recapture blur), not
bezels and hands, so the physics is modelled and framing is a separate choice:

- display: the image at the screen's pixel resolution, shown through the display's transfer curve (gamma,
  desaturated/tinted gamut, raised black level, clipped highlights); every screen pixel is three vertical
  R,G,B stripes with a black matrix between subpixels and between rows;
- camera: a pinhole camera a few degrees off the screen's normal (homography), one screen pixel on
  0.6-2.5 sensor pixels, lens blur + defocus and the pixel's own aperture as the only prefilter (no
  anti-alias filter, so the grid aliases into moire), an RGGB Bayer mosaic with crosstalk, shot + read
  noise, demosaicing by OpenCV (colour moire), camera gamma, optional glare and JPEG at quality 60-95.
  Outputs with a short side under ``MIN_SENSOR_SIDE`` are filmed at up to 3x and downscaled, as a phone's
  ISP does: else a 320x240 frame would show a screen of 130 pixels and no detectable face.

The subpixel grid is never rendered at subpixel resolution: its Fourier series, multiplied by the transfer
function of aperture box and defocus Gaussian, is tabulated over one screen pixel (``LUT_N`` samples) and
looked up at every camera pixel's screen position (``cv2.remap`` with wrap-around). That is exact for the
grid and keeps a 640x480 frame at a few tens of ms. Framing ``fill``: the screen fills the view (output
the input's size, zoom <= ~1.3 about the centre). ``bezel``: a smaller screen in a dark rounded bezel over
a blurred or gradient background, optionally with fingers at its edge.

Deterministic: the same image, params and frame index give the same bytes (noise comes from
``params.seed`` and the frame index, so the frames of one video share one screen and camera).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

LUT_N = 32  # samples of the filtered subpixel mask per screen pixel
HARMONICS = 12  # Fourier terms of the stripe / row boxes (higher ones are below the LUT's resolution)
FRAMINGS = ("fill", "bezel")
MIN_SENSOR_SIDE = 480  # smaller outputs are filmed at up to 3x and downscaled, as a phone's ISP does
MAX_FILL_ZOOM = 1.45  # cover the view under tilt even when the drawn zoom is small


@dataclass(frozen=True)
class RecaptureParams:
    """One simulated attack session: one screen filmed by one camera (shared by all frames of a video)."""

    px_scale: float  # sensor pixels per screen pixel (the sensor is the output, or up to 3x a small output)
    subpixel_gap: float  # black matrix share of each subpixel column
    row_gap: float  # black matrix share of each pixel row
    stripes_horizontal: bool  # screen turned 90 degrees: the stripes run across the image
    bgr_order: bool  # subpixel order B,G,R instead of R,G,B
    display_gamma: float
    desaturation: float  # share of each colour replaced by its luminance (small gamut)
    tint: tuple[float, float, float]  # white point, linear gains for B, G, R
    black_level: float  # linear light of black, share of white (backlight leak, reflections)
    highlight_gain: float  # > 1 clips highlights
    roll_deg: float
    tilt_x_deg: float
    tilt_y_deg: float
    focal: float  # focal length, multiple of the frame's longest side
    zoom: float  # fill: screen size over frame size (raised until the screen covers the view)
    screen_frac: float  # bezel: screen size over frame size
    offset: tuple[float, float]  # bezel: screen centre shift, share of the free room (-1..1)
    defocus: float  # Gaussian sigma, camera pixels
    lens_blur: float  # the lens's own blur in focus (aberrations, diffraction), sigma in camera pixels
    aperture: float  # pixel fill factor: width of the box each camera pixel integrates over
    crosstalk: float  # share of a neighbouring primary each colour filter passes
    exposure: float
    shot_noise: float  # noise variance per unit of linear signal
    read_noise: float  # noise sigma, linear units
    camera_gamma: float
    demosaic_ea: bool  # OpenCV's edge-aware demosaic instead of bilinear
    glare: float  # additive linear peak, 0 = none
    glare_xy: tuple[float, float]  # centre, share of the frame
    glare_axes: tuple[float, float]  # sigmas, share of the frame's longest side
    glare_angle: float
    jpeg_quality: int
    bezel_width: float  # share of the screen's width
    bezel_level: float  # linear grey of the bezel
    corner_radius: float  # share of the screen's width
    background: str  # "blur" (blurred, colour-shifted image) or "gradient"
    background_colors: tuple[tuple[float, float, float], tuple[float, float, float]]  # gains or colours, linear
    fingers: int  # 0 = no hand
    hand_edge: int  # 0 bottom, 1 left, 2 right
    hand_pos: float  # along that edge, 0..1
    skin: tuple[float, float, float]  # linear B, G, R
    seed: int  # sensor noise

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "RecaptureParams":
        u = rng.uniform
        bg = "blur" if u() < 0.6 else "gradient"
        skin_base = np.array([0.18, 0.28, 0.45]) * u(0.35, 1.3)  # linear BGR, light to dark skin
        return cls(
            px_scale=float(np.exp(u(math.log(0.6), math.log(2.5)))),
            subpixel_gap=u(0.1, 0.35), row_gap=u(0.05, 0.3),
            stripes_horizontal=bool(u() < 0.25), bgr_order=bool(u() < 0.15),
            display_gamma=u(1.9, 2.6), desaturation=u(0.0, 0.25),
            tint=tuple(float(x) for x in 1 + rng.normal(0, 0.07, 3) + np.array([u(0, 0.1), 0, 0])),  # screens run blue
            black_level=float(np.exp(u(math.log(0.002), math.log(0.03)))), highlight_gain=u(1.0, 1.3),
            roll_deg=u(-3, 3), tilt_x_deg=u(-6, 6), tilt_y_deg=u(-6, 6), focal=u(0.9, 1.6),
            zoom=u(1.02, 1.3), screen_frac=u(0.6, 0.85), offset=(u(-0.8, 0.8), u(-0.8, 0.8)),
            defocus=1.2 * u() ** 2, lens_blur=u(0.25, 0.5), aperture=u(0.5, 0.95), crosstalk=u(0.08, 0.25), exposure=u(0.75, 1.15),
            shot_noise=float(np.exp(u(math.log(2e-4), math.log(4e-3)))), read_noise=u(0.001, 0.008),
            camera_gamma=u(2.0, 2.4), demosaic_ea=bool(u() < 0.5),
            glare=u(0.05, 0.35) if u() < 0.4 else 0.0, glare_xy=(u(0.1, 0.9), u(0.1, 0.9)),
            glare_axes=(u(0.08, 0.35), u(0.04, 0.2)), glare_angle=u(0, 180), jpeg_quality=int(rng.integers(60, 96)),
            bezel_width=u(0.02, 0.09), bezel_level=u(0.002, 0.03), corner_radius=u(0.02, 0.12), background=bg,
            background_colors=(tuple(float(x) for x in rng.uniform(0.3, 1.0, 3)), tuple(float(x) for x in rng.uniform(0.02, 0.6, 3))),
            fingers=int(rng.integers(1, 4)) if u() < 0.5 else 0, hand_edge=int(rng.integers(0, 3)), hand_pos=u(0.15, 0.85),
            skin=tuple(float(x) for x in skin_base * (1 + rng.normal(0, 0.06, 3))), seed=int(rng.integers(0, 2**31)))


def _blur_sigma(p: RecaptureParams) -> float:
    return math.hypot(p.defocus, p.lens_blur)


@lru_cache(maxsize=8)
def _grid(h: int, w: int) -> np.ndarray:
    """Camera pixel centres as (h, w, 2) float32 points for cv2.perspectiveTransform."""
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return np.dstack([xs, ys])


def _homography(p: RecaptureParams, w: int, h: int, framing: str, zoom: float) -> tuple[np.ndarray, int, int]:
    """Screen pixel coordinates -> camera pixels for a screen ``zoom`` x the frame, and the screen's resolution."""
    ws, hs = max(8, round(zoom * w / p.px_scale)), max(8, round(zoom * h / p.px_scale))
    k = zoom * w / ws  # camera pixels per screen pixel at the screen's centre
    f = p.focal * max(w, h)
    ax, ay, az = (math.radians(a) for a in (p.tilt_x_deg, p.tilt_y_deg, p.roll_deg))
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    r = rz @ ry @ rx
    cx, cy = w / 2, h / 2
    if framing == "bezel":
        cx += p.offset[0] * (1 - zoom) * w / 2
        cy += p.offset[1] * (1 - zoom) * h / 2
    cam = np.array([[f, 0, cx - 0.5], [0, f, cy - 0.5], [0, 0, 1.0]])  # -0.5: pixel centres sit on integers
    plane = np.array([[k, 0, -k * ws / 2], [0, k, -k * hs / 2], [0, 0, 1.0]])  # screen px -> plane, centred
    hom = cam @ np.column_stack([r[:, 0], r[:, 1], [0, 0, f]]) @ plane
    return hom / hom[2, 2], ws, hs


def _covers(hom: np.ndarray, w: int, h: int, ws: int, hs: int) -> bool:
    corners = np.array([[[0, 0]], [[w - 1, 0]], [[0, h - 1]], [[w - 1, h - 1]]], np.float32)
    uv = cv2.perspectiveTransform(corners, np.linalg.inv(hom)).reshape(-1, 2)
    return bool((uv.min() >= 0.5) and (uv[:, 0].max() <= ws - 0.5) and (uv[:, 1].max() <= hs - 0.5))


def _geometry(p: RecaptureParams, w: int, h: int, framing: str) -> tuple[np.ndarray, int, int]:
    if framing == "bezel":
        return _homography(p, w, h, framing, p.screen_frac)
    zoom = p.zoom
    hom, ws, hs = _homography(p, w, h, framing, zoom)
    while not _covers(hom, w, h, ws, hs) and zoom < MAX_FILL_ZOOM:  # tilt/roll must not show a corner
        zoom *= 1.02
        hom, ws, hs = _homography(p, w, h, framing, zoom)
    return hom, ws, hs


def _box_series(centre: float, width: float, transfer: np.ndarray, t: np.ndarray) -> np.ndarray:
    """A periodic box (period 1) through a filter with ``transfer``[k] at k cycles, sampled at ``t``, mean 1."""
    k = np.arange(1, len(transfer))
    amp = 2 * np.sin(np.pi * k * width) / (np.pi * k) * transfer[1:]
    wave = np.cos(2 * np.pi * np.outer(t - centre, k)) @ amp
    return np.maximum(1 + wave / width, 0)


def _subpixel_lut(p: RecaptureParams) -> np.ndarray:
    """(LUT_N, LUT_N, 3) float32: light of each channel over one screen pixel as a camera pixel sees it."""
    k = np.arange(HARMONICS + 1)
    box = p.aperture / p.px_scale  # the camera pixel's aperture in screen pixels
    sigma = _blur_sigma(p) / p.px_scale
    transfer = np.sinc(k * box) * np.exp(-2 * (np.pi * sigma * k) ** 2)
    t = np.arange(LUT_N) / LUT_N + 0.5  # the maps are shifted by -0.5 (pixel centres on integers)
    order = (0, 1, 2) if p.bgr_order else (2, 1, 0)  # BGR channel index of the left, middle, right stripe
    across = np.empty((LUT_N, 3))
    for pos, ch in enumerate(order):
        across[:, ch] = _box_series((pos + 0.5) / 3, (1 - p.subpixel_gap) / 3, transfer, t)
    along = _box_series(0.5, 1 - p.row_gap, transfer, t)
    lut = along[:, None, None] * across[None, :, :] if not p.stripes_horizontal else across[:, None, :] * along[None, :, None]
    return lut.astype(np.float32)


def _display(img: np.ndarray, p: RecaptureParams, ws: int, hs: int) -> np.ndarray:
    """Linear light the screen emits at its own resolution (float32, white = 1)."""
    table = (np.arange(256, dtype=np.float32) / 255) ** np.float32(p.display_gamma)
    lin = table[img]
    grey = np.array([0.0722, 0.7152, 0.2126])  # Rec.709 luminance weights, BGR
    mix = (1 - p.desaturation) * np.eye(3) + p.desaturation * np.tile(grey, (3, 1))
    lin = cv2.transform(lin, (np.diag(p.tint) @ mix * p.highlight_gain).astype(np.float32))
    np.clip(lin, 0, 1, out=lin)
    lin = lin * np.float32(1 - p.black_level) + np.float32(p.black_level)
    shrink = ws < img.shape[1]
    return cv2.resize(lin, (ws, hs), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _ellipse(shape: tuple[int, int], centre, axes, angle: float) -> np.ndarray:
    m = np.zeros(shape, np.float32)
    cv2.ellipse(m, (round(centre[0]), round(centre[1])), (max(1, round(axes[0])), max(1, round(axes[1]))), angle, 0, 360, 1.0, -1)
    return m


def _rect_sdf(qx: np.ndarray, qy: np.ndarray, half: tuple[float, float], radius: float) -> np.ndarray:
    """Signed distance to a rounded rectangle; ``qx``, ``qy`` = offsets from its centre."""
    dx = np.abs(qx) - np.float32(half[0] - radius)
    dy = np.abs(qy) - np.float32(half[1] - radius)
    return np.hypot(np.maximum(dx, 0), np.maximum(dy, 0)) + np.minimum(np.maximum(dx, dy), 0) - np.float32(radius)


def _surround(img: np.ndarray, rad: np.ndarray, uv: np.ndarray, hom: np.ndarray, p: RecaptureParams, ws: int, hs: int) -> np.ndarray:
    """Bezel framing: the screen inside a dark rounded bezel over a background, fingers at an edge."""
    h, w = rad.shape[:2]
    qx, qy = cv2.split(uv)
    qx += np.float32(0.5 - ws / 2)
    qy += np.float32(0.5 - hs / 2)
    edge = np.float32(p.px_scale / (0.6 + _blur_sigma(p)))  # camera px per screen px, widened by defocus: soft edges
    a_scr = np.clip(0.5 - _rect_sdf(qx, qy, (ws / 2, hs / 2), 0.0) * edge, 0, 1)
    bw = p.bezel_width * ws
    a_bez = np.clip(0.5 - _rect_sdf(qx, qy, (ws / 2 + bw, hs / 2 + bw * 1.6), p.corner_radius * ws + bw) * edge, 0, 1)
    small = (max(4, w // 16), max(4, h // 16))
    if p.background == "blur":
        bg = cv2.GaussianBlur((cv2.resize(img, small, interpolation=cv2.INTER_AREA).astype(np.float32) / 255) ** 2.2, (0, 0), 2)
        bg = bg * np.array(p.background_colors[0], np.float32) * 0.6
    else:
        ramp = np.linspace(0, 1, small[1], dtype=np.float32)[:, None, None] * np.ones((1, small[0], 1), np.float32)
        c0, c1 = (np.array(c, np.float32) * 0.5 for c in p.background_colors)
        bg = c0 * (1 - ramp) + c1 * ramp
    bg = cv2.resize(bg.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    bezel = np.empty_like(bg)
    bezel[:] = np.linspace(0.6, 1.4, h, dtype=np.float32)[:, None, None] * np.float32(p.bezel_level)  # sheen varies
    out = cv2.blendLinear(rad, cv2.blendLinear(bezel, bg, a_bez, 1 - a_bez), a_scr, 1 - a_scr)
    return _fingers(out, hom, p, ws, hs) if p.fingers else out


def _fingers(rad: np.ndarray, hom: np.ndarray, p: RecaptureParams, ws: int, hs: int) -> np.ndarray:
    h, w = rad.shape[:2]
    ends = {0: ((0, hs), (ws, hs)), 1: ((0, 0), (0, hs)), 2: ((ws, 0), (ws, hs))}[p.hand_edge]
    a, b = cv2.perspectiveTransform(np.array([ends], np.float32), hom)[0]
    along = (b - a) / max(1e-6, float(np.hypot(*(b - a))))
    inward = np.array([-along[1], along[0]]) * (1 if p.hand_edge == 2 else -1)  # into the screen
    length = 0.16 * min(w, h)
    angle = math.degrees(math.atan2(inward[1], inward[0]))
    alpha = np.zeros((h, w), np.float32)
    for i in range(p.fingers):
        c = a + (b - a) * p.hand_pos + along * (i - (p.fingers - 1) / 2) * length * 0.42 - inward * length * 0.1
        alpha = np.maximum(alpha, _ellipse((h, w), c, (length * 0.6, length * 0.2), angle))
    shade = cv2.GaussianBlur(alpha, (0, 0), length * 0.08)  # rounder fingers: brighter along their middle
    alpha = cv2.GaussianBlur(alpha, (0, 0), 1.5)
    skin = np.array(p.skin, np.float32) * (0.5 + 0.5 * shade)[..., None]
    return cv2.blendLinear(skin, rad, alpha, 1 - alpha)


def _glare(shape: tuple[int, int], p: RecaptureParams) -> np.ndarray:
    h, w = shape
    sw, sh = max(8, w // 8), max(8, h // 8)
    xs, ys = np.meshgrid((np.arange(sw) + 0.5) / sw * w, (np.arange(sh) + 0.5) / sh * h)
    dx, dy = xs - p.glare_xy[0] * w, ys - p.glare_xy[1] * h
    t = math.radians(p.glare_angle)
    a, b = (s * max(w, h) for s in p.glare_axes)
    r2 = ((dx * math.cos(t) + dy * math.sin(t)) / a) ** 2 + ((-dx * math.sin(t) + dy * math.cos(t)) / b) ** 2
    return cv2.resize((p.glare * np.exp(-0.5 * r2)).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)[..., None]


def _sensor(rad: np.ndarray, p: RecaptureParams, frame_index: int) -> np.ndarray:
    """Linear light on the camera -> BGR uint8: crosstalk, RGGB mosaic, noise, demosaic, camera gamma."""
    x = p.crosstalk
    mix = np.array([[1 - x, x, 0], [x / 2, 1 - x, x / 2], [0, x, 1 - x]], np.float32) * np.float32(p.exposure)
    rad = cv2.transform(rad, mix)
    h, w = rad.shape[:2]
    mosaic = np.empty((h, w), np.float32)
    mosaic[0::2, 0::2] = rad[0::2, 0::2, 2]
    mosaic[0::2, 1::2] = rad[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = rad[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = rad[1::2, 1::2, 0]
    rng = np.random.default_rng([p.seed, frame_index])
    np.clip(mosaic, 0, 1, out=mosaic)
    sigma = np.sqrt(mosaic * np.float32(p.shot_noise) + np.float32(p.read_noise ** 2))
    mosaic += sigma * rng.standard_normal((h, w), dtype=np.float32)
    raw = (np.clip(mosaic, 0, 1) * 65535 + 0.5).astype(np.uint16)
    bgr = cv2.cvtColor(raw, cv2.COLOR_BayerRGGB2BGR_EA if p.demosaic_ea else cv2.COLOR_BayerRGGB2BGR)
    return _gamma_table(round(p.camera_gamma, 4))[bgr]


@lru_cache(maxsize=16)
def _gamma_table(gamma: float) -> np.ndarray:
    return (np.power(np.arange(65536) / 65535, 1 / gamma) * 255 + 0.5).astype(np.uint8)


def render(image_bgr: np.ndarray, params: RecaptureParams, framing: str = "fill", frame_index: int = 0) -> np.ndarray:
    """The camera's picture of ``image_bgr`` on the screen, before JPEG (uint8 BGR, the input's size)."""
    if framing not in FRAMINGS:
        raise ValueError(f"framing must be one of {FRAMINGS}, got {framing!r}")
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(f"need a BGR uint8 image, got {image_bgr.dtype} {image_bgr.shape}")
    out_h, out_w = image_bgr.shape[:2]
    k = min(3.0, max(1.0, MIN_SENSOR_SIDE / min(out_h, out_w)))
    h, w = round(out_h * k), round(out_w * k)
    hom, ws, hs = _geometry(params, w, h, framing)
    screen = _display(image_bgr, params, ws, hs)
    inv = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]]) @ np.linalg.inv(hom)  # -0.5: screen pixel centres
    uv = cv2.perspectiveTransform(_grid(h, w), inv)  # screen pixel coordinates of every camera pixel
    content = cv2.remap(screen, uv, None, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    content = cv2.GaussianBlur(content, (0, 0), _blur_sigma(params))
    phase = (uv - np.floor(uv)) * np.float32(LUT_N)
    rad = content * cv2.remap(_subpixel_lut(params), phase, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    if framing == "bezel":
        rad = _surround(image_bgr, rad, uv, hom, params, ws, hs)
    if params.glare > 0:
        rad = rad + _glare((h, w), params)
    bgr = _sensor(rad.astype(np.float32, copy=False), params, frame_index)
    return bgr if (h, w) == (out_h, out_w) else cv2.resize(bgr, (out_w, out_h), interpolation=cv2.INTER_AREA)


def recapture_jpeg(image_bgr: np.ndarray, params: RecaptureParams, framing: str = "fill", frame_index: int = 0) -> bytes:
    """The camera's JPEG file of the recaptured image (what the script writes for images)."""
    ok, buf = cv2.imencode(".jpg", render(image_bgr, params, framing, frame_index), [cv2.IMWRITE_JPEG_QUALITY, int(params.jpeg_quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def recapture(image_bgr: np.ndarray, params: RecaptureParams, framing: str = "fill", frame_index: int = 0) -> np.ndarray:
    """``image_bgr`` shown on a screen and filmed by a camera (BGR uint8, the input's size)."""
    data = np.frombuffer(recapture_jpeg(image_bgr, params, framing, frame_index), np.uint8)
    return cv2.imdecode(data, cv2.IMREAD_COLOR)
