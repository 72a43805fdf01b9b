"""Synthetic scenes, rendered into event recordings with ground-truth frames.

Three styles. An "hdr" scene is a textured background (a reflectance map: a photograph, see
below, or a procedural pattern) lit by an illumination map spanning four decades
(a ramp from deep shadow to bright light, spotlights, cast shadows) plus a sun-like emissive
disk that would saturate a conventional camera. A camera pans, zooms and rolls over it while
textured objects (sprites) move and turn on their own smooth random trajectories, lit by the
same light field. A "still" scene is what a parked camera sees by day (a street, a room):
ordinary light (a gentle gradient and soft shadows, within two decades), no sun, a camera that
does not move, and the same moving objects, so events come only from them and from noise. An
"ordinary" scene is the still scene's light under the hdr scene's moving camera. An "indoor" scene
is an ordinary one whose surfaces are partly flat (walls, a desk, boxes: no events, whatever their
level), where the others are textured everywhere. "mix" draws one of the first three per seed (hdr
50%, ordinary 25%, still 25%). Every scene may pause: all motion stops for a while (windows with
no events but noise), as a hand-held camera does.
Radiance is linear, with the brightest light at about 1.

Photographs: scikit-image's bundled samples, plus every photograph of the Debian packages
PHOTO_PACKAGES that is installed (`make data` installs them): tens of natural and man-made
textures instead of sixteen. A dataset records how many photographs it drew from (attribute
`photos`), since the same seed gives another scene with another set.

render_sequence() renders the linear radiance every millisecond (more often where the image
moves faster than `max_px_per_step` pixels a step), streams it through the event simulator
and writes one recording with ground-truth frames at `gt_fps`, in the event HDF5 format.
Ground truth is float32 linear: value = radiance * gt_scale (file attribute), gt_scale chosen
so that the brightest ground-truth pixel of the sequence is 1. Not uint16: the darkest of the
scene's five decades would keep 1 to 7 levels of it, losing the texture that its events carry.
"""
from __future__ import annotations

import dataclasses
import glob
import json
from functools import lru_cache
from pathlib import Path

import h5py
import numba
import numpy as np
from scipy import ndimage
from skimage import color, data, io, transform

from model.simulation.simulator import EventSimulator, SimConfig
from streaming.datatypes import EventPacket
from streaming.h5format import EventH5Writer

# Sample images that ship inside the scikit-image wheel (the others need a download).
_SAMPLE_IMAGES = ("camera", "astronaut", "coffee", "chelsea", "rocket", "brick", "grass", "gravel",
                  "moon", "page", "text", "coins", "clock", "hubble_deep_field",
                  "immunohistochemistry", "cell")
# Debian packages of photographs (wallpapers), and where they put them.
PHOTO_PACKAGES = ("mate-backgrounds", "plasma-workspace-wallpapers")
_PHOTO_GLOBS = ("/usr/share/backgrounds/mate/*/*.jpg", "/usr/share/wallpapers/*/contents/images/1920x1080.*")
_PHOTO_SIDE = 768  # photographs are shrunk to this longer side once: a texture crop is rarely larger
DEMO_SEED = 2_000_008  # outside the train and test seed ranges of model.simulation.make_dataset; a lively scene

# Pauses: each scene stops all motion for up to this many stretches, of this length (seconds).
_MAX_PAUSES, _PAUSE_S = 2, (0.1, 0.6)

# Motion bounds, relative to the frame's smaller side (translations) or absolute.
_CAM_SHIFT, _CAM_LOG_ZOOM, _CAM_ROLL = 0.08, 0.2, 0.15  # fraction, log scale, radians
_SPRITE_TRAVEL, _SPRITE_SIZE = 0.35, 0.45


# ---------------------------------------------------------------- textures, in [0, 1]

def photo_paths() -> list[str]:
    """The installed photographs of PHOTO_PACKAGES, in a fixed order."""
    return sorted(p for pattern in _PHOTO_GLOBS for p in glob.glob(pattern))


@lru_cache(maxsize=None)
def _photos() -> tuple:
    return tuple(_SAMPLE_IMAGES) + tuple(photo_paths())


@lru_cache(maxsize=None)
def _sample_image(name: str) -> np.ndarray:
    img = getattr(data, name)() if name in _SAMPLE_IMAGES else io.imread(name)
    img = color.rgb2gray(img[..., :3]) if img.ndim == 3 else img.astype(np.float64)
    shrink = _PHOTO_SIDE / max(img.shape)
    if shrink < 1:
        img = transform.rescale(img, shrink, order=1, anti_aliasing=True)
    lo, hi = np.percentile(img, (1, 99))
    return np.clip((img - lo) / max(hi - lo, 1e-9), 0, 1).astype(np.float32)


def _image_texture(rng, h, w):
    """A random crop of a photograph, resized to (h, w)."""
    photos = _photos()
    img = _sample_image(photos[rng.integers(len(photos))])
    frac = rng.uniform(0.5, 1.0)
    ch = int(min(img.shape[0], img.shape[1] * h / w) * frac)
    cw = int(ch * w / h)
    y0, x0 = rng.integers(0, img.shape[0] - ch + 1), rng.integers(0, img.shape[1] - cw + 1)
    crop = img[y0:y0 + ch, x0:x0 + cw]
    return transform.resize(crop, (h, w), order=1, anti_aliasing=True).astype(np.float32)


def _smooth_noise(rng, h, w, sigma):
    n = ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma, mode="wrap")
    return n / max(n.std(), 1e-12)


def _normalised(a):
    return ((a - a.min()) / max(a.max() - a.min(), 1e-12)).astype(np.float32)


def _procedural_texture(rng, h, w):
    """Multi-scale noise, stripes, a rotated checkerboard or blobs."""
    kind = rng.integers(4)
    if kind == 0:
        return _normalised(sum(_smooth_noise(rng, h, w, 2.0 ** o) / (o + 1) for o in range(5)))
    if kind == 3:  # soft-edged blobs: thresholded smooth noise
        return _normalised(np.tanh(3 * _smooth_noise(rng, h, w, rng.uniform(3, 12))))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    a = rng.uniform(0, np.pi)
    u, v = xx * np.cos(a) + yy * np.sin(a), -xx * np.sin(a) + yy * np.cos(a)
    k = 2 * np.pi / rng.uniform(6, 40)
    wave = np.sin(k * u) if kind == 1 else np.sin(k * u) * np.sin(k * v)
    return _normalised(np.clip(4 * wave, -1, 1))  # square waves with a soft edge


def _texture(rng, h, w):
    return _image_texture(rng, h, w) if rng.random() < 0.7 else _procedural_texture(rng, h, w)


def _reflectance(rng, h, w):
    return (0.1 + 0.85 * _texture(rng, h, w)).astype(np.float32)


def _surface_reflectance(rng, h, w):
    """Man-made surfaces: a texture of which some Voronoi cells are painted flat (walls, a desk,
    a box), each at its own level anywhere from dark to white, with the faint grain of a real
    surface. A flat surface gives no events however bright it is, so a network that sees these
    cannot take "no events" for "dark"."""
    texture = _texture(rng, h, w)
    n_cells = int(rng.integers(3, 13))
    seeds = rng.uniform(0, 1, (n_cells, 2)) * (h, w)
    yy, xx = np.mgrid[0:h, 0:w]
    cell = np.argmin((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2, axis=-1)
    flat = rng.random(n_cells) < 0.6
    level = rng.uniform(0, 1, n_cells)
    painted = np.where(flat[cell], level[cell] + 0.02 * _smooth_noise(rng, h, w, 1.0), texture)
    painted = ndimage.gaussian_filter(painted, 0.7)  # anti-aliased cell borders
    return (0.03 + 0.92 * np.clip(painted, 0, 1)).astype(np.float32)


# ---------------------------------------------------------------- light

def _illumination(rng, canvas_h, canvas_w, side):
    """Illumination in [1e-4, ~1] and an emissive sun (radiance 1), on the world canvas.

    Lights (ambient, spotlights, the sun's glow) are dimmed by occlusion: a ramp from full
    light down to below the 1e-4 floor within a quarter `side` (the frame's smaller side) of the
    canvas centre, and cast shadows. The bounded camera motion keeps more than that around the
    centre in view and the sun sits near it, so every frame holds the sun and the floor: at
    least four decades."""
    yy, xx = np.mgrid[0:canvas_h, 0:canvas_w].astype(np.float64)
    xx -= canvas_w / 2
    yy -= canvas_h / 2
    sx, sy = rng.uniform(-0.12, 0.12, 2) * side
    r_sun = np.hypot(xx - sx, yy - sy)
    sun_radius = rng.uniform(0.04, 0.08) * side
    emissive = np.clip(sun_radius + 0.5 - r_sun, 0, 1)  # a disk with an anti-aliased rim
    light = 0.1 + 0.3 * np.exp(-(r_sun / (3 * sun_radius)) ** 2)  # ambient and the sun's glow
    for _ in range(rng.integers(1, 4)):
        cx, cy = rng.uniform(-0.4, 0.4, 2) * side
        s = rng.uniform(0.05, 0.2) * side
        light += 10 ** rng.uniform(-1.5, -0.3) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    a = rng.uniform(0, 2 * np.pi)
    ramp = (xx * np.cos(a) + yy * np.sin(a)) / side
    occlusion = 10 ** np.clip(14 * ramp - 1.5 + 0.2 * _smooth_noise(rng, canvas_h, canvas_w, side / 8), -4.6, 0)
    shadow = np.clip(2 * _smooth_noise(rng, canvas_h, canvas_w, side / 10) - 2, 0, 1)
    occlusion *= 1 - (1 - 10 ** rng.uniform(-2, -1)) * shadow
    return np.maximum(light * occlusion, 1e-4).astype(np.float32), emissive.astype(np.float32)


def _ordinary_illumination(rng, canvas_h, canvas_w, side):
    """Daylight on a still scene: a gradient within one decade and soft shadows of up to one more."""
    yy, xx = np.mgrid[0:canvas_h, 0:canvas_w].astype(np.float64)
    a = rng.uniform(0, 2 * np.pi)
    ramp = (xx * np.cos(a) + yy * np.sin(a)) / max(canvas_h, canvas_w)  # within [-1, 1]
    light = 10 ** (rng.uniform(0, 0.5) * (ramp - 1))
    shadow = np.clip(2 * _smooth_noise(rng, canvas_h, canvas_w, side / 6) - 1, 0, 1)
    light *= 1 - (1 - 10 ** rng.uniform(-1, -0.3)) * shadow
    return light.astype(np.float32), np.zeros((canvas_h, canvas_w), np.float32)


# ---------------------------------------------------------------- motion

class _Wobble:
    """P smooth random signals, each a sum of sinusoids bounded by its amplitude."""

    def __init__(self, rng, amplitudes, f_lo=0.1, f_hi=0.6, terms=2):
        amplitudes = np.asarray(amplitudes, np.float64)[:, None]
        split = rng.uniform(0.3, 1.0, (len(amplitudes), terms))
        self.amps = amplitudes * split / split.sum(axis=1, keepdims=True)
        self.freqs = rng.uniform(f_lo, f_hi, self.amps.shape)
        self.phases = rng.uniform(0, 2 * np.pi, self.amps.shape)

    def __call__(self, t_s):
        return (self.amps * np.sin(2 * np.pi * self.freqs * t_s + self.phases)).sum(axis=1)


def _similarity(angle, scale, tx, ty):
    """3x3 homogeneous matrix of p -> scale * R(angle) p + (tx, ty)."""
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty], [0.0, 0.0, 1.0]])


def _sprite_alpha(rng, size):
    """An ellipse, a rectangle or a blob, with anti-aliased edges, in a size x size square."""
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    a, b = rng.uniform(0.25, 0.5, 2) * size
    kind = rng.integers(3)
    if kind == 1:
        edge_dist = np.minimum(a - np.abs(xx), b - np.abs(yy))
    else:
        r = np.hypot(xx / a, yy / b)
        edge_dist = (1 - r) * min(a, b)
    alpha = np.clip(0.5 + edge_dist, 0, 1)
    if kind == 2:  # ragged outline: the ellipse cut by smooth noise
        alpha *= np.clip(0.5 + 3 * (_smooth_noise(rng, size, size, size / 8) + 1), 0, 1)
    return alpha.astype(np.float32)


# ---------------------------------------------------------------- rendering

@numba.njit(nogil=True, cache=True, inline="always")
def _bilinear(a, x, y):
    """a sampled at column x, row y; coordinates outside clamp to the border."""
    h, w = a.shape
    x = min(max(x, 0.0), w - 1.0)
    y = min(max(y, 0.0), h - 1.0)
    x0, y0 = min(int(x), w - 2), min(int(y), h - 2)
    fx, fy = x - x0, y - y0
    top = a[y0, x0] * (1 - fx) + a[y0, x0 + 1] * fx
    bottom = a[y0 + 1, x0] * (1 - fx) + a[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


@numba.njit(nogil=True, cache=True)
def _render(out, cam, background, illum, emissive, sprite_refl, sprite_alpha, sprite_maps):
    """out[v, u] = reflectance * illumination + emission at the world point under pixel (u, v).

    cam: screen -> world (2x3); sprite_maps[s]: screen -> sprite s's texture (2x3). Sprites
    are drawn in order over the background and lit by the light at their place."""
    h, w = out.shape
    size = sprite_refl.shape[1]
    for v in range(h):
        for u in range(w):
            wx = cam[0, 0] * u + cam[0, 1] * v + cam[0, 2]
            wy = cam[1, 0] * u + cam[1, 1] * v + cam[1, 2]
            refl = _bilinear(background, wx, wy)
            seen = 1.0  # of the background: the emission (a sun) shines only where no object hides it
            for s in range(sprite_maps.shape[0]):
                m = sprite_maps[s]
                lx = m[0, 0] * u + m[0, 1] * v + m[0, 2]
                ly = m[1, 0] * u + m[1, 1] * v + m[1, 2]
                if 0.0 <= lx <= size - 1 and 0.0 <= ly <= size - 1:
                    a = _bilinear(sprite_alpha[s], lx, ly)
                    refl += a * (_bilinear(sprite_refl[s], lx, ly) - refl)
                    seen *= 1.0 - a
            out[v, u] = refl * _bilinear(illum, wx, wy) + seen * _bilinear(emissive, wx, wy)


@dataclasses.dataclass
class Scene:
    """A world canvas under a moving camera, with sprites; render(t) gives the linear radiance."""
    height: int
    width: int
    background: np.ndarray       # (Hc, Wc) reflectance on the world canvas
    illum: np.ndarray            # (Hc, Wc)
    emissive: np.ndarray         # (Hc, Wc)
    sprite_refl: np.ndarray      # (S, size, size)
    sprite_alpha: np.ndarray     # (S, size, size)
    camera: _Wobble              # shift x, shift y, log zoom, roll
    sprite_paths: list[_Wobble]  # per sprite: x, y, angle about its home
    sprite_home: np.ndarray      # (S, 4): mean x, y, angle; scale
    pauses: np.ndarray           # (P, 2): start and end (s) of each stretch without motion
    style: str                   # hdr, ordinary, still or indoor (a "mix" scene's draw)

    def motion_time(self, t_s: float) -> float:
        """The time the motion has run by t_s: the clock less the pauses before it."""
        paused = np.clip(t_s - self.pauses[:, 0], 0, self.pauses[:, 1] - self.pauses[:, 0]).sum()
        return t_s - float(paused)

    def poses(self, t_s):
        """screen -> world and, per sprite, screen -> sprite texture, as 3x3 matrices."""
        t_s = self.motion_time(t_s)
        hc, wc = self.background.shape
        dx, dy, log_zoom, roll = self.camera(t_s)
        screen_centre = _similarity(0, 1, -(self.width - 1) / 2, -(self.height - 1) / 2)
        cam = _similarity(roll, np.exp(log_zoom), wc / 2 + dx, hc / 2 + dy) @ screen_centre
        half = (self.sprite_refl.shape[1] - 1) / 2
        sprites = []
        for (x0, y0, angle0, scale), path in zip(self.sprite_home, self.sprite_paths):
            x, y, angle = np.array([x0, y0, angle0]) + path(t_s)
            world_to_sprite = np.linalg.inv(_similarity(angle, scale, x, y) @ _similarity(0, 1, -half, -half))
            sprites.append(world_to_sprite @ cam)
        return cam, sprites

    def render(self, t_s: float) -> np.ndarray:
        cam, sprites = self.poses(t_s)
        out = np.empty((self.height, self.width), np.float32)
        maps = np.array([m[:2] for m in sprites]).reshape(-1, 2, 3)
        _render(out, cam[:2], self.background, self.illum, self.emissive,
                self.sprite_refl, self.sprite_alpha, maps)
        return out

    def max_displacement(self, t0_s: float, t1_s: float) -> float:
        """How far (pixels) any point of the background or of a sprite moves on screen."""
        (cam0, spr0), (cam1, spr1) = self.poses(t0_s), self.poses(t1_s)
        h, w = self.height, self.width
        corners = np.array([[0, w - 1, 0, w - 1], [0, 0, h - 1, h - 1], [1, 1, 1, 1]], np.float64)
        moved = [np.linalg.solve(cam1, cam0 @ corners) - corners]  # the background's corners
        n = self.sprite_refl.shape[1] - 1
        sprite_corners = np.array([[0, n, 0, n], [0, 0, n, n], [1, 1, 1, 1]], np.float64)
        moved += [np.linalg.solve(m1, sprite_corners) - np.linalg.solve(m0, sprite_corners)
                  for m0, m1 in zip(spr0, spr1)]
        return float(max(np.hypot(d[0], d[1]).max() for d in moved))


STYLES = ("hdr", "ordinary", "still", "indoor", "mix")
_MIX = (("hdr", "ordinary", "still"), (0.5, 0.25, 0.25))


def make_scene(seed: int | np.random.SeedSequence, height: int, width: int, style: str = "hdr",
               seconds: float = 0.0) -> Scene:
    """seconds: how long the scene will be rendered, over which its pauses are drawn (0: none)."""
    if style not in STYLES:
        raise ValueError(f"scene style {style!r}: one of {', '.join(STYLES)}")
    rng = np.random.default_rng(seed)
    if style == "mix":
        style = str(rng.choice(_MIX[0], p=_MIX[1]))
    side = min(height, width)
    # The canvas holds every view the camera can take: the frame's corners rotated, zoomed
    # out and shifted to the limits.
    zoom, c, s = np.exp(_CAM_LOG_ZOOM), np.cos(_CAM_ROLL), np.sin(_CAM_ROLL)
    shift = _CAM_SHIFT * side
    canvas_w = int(np.ceil(2 * (zoom * (width * c + height * s) / 2 + shift))) + 2
    canvas_h = int(np.ceil(2 * (zoom * (height * c + width * s) / 2 + shift))) + 2
    camera_motion = 0.0 if style == "still" else 1.0  # a parked camera: the same draws, no motion
    light = _illumination if style == "hdr" else _ordinary_illumination
    reflectance = _surface_reflectance if style == "indoor" else _reflectance
    illum, emissive = light(rng, canvas_h, canvas_w, side)
    n_sprites = int(rng.integers(1, 7))
    pauses = np.zeros((int(rng.integers(0, _MAX_PAUSES + 1)) if seconds > 0 else 0, 2))
    for i, start in enumerate(np.sort(rng.uniform(0, seconds, len(pauses)))):
        start = max(start, pauses[i - 1, 1]) if i else start  # one after another, never overlapping
        pauses[i] = start, start + rng.uniform(*_PAUSE_S)
    size = int(_SPRITE_SIZE * side)
    travel = _SPRITE_TRAVEL * np.array([width, height])
    return Scene(
        height, width,
        background=reflectance(rng, canvas_h, canvas_w),
        illum=illum, emissive=emissive,
        sprite_refl=np.array([reflectance(rng, size, size) for _ in range(n_sprites)]).reshape(-1, size, size),
        sprite_alpha=np.array([_sprite_alpha(rng, size) for _ in range(n_sprites)]).reshape(-1, size, size),
        camera=_Wobble(rng, np.array([shift, shift, _CAM_LOG_ZOOM, _CAM_ROLL]) * camera_motion, 0.1, 0.4),
        sprite_paths=[_Wobble(rng, [*travel, np.pi / 2], 0.1, 0.5) for _ in range(n_sprites)],
        sprite_home=np.array([[canvas_w / 2, canvas_h / 2, rng.uniform(0, 2 * np.pi), rng.uniform(0.4, 1.3)]
                              for _ in range(n_sprites)]),
        pauses=pauses,
        style=style,
    )


# ---------------------------------------------------------------- recordings

def _gt_times_us(seconds, gt_fps):
    n = int(np.floor(seconds * gt_fps + 1e-9))  # 0.4 s * 25 fps is 10 frames, not 9.999...
    if n < 1:
        raise ValueError(f"{seconds} s at {gt_fps} fps holds no ground-truth interval")
    return [int(round(k * 1e6 / gt_fps)) for k in range(n + 1)]


def _step_times_us(scene, t_a, t_b, base_step_us, max_px_per_step):
    """Render instants in (t_a, t_b]: every base step, split where the image moves fast."""
    n = max(1, int(np.ceil((t_b - t_a) / base_step_us)))
    edges = np.linspace(t_a, t_b, n + 1)
    times = []
    for s0, s1 in zip(edges[:-1], edges[1:]):
        k = max(1, int(np.ceil(scene.max_displacement(s0 * 1e-6, s1 * 1e-6) / max_px_per_step)))
        times += list(np.linspace(s0, s1, k + 1)[1:])
    return sorted(set(int(round(t)) for t in times) - {t_a})


def render_sequence(path: str | Path, seed: int, height: int = 180, width: int = 240,
                    seconds: float = 3.0, gt_fps: float = 25.0, sim_config: SimConfig = SimConfig(),
                    base_step_us: int = 1000, max_px_per_step: float = 0.5, style: str = "hdr") -> int:
    """Write one recording (events + float32 linear ground truth) to `path`; returns its event count.

    Deterministic given the seed (and the other arguments)."""
    scene_seed, sim_seed = np.random.SeedSequence(seed).spawn(2)
    scene = make_scene(scene_seed, height, width, style, seconds)
    gt_times = _gt_times_us(seconds, gt_fps)
    # A cheap first pass over the ground-truth instants fixes the scale before writing.
    gt_scale = 1.0 / max(float(scene.render(t * 1e-6).max()) for t in gt_times)
    sim = EventSimulator(height, width, sim_config, sim_seed)
    n_events = 0
    with EventH5Writer(path, height, width) as writer:
        frame = scene.render(gt_times[0] * 1e-6)
        sim.step(frame, gt_times[0])
        writer.add_image(gt_times[0], (frame * gt_scale).astype(np.float32))
        for t_a, t_b in zip(gt_times[:-1], gt_times[1:]):
            packets = []
            for t in _step_times_us(scene, t_a, t_b, base_step_us, max_px_per_step):
                frame = scene.render(t * 1e-6)
                packets.append(sim.step(frame, t))
            events = EventPacket.concat(packets)
            writer.add_events(events)
            writer.add_image(t_b, (frame * gt_scale).astype(np.float32))  # the last step is at t_b
            n_events += len(events)
    with h5py.File(path, "a") as f:
        f.attrs.update(gt_scale=gt_scale, gt_encoding="linear", seed=seed, style=scene.style, photos=len(_photos()),
                       generator="model.simulation.scenes", sim_config=json.dumps(dataclasses.asdict(sim_config)))
    return n_events


def make_demo(path: str | Path) -> int:
    """The `make demo` recording: 240x180, 4 s, a lit scene with a sun, moving textures."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return render_sequence(path, DEMO_SEED, 180, 240, seconds=4.0, gt_fps=25.0)
