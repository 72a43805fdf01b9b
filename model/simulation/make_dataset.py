"""Render a split of synthetic event recordings: OUT_DIR/seq_XXXX.h5.

    python -m model.simulation.make_dataset OUT_DIR --split train|test --count N --seconds S --size HxW [--style still] [--first I]

Seeds are fixed per split, so a split is the same on every machine and the test split never
overlaps training:
    train: sequence i has seed         i   (0 <= i < 1,000,000)
    test:  sequence i has seed 1,000,000 + i
    (model.scenes.DEMO_SEED, 2,000,008, is in neither.)
Each seed fixes the scene and the simulator settings (thresholds, noise, refractory period,
photoreceptor bandwidth), which are drawn per sequence so that a model does not learn one
sensor. `--style` picks the scene kind (model.simulation.scenes: "hdr", a moving camera under lights
spanning four decades, or "still", a parked camera in ordinary light); the same seed in the
other style is another scene.
"""
from __future__ import annotations

from streaming.exits import check_output_dir, run_main  # first: it makes a Ctrl-C during the imports quiet

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.simulation.scenes import STYLES, render_sequence
from model.simulation.simulator import SimConfig
from streaming.cli import parse_size
from streaming.errors import InputError

SPLIT_SEED_BASE = {"train": 0, "test": 1_000_000}
SEEDS_PER_SPLIT = 1_000_000
MAX_SEQUENCE_SECONDS = 3600  # a sequence is seconds long; an hour would take days to render
MIN_SIDE = 8


def sequence_seed(split: str, index: int) -> int:
    if not 0 <= index < SEEDS_PER_SPLIT:
        raise ValueError(f"sequence index {index} outside [0, {SEEDS_PER_SPLIT})")
    return SPLIT_SEED_BASE[split] + index


def random_sim_config(seed: int) -> SimConfig:
    """Sensor settings spanning what real DVS/DAVIS cameras show, and wider: thresholds of 0.1 to
    1.5 (log-uniform), as "Reducing the Sim-to-Real Gap" (Stoffregen et al., ECCV 2020) found
    transfers to real cameras best."""
    rng = np.random.default_rng([seed, 1])  # a stream of its own, apart from the scene's
    c_pos = 10 ** rng.uniform(-1, np.log10(1.5))
    return SimConfig(c_pos=c_pos, c_neg=c_pos * rng.uniform(0.75, 1.25), c_sigma=rng.uniform(0.0, 0.05),
                     refractory_us=int(rng.uniform(0, 1000)), shot_noise_hz=10 ** rng.uniform(-2, 0),
                     hot_pixel_fraction=rng.uniform(0, 2e-4), hot_pixel_hz=rng.uniform(50, 500),
                     cutoff_hz=10 ** rng.uniform(2, 3.5), bandwidth_knee=10 ** rng.uniform(-2.5, -1),
                     dark_noise_gain=rng.uniform(0, 10))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.simulation.make_dataset", description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--split", choices=sorted(SPLIT_SEED_BASE), required=True)
    ap.add_argument("--count", type=int, required=True, help="sequences: seq_0000.h5 ...")
    ap.add_argument("--first", type=int, default=0,
                    help="index of the first sequence (default 0): a set from 900000 on shares no scene with one from 0")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each sequence (default 3)")
    ap.add_argument("--size", default="180x240", help="HxW (default 180x240)")
    ap.add_argument("--style", choices=STYLES, default="hdr",
                    help="scene kind (default hdr; indoor: ordinary light on partly flat surfaces; mix: hdr, ordinary or still, drawn per seed)")
    ap.add_argument("--gt-fps", type=float, default=25.0, help="ground-truth frames per second (default 25)")
    args = ap.parse_args(argv)
    if not 0 < args.count <= SEEDS_PER_SPLIT:
        raise InputError(f"--count must be in 1..{SEEDS_PER_SPLIT}, got {args.count}")
    if not 0 <= args.first <= SEEDS_PER_SPLIT - args.count:
        raise InputError(f"--first must be in 0..{SEEDS_PER_SPLIT - args.count} for --count {args.count}, got {args.first}")
    height, width = parse_size(args.size, "--size")
    if min(height, width) < MIN_SIDE:
        raise InputError(f"--size {args.size} is too small (at least {MIN_SIDE}x{MIN_SIDE})")
    # NaN passes any comparison. Past the bounds, the render instants would not fit in memory, or
    # ground-truth frames would share a microsecond timestamp.
    for flag, low, high in (("seconds", 0, MAX_SEQUENCE_SECONDS), ("gt_fps", 1, 1e6)):
        if not low < getattr(args, flag) <= high:
            raise InputError(f"--{flag.replace('_', '-')} must be above {low:g} and at most {high:g}, "
                             f"got {getattr(args, flag)}")
    if args.seconds * args.gt_fps < 2 - 1e-9:  # frames at both ends of each interval
        raise InputError(f"--seconds {args.seconds:g} at --gt-fps {args.gt_fps:g} gives fewer than 3 frames; "
                         "training and evaluation need at least 3")
    check_output_dir(args.out_dir, "OUT_DIR")
    try:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"OUT_DIR {args.out_dir}: cannot be made ({e.strerror})") from None
    for i in tqdm(range(args.first, args.first + args.count), desc=f"{args.split} sequences", unit="seq"):
        seed = sequence_seed(args.split, i)
        path = args.out_dir / f"seq_{i:04d}.h5"
        partial = path.with_name(path.name + ".partial")  # no HDF5 suffix: no folder listing takes it for a recording
        try:
            if not render_sequence(partial, seed, height, width, args.seconds, args.gt_fps, random_sim_config(seed),
                                   style=args.style):
                raise InputError(f"{path}: the scene gave no events at {height}x{width} in {args.seconds:g} s, and "
                                 "training and evaluation need them; give a larger --size or more --seconds")
            partial.replace(path)  # complete, so under its name: an interrupted run never leaves one that looks it
        except BaseException as e:  # Ctrl-C included: a half-written sequence is no use to anyone
            partial.unlink(missing_ok=True)
            if isinstance(e, OSError):
                raise InputError(f"{path}: cannot be written ({e.strerror or e})") from None
            raise
    return 0


if __name__ == "__main__":
    run_main(main)
