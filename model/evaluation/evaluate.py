"""Evaluate reconstructions against ground truth, in the official protocol.

    python evaluate.py RECORDINGS... [--model CKPT ...] [--config NAME ...] [--out table.md]

Windows are frame-aligned (window j ends at image j); each model sees every window of a
sequence with its state reset at the start; output j is compared with image j for the
centre windows j = 1 .. N-2 (the first and last have no neighbour for EventHDR and are
skipped for every model, so all models are scored on the same frames). Metrics: see
model/evaluation/metrics.py: the official protocol's PSNR and SSIM, mu-law PSNR, and PSNR and SSIM of log
radiance. Every table holds a blank (all-black) output, the high-pass filter, PIE-Net and
PIE-Net-Lite (the yardstick: our network must beat them) and our default network, then the
models asked for. On HDR scenes, whose percentile-normalised frames are mostly dark, the blank
scores more linear PSNR than the filter, so a model must beat that floor to show it
reconstructs anything.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.evaluation.metrics import sequence_metrics
from model.factory import THREADS_HELP, make_reconstructor, resolve_device, set_threads
from streaming.config import load_config, model_from_flag
from streaming.errors import InputError
from streaming.exits import check_output_folder, run_main, same_file
from streaming.h5format import H5_SUFFIXES
from streaming.offline import voxel_windows
from streaming.sources.open import is_ros2_bag, open_recording
from streaming.windows import Cut, WindowPolicy

METRICS = ("psnr", "ssim", "mu_psnr", "log_psnr", "log_ssim")
HEADINGS = ("PSNR (dB)", "SSIM", "mu-law PSNR (dB)", "log PSNR (dB)", "log SSIM")
# the rows of every table, before the models asked for
STANDARD_ROWS = {"highpass": {"type": "highpass"}, "pienet": {"type": "pienet"},
                 "pienet-lite": {"type": "pienet-lite"}}


def reconstruct(model, windows) -> dict[int, np.ndarray]:
    """Window index -> output image, for every window the model emits a frame for."""
    model.reset()
    out, seen = {}, []
    for w in windows:
        seen.append(w.seq)
        image = model.push(w)
        if image is not None:
            out[seen[-1 - model.lookahead]] = image
    return out


def frame_windows(path, bins: int = 5):
    """(the recording's frame-aligned windows, their ground truth (N, H, W), (height, width)),
    for training and evaluation alike. The ground truth is checked: NaN or inf would turn every
    mean in the table into nan, and an image whose size is not the sensor's would fail deep in
    the metrics or a crop. Three windows at least: EventHDR's first and last have no neighbour."""
    src = open_recording(str(path))
    try:
        windows = list(voxel_windows(src, WindowPolicy(Cut.FRAMES), bins))
    finally:
        src.close()
    if len(windows) < 3:
        raise InputError(f"{path}: needs at least 3 intensity frames, has {len(windows)}")
    size = (src.height, src.width)
    for w in windows:
        image = w.reference.image
        if image.shape != size:
            raise InputError(f"{path}: an intensity image at {w.reference.t_us} us is {image.shape[0]}x"
                             f"{image.shape[1]}, not the sensor's {size[0]}x{size[1]} (height x width)")
        if not np.isfinite(image).all():
            raise InputError(f"{path}: the intensity image at {w.reference.t_us} us holds NaN or inf; "
                             "ground truth must be finite")
    return windows, np.stack([w.reference.image for w in windows]), size


def evaluate_file(path, models: dict[str, dict], device: str = "cpu") -> dict[str, dict]:
    """Each network sees grids of the bins it was made for (its input channels / 2)."""
    by_bins = {5: frame_windows(path, 5)}  # the filter reads events, not grids: any bins do
    _, truth, (height, width) = by_bins[5]
    centres = range(1, len(truth) - 1)
    truth = truth[1:-1]
    results = {"blank": sequence_metrics(np.zeros_like(truth), truth)}
    for name, cfg in models.items():
        model = make_reconstructor(cfg, height, width, device)
        bins = model.bins if model.uses_grid else 5
        if bins not in by_bins:
            by_bins[bins] = frame_windows(path, bins)
        frames = reconstruct(model, by_bins[bins][0])
        results[name] = sequence_metrics(np.stack([frames[j] for j in centres]), truth)
    return results


def table(per_file: dict[str, dict[str, dict]]) -> str:
    models = list(next(iter(per_file.values())))
    lines = ["| model | " + " | ".join(HEADINGS) + " |", "|---" * (len(HEADINGS) + 1) + "|"]
    for m in models:
        means = [np.mean([r[m][k] for r in per_file.values()]) for k in METRICS]
        lines.append(f"| {m} | " + " | ".join(f"{v:.4f}" if "ssim" in k else f"{v:.2f}"
                                              for k, v in zip(METRICS, means)) + " |")
    return "\n".join(lines) + f"\n\n{len(per_file)} sequence(s): " + ", ".join(Path(p).name for p in per_file)


def checkpoint_labels(paths: list[str]) -> list[str]:
    """A checkpoint's row label: its file name, or the path as given where two runs share a
    name (runs/a/model.pth, runs/b/model.pth), so that no row silently replaces another."""
    names = [Path(p).name for p in paths]
    return [n if names.count(n) == 1 else p for n, p in zip(names, paths)]


def recordings(paths) -> list[Path]:
    """Files as named, and the HDF5 files of folders (a ROS 2 bag's folder is one recording),
    each opened and checked for intensity frames before any work: a bad last file must not
    cost the evaluation or the loading of all the others."""
    files = []
    for p in map(Path, paths):
        if not p.exists():
            raise InputError(f"{p}: no such file or folder")
        found = sorted(f for f in p.iterdir() if f.suffix.lower() in H5_SUFFIXES) \
            if p.is_dir() and not is_ros2_bag(p) else [p]
        if not found:
            raise InputError(f"{p}: holds no HDF5 recordings ({', '.join(H5_SUFFIXES)})")
        files += found
    for f in files:
        src = open_recording(str(f))
        src.close()
        if not src.has_frames:
            raise InputError(f"{f}: has no intensity frames; training and evaluation need them as ground truth")
    return files


def check_table_path(out: str, inputs: list[Path]) -> None:
    """--out is written after the whole evaluation, over whatever is there: never a recording."""
    path = Path(out)
    if path.is_dir():
        raise InputError(f"--out {out}: is a folder; name the file to write the table to")
    if any(same_file(path, f) for f in inputs):
        raise InputError(f"--out {out}: is one of the recordings; name another file for the table, such as table.md")
    if path.suffix.lower() in H5_SUFFIXES:
        raise InputError(f"--out {out}: an HDF5 name, for a markdown table; name it such as table.md")
    check_output_folder(out, "--out")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recordings", nargs="+", help="recordings with intensity frames (any format run_replay.py reads), or folders of HDF5 files")
    ap.add_argument("--model", action="append", default=[], help="a checkpoint to evaluate (repeatable)")
    ap.add_argument("--config", action="append", default=[], help="a configuration to evaluate (repeatable)")
    ap.add_argument("--out", help="also write the table (markdown) to this file")
    ap.add_argument("--device", default="auto", metavar="auto|cpu|cuda[:N]",
                    help="where the networks run (default auto: the first CUDA GPU torch sees, else the CPU)")
    ap.add_argument("--threads", type=int, default=0, help=THREADS_HELP)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    device = resolve_device(args.device)  # a missing GPU is one line before any work, not a half-drawn bar
    default = load_config()  # our network, in every table
    models = {**STANDARD_ROWS, f"{default.model['type']} (default)": default.model}
    models.update({label: model_from_flag(m) for label, m in zip(checkpoint_labels(args.model), args.model)})
    models.update({c: load_config(c).model for c in args.config})
    for cfg in models.values():  # a bad checkpoint or config is one line before any work
        make_reconstructor(cfg, 16, 16, "cpu")
    files = recordings(args.recordings)
    if args.out:
        check_table_path(args.out, files)
    with tqdm(files, desc="evaluating") as bar:  # closed as an error passes: not redrawn after its line
        per_file = {str(f): evaluate_file(f, models, device=device) for f in bar}
    text = table(per_file)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    run_main(main)
