"""Deformable 3x3 conv as the network runs it (64 -> 64 channels, 8 offset groups, padding 1,
batch 1): the native kernel vs torchvision.ops.deform_conv2d vs a plain conv2d of the same
shape, on this machine's CPU (or --device cuda).

Two kinds of offsets, a few pixels long, some reaching outside the image: "smooth" varies
slowly across the image, as alignment to a moving scene does; "iid" is independent per pixel,
the worst case for the cache.

    .venv/bin/python -m bench.dcn [--repeat 5] [--threads N] [--device cpu|cuda]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d as tv_deform_conv2d

import native
from bench.args import positive_int
from model.factory import resolve_device
from streaming.errors import InputError
from streaming.exits import run_main

SIZES = [(130, 173), (260, 346)]  # (height, width): half and full DAVIS346 resolution
CHANNELS, GROUPS = 64, 8


def _median_seconds(fn, repeat: int, device: torch.device) -> float:
    fn()  # warm-up: allocator, lazy initialisation
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=positive_int, default=5)
    ap.add_argument("--threads", type=positive_int, help="CPU threads (default: torch's)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not native.available:
        raise InputError(f"native extension not available: {native.load_error}")
    device = torch.device(resolve_device(args.device))
    torch.manual_seed(0)
    print(f"device {device}, {torch.get_num_threads()} threads, {CHANNELS} ch, {GROUPS} groups, "
          f"3x3, median of {args.repeat}")
    print(f"{'HxW':>8} {'offsets':>7} {'native ms':>10} {'tv ms':>9} {'conv ms':>8} "
          f"{'tv/native':>10} {'native/conv':>12} {'max|diff|/max|ref|':>19}")
    for h, w in SIZES:
        x = torch.randn(1, CHANNELS, h, w, device=device)
        weight = torch.randn(CHANNELS, CHANNELS, 3, 3, device=device) * 0.05
        bias = torch.randn(CHANNELS, device=device)
        mask = torch.sigmoid(torch.randn(1, GROUPS * 9, h, w, device=device))
        offsets = {
            "smooth": F.interpolate(torch.randn(1, 2 * GROUPS * 9, h // 16 + 2, w // 16 + 2, device=device) * 4,
                                    size=(h, w), mode="bicubic", align_corners=True),
            "iid": torch.randn(1, 2 * GROUPS * 9, h, w, device=device) * 4,
        }
        with torch.inference_mode():
            for kind, offset in offsets.items():
                args_ = (x, offset, weight, bias)
                ref = tv_deform_conv2d(*args_, padding=1, mask=mask)
                got = native.deform_conv2d(*args_, padding=1, mask=mask)
                rel = ((got - ref).abs().max() / ref.abs().max()).item()
                t_nat = _median_seconds(lambda: native.deform_conv2d(*args_, padding=1, mask=mask),
                                        args.repeat, device)
                t_tv = _median_seconds(lambda: tv_deform_conv2d(*args_, padding=1, mask=mask),
                                       args.repeat, device)
                # Measured next to the others: on a shared machine the load drifts.
                t_conv = _median_seconds(lambda: F.conv2d(x, weight, bias, padding=1), args.repeat,
                                         device)
                print(f"{h}x{w:<4} {kind:>7} {t_nat * 1e3:10.1f} {t_tv * 1e3:9.1f} {t_conv * 1e3:8.1f} "
                      f"{t_tv / t_nat:9.1f}x {t_nat / t_conv:11.2f}x {rel:19.1e}")


if __name__ == "__main__":
    run_main(main)
