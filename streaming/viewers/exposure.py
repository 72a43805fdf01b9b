"""Linear radiance to screen pixels for the desktop viewer, as the web page's
streaming/viewers/web_static/tonemap.js does it in the browser (tests/test_webview.py holds the two to each
other): the scene's key (log2 of its geometric-mean radiance, smoothed over the stream's own
clock) maps to mid-grey, exposure shifts that in stops, and a tone curve takes it to the screen.
"""
from __future__ import annotations

import math

import numpy as np

GREY = 0.18
EPS = 1e-6  # radiance at or below it counts as this dark (the filters' output can be <= 0)
AUTO_TAU_S = 0.5  # auto-exposure's time constant: follows the scene, not each frame's noise
LOG_STOPS = 12  # the log curve shows this many stops around mid-grey
FALSE_STOPS = 16  # and false colour these
SAMPLES = 16384  # pixels enough for the key of any frame
CURVES = ("reinhard", "log", "linear")


# Google's polynomial fit of the Turbo colour map (Apache-2.0), the page's too: OpenCV's
# table differs from it by up to 30 levels at the dark end
TURBO = np.array([[0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
                  [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
                  [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973]], np.float32)


def turbo(t: np.ndarray) -> np.ndarray:
    """t in [0, 1] (any shape) -> RGB in [0, 1], in a last axis of 3."""
    powers = t[..., None] ** np.arange(6, dtype=np.float32)
    return np.clip(powers @ TURBO.T, 0, 1)


def stops_of(radiance: np.ndarray) -> np.ndarray:
    return np.log2(np.maximum(radiance, np.float32(EPS)))


def key(radiance: np.ndarray) -> float | None:
    """log2 of the geometric mean, over a regular sample; non-finite pixels stay out of it."""
    sample = radiance.ravel()[::max(1, radiance.size // SAMPLES)]
    sample = sample[np.isfinite(sample)]
    return float(stops_of(sample).mean()) if sample.size else None


class AutoExposure:
    """Causal and smoothed: each frame moves the key towards its own by how much stream time passed."""

    def __init__(self):
        self.key: float | None = None
        self._t_us: int | None = None

    def follow(self, radiance: np.ndarray, t_us: int) -> None:
        k = key(radiance)
        if k is None:
            return
        if self.key is None or self._t_us is None or t_us <= self._t_us:
            self.key = k  # the first frame, or a new run (its clock starts again)
        else:
            self.key += (k - self.key) * (1 - math.exp(-(t_us - self._t_us) / 1e6 / AUTO_TAU_S))
        self._t_us = t_us


def render(radiance: np.ndarray, key_stops: float, stops: float, curve: str, false_colour: bool) -> np.ndarray:
    """(H, W) radiance -> (H, W, 3) BGR uint8. stops: exposure relative to the key."""
    with np.errstate(invalid="ignore"):
        s = stops_of(radiance) - np.float32(key_stops - stops)  # stops from mid-grey, as shown
        if false_colour:
            t = np.nan_to_num(np.clip(s / FALSE_STOPS + 0.5, 0, 1), nan=0.0)
            picture = np.round(turbo(t)[..., ::-1] * 255).astype(np.uint8)
        else:
            x = np.float32(GREY) * np.exp2(s)
            v = np.clip(s / LOG_STOPS + 0.5, 0, 1) if curve == "log" \
                else np.clip(x / (1 + x) if curve == "reinhard" else x, 0, 1) ** np.float32(1 / 2.2)
            grey = np.round(np.nan_to_num(v, nan=0.0) * 255).astype(np.uint8)
            picture = np.repeat(grey[..., None], 3, axis=2)
    picture[~np.isfinite(radiance)] = 0
    picture[np.isposinf(radiance)] = 255
    return picture
