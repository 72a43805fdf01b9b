"use strict";
// Linear radiance to screen pixels, as streaming/display.py does it for the desktop viewer:
// the scene's key (log2 of its geometric-mean radiance, smoothed over the stream's own clock)
// maps to mid-grey, the exposure slider shifts that in stops, and a tone curve takes it to
// the screen. Kept apart from the page's wiring so that the two can be read side by side.
const Tonemap = (() => {
  const GREY = 0.18;
  const EPS = 1e-6;  // radiance at or below it counts as this dark (the filters' output can be <= 0)
  const AUTO_TAU_S = 0.5;  // auto-exposure's time constant: follows the scene, not each frame's noise
  const LOG_STOPS = 12;  // the log curve shows this many stops around mid-grey
  const FALSE_STOPS = 16;  // and false colour these
  const SAMPLES = 16384;  // pixels enough for the key of any frame

  function stopsOf(v) { return Math.log2(v > EPS ? v : EPS); }

  // log2 of the geometric mean, over a regular sample; non-finite pixels stay out of it.
  function key(pixels) {
    const step = Math.max(1, Math.floor(pixels.length / SAMPLES));
    let sum = 0, n = 0;
    for (let i = 0; i < pixels.length; i += step) {
      const v = pixels[i];
      if (Number.isFinite(v)) { sum += stopsOf(v); n++; }
    }
    return n ? sum / n : null;
  }

  // Causal and smoothed: each frame moves the key towards its own by how much stream time passed.
  class AutoExposure {
    constructor() { this.key = null; this.t_us = null; }
    follow(pixels, t_us) {
      const k = key(pixels);
      if (k === null) return;
      if (this.key === null || this.t_us === null || t_us <= this.t_us) {
        this.key = k;  // the first frame, or a new run (its clock starts again)
      } else {
        this.key += (k - this.key) * (1 - Math.exp(-(t_us - this.t_us) / 1e6 / AUTO_TAU_S));
      }
      this.t_us = t_us;
    }
  }

  // Google's polynomial fit of the Turbo colour map (Apache-2.0), t in [0, 1] -> [r, g, b] in [0, 1]
  // (streaming/exposure.py's TURBO).
  function turbo(t) {
    const t2 = t * t, t3 = t2 * t, t4 = t3 * t, t5 = t4 * t;
    return [
      0.13572138 + 4.61539260 * t - 42.66032258 * t2 + 132.13108234 * t3 - 152.94239396 * t4 + 59.28637943 * t5,
      0.09140261 + 2.19418839 * t + 4.84296658 * t2 - 14.18503333 * t3 + 4.27729857 * t4 + 2.82956604 * t5,
      0.10667330 + 12.64194608 * t - 60.58204836 * t2 + 110.36276771 * t3 - 89.90310912 * t4 + 27.34824973 * t5,
    ];
  }

  const clamp01 = (v) => (v < 0 ? 0 : v > 1 ? 1 : v);
  const display = (v) => Math.pow(clamp01(v), 1 / 2.2);  // a linear value to the screen's gamma

  // stops: exposure relative to the key; returns [r, g, b] in 0..255 for one radiance value.
  function pixel(radiance, keyStops, stops, curve, falseColour) {
    if (!Number.isFinite(radiance)) return radiance > 0 ? [255, 255, 255] : [0, 0, 0];
    const s = stopsOf(radiance) - keyStops + stops;  // stops from mid-grey, as shown
    if (falseColour) return turbo(clamp01(s / FALSE_STOPS + 0.5)).map((c) => Math.round(255 * clamp01(c)));
    const x = GREY * Math.pow(2, s);
    const v = curve === "log" ? clamp01(s / LOG_STOPS + 0.5)
      : curve === "reinhard" ? display(x / (1 + x)) : display(x);
    const g = Math.round(255 * v);
    return [g, g, g];
  }

  return { AutoExposure, pixel, turbo, stopsOf, FALSE_STOPS };
})();
