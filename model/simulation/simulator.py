"""ESIM-style event simulator: rendered linear frames in, EventPackets out.

Each pixel keeps a reference log intensity log(I + eps). Between two rendered frames the
pixel's log intensity is taken to move linearly; every time it crosses reference + C+
(or reference - C-) the pixel emits an event at the interpolated instant and the reference
moves by one threshold. The thresholds vary from pixel to pixel (a fixed pattern drawn once,
as in real sensors). A pixel that fired less than the refractory period ago stays silent but
its reference still moves: it was held in reset, so the change is lost, as on real sensors.
Shot noise (random events anywhere) and hot pixels (a few pixels firing at a high rate) are
added on top and never touch the references.

Light level, as on a real photoreceptor (after v2e, Delbruck et al. 2020): the pixel
sees its log intensity through a first-order low-pass filter whose bandwidth is proportional to
the photocurrent, `cutoff_hz` at and above the radiance `bandwidth_knee`, so an edge moving
through deep shadow gives fewer, later events than the same edge in light; and shot noise is
`1 + dark_noise_gain` times more frequent in the dark than in full light. Both are how a
network can tell a shadow from a lit surface of the same texture: events alone carry only log
contrast. The defaults (infinite bandwidth, no gain) are the ideal sensor.

Radiance units: the scene generator renders the brightest light at about 1, so `eps` is
relative to that.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from streaming.datatypes import EventPacket

_NEVER_FIRED = np.iinfo(np.int64).min // 2  # far enough in the past for any refractory period


@dataclass(frozen=True)
class SimConfig:
    c_pos: float = 0.2             # ON threshold, in log intensity
    c_neg: float = 0.2             # OFF threshold, in log intensity
    c_sigma: float = 0.03          # per-pixel Gaussian spread of both thresholds
    c_min: float = 0.01            # floor: a pixel with a zero threshold would fire forever
    refractory_us: int = 100
    shot_noise_hz: float = 0.1     # random events per pixel per second
    hot_pixel_fraction: float = 1e-4
    hot_pixel_hz: float = 200.0    # events per second from each hot pixel
    eps: float = 1e-6              # log(I + eps): the dark floor of the log response
    cutoff_hz: float = math.inf    # photoreceptor bandwidth in full light
    bandwidth_knee: float = 0.1    # radiance below which bandwidth (and noise) follow the light
    dark_noise_gain: float = 0.0   # extra shot noise in the dark, relative to full light


@numba.njit(nogil=True, cache=True)
def _threshold_events(image, eps, log_prev, ref, c_pos, c_neg, last_t, t0, t1, refractory_us,
                      cutoff_hz, bandwidth_knee):
    """Events of all pixels as their filtered log intensity goes linearly from log_prev (at t0)
    towards log(image + eps) (at t1), through a low-pass filter of bandwidth cutoff_hz *
    min(1, image / bandwidth_knee). Updates log_prev, ref and last_t in place.

    Returns (pixel index, t, p) in pixel order; each pixel's events are in time order."""
    img = image.ravel()
    n_px = img.size
    log_new = np.empty(n_px)
    step_s = (t1 - t0) * 1e-6
    bound = 0  # crossings before the refractory period removes some: an upper bound
    for i in range(n_px):
        settled = 1.0  # the fraction of the change the filter passes within the step: all, ideally
        if cutoff_hz < math.inf:  # exact for a first-order filter and a step of constant input
            bandwidth = cutoff_hz * min(1.0, img[i] / bandwidth_knee)
            settled = 1.0 - math.exp(-2 * math.pi * bandwidth * step_s)
        log_new[i] = log_prev[i] + settled * (np.log(img[i] + eps) - log_prev[i])
        d = log_new[i] - ref[i]
        bound += int(d / c_pos[i]) if d > 0 else int(-d / c_neg[i])
    idx = np.empty(bound, np.int64)
    ts = np.empty(bound, np.int64)
    ps = np.empty(bound, np.int8)
    n = 0
    for i in range(n_px):
        d = log_new[i] - ref[i]
        pol = 1 if d > 0 else -1
        c = c_pos[i] if d > 0 else c_neg[i]
        k = int(abs(d) / c)
        slope = log_new[i] - log_prev[i]
        for j in range(1, k + 1):
            level = ref[i] + pol * j * c
            frac = (level - log_prev[i]) / slope if slope != 0.0 else 1.0
            # at least 1 us after t0: the step owns (t0, t1], the instant t0 was the last step's
            t = t0 + max(1, int(round(min(frac, 1.0) * (t1 - t0))))
            if t - last_t[i] >= refractory_us:
                last_t[i] = t
                idx[n] = i
                ts[n] = t
                ps[n] = pol
                n += 1
        ref[i] += pol * k * c
        log_prev[i] = log_new[i]
    return idx[:n], ts[:n], ps[:n]


class EventSimulator:
    """Streams rendered frames into events. Deterministic given the seed.

    step(linear_image float32 (H, W), t_us) -> EventPacket of the events in (t_prev, t_us],
    time-ordered. The first call only sets the references and returns no events."""

    def __init__(self, height: int, width: int, config: SimConfig = SimConfig(),
                 seed: int | np.random.SeedSequence = 0):
        self.height, self.width, self.config = height, width, config
        self._rng = np.random.default_rng(seed)
        n_px = height * width
        self._c_pos = self._threshold_map(config.c_pos, n_px)
        self._c_neg = self._threshold_map(config.c_neg, n_px)
        n_hot = int(round(config.hot_pixel_fraction * n_px))
        self._hot_idx = self._rng.choice(n_px, n_hot, replace=False)
        self._hot_pol = self._rng.choice(np.array([-1, 1], np.int8), n_hot)  # a hot pixel sticks to one polarity
        self._log = np.empty(n_px)
        self._ref = np.empty(n_px)
        self._last_t = np.full(n_px, _NEVER_FIRED, np.int64)
        self._t = None

    def _threshold_map(self, mean, n_px):
        c = self._rng.normal(mean, self.config.c_sigma, n_px)
        return np.maximum(c, self.config.c_min)

    def step(self, linear_image: np.ndarray, t_us: int) -> EventPacket:
        image = np.ascontiguousarray(linear_image, np.float32)
        if image.shape != (self.height, self.width):
            raise ValueError(f"image shape {image.shape} != sensor ({self.height}, {self.width})")
        if not (np.isfinite(image).all() and image.min() >= 0):
            raise ValueError("linear images must be finite and non-negative")
        if self._t is None:
            self._log[:] = np.log(image.ravel().astype(np.float64) + self.config.eps)
            self._ref[:] = self._log
            self._t = int(t_us)
            return EventPacket.empty()
        if t_us <= self._t:
            raise ValueError(f"time must increase: step at {t_us} us after {self._t} us")
        t0, self._t = self._t, int(t_us)
        cfg = self.config
        idx, t, p = _threshold_events(image, cfg.eps, self._log, self._ref, self._c_pos, self._c_neg,
                                      self._last_t, t0, self._t, cfg.refractory_us, cfg.cutoff_hz,
                                      cfg.bandwidth_knee)
        n_idx, n_t, n_p = self._noise(image, t0, self._t)
        idx, t, p = np.concatenate((idx, n_idx)), np.concatenate((t, n_t)), np.concatenate((p, n_p))
        order = np.argsort(t, kind="stable")  # keeps each pixel's events in their order
        idx, t, p = idx[order], t[order], p[order]
        return EventPacket(t, (idx % self.width).astype(np.uint16), (idx // self.width).astype(np.uint16), p)

    def _noise(self, image, t0, t1):
        """Shot-noise and hot-pixel events in (t0, t1], unordered."""
        cfg, dt_s = self.config, (t1 - t0) * 1e-6
        # each pixel's rate relative to full light; a pixel is drawn in proportion to its own
        rate = 1 + cfg.dark_noise_gain * (1 - np.minimum(image.ravel() / cfg.bandwidth_knee, 1))
        cum = np.cumsum(rate)
        n_shot = self._rng.poisson(cfg.shot_noise_hz * cum[-1] * dt_s)
        shot_idx = np.minimum(np.searchsorted(cum, self._rng.uniform(0, cum[-1], n_shot), side="right"),
                              len(cum) - 1)
        shot_pol = self._rng.choice(np.array([-1, 1], np.int8), n_shot)
        hot_counts = self._rng.poisson(cfg.hot_pixel_hz * dt_s, len(self._hot_idx))
        idx = np.concatenate((shot_idx, np.repeat(self._hot_idx, hot_counts)))
        pol = np.concatenate((shot_pol, np.repeat(self._hot_pol, hot_counts)))
        t = self._rng.integers(t0 + 1, t1 + 1, len(idx))
        return idx.astype(np.int64), t.astype(np.int64), pol
