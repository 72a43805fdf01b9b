"""Reconstructors' time per frame, side by side in one run: our default network (bf16 where the
CPU has it natively, and float32), PIE-Net-Lite and PIE-Net (the yardstick), the official-size
EventHDR on request; and our network's counted GMAC.

    .venv/bin/python -m bench.model [--sizes 260x346 480x640 720x1280] [--frames N]
                                    [--models livehdr livehdr-fp32 pienet-lite pienet] [--threads T]

- Each model runs as the pipeline runs it (model.factory.make_reconstructor: push of a
  VoxelWindow to a numpy frame), on the same random sparse windows, on `--threads` torch
  threads: by default the live pipeline's count (one per core less one, model.factory.live_threads).
- The machine is noisy, so the models take turns frame by frame and each one's time is its
  median: a burst of other work slows every model alike. Ratios are against PIE-Net-Lite at the
  same size, measured in the same run.
- GMAC: multiply-accumulates per frame of our network, counted with forward hooks (every conv, and
  every deformable conv as its conv plus its sampling: 4 bilinear taps and a mask product).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn

from bench.args import positive_int
from model.factory import cpu_has_bf16, live_threads, make_reconstructor
from model.networks.layers import DCNPack
from model.networks.livehdr import SCALE
from streaming.cli import parse_size
from streaming.config import load_config
from streaming.datatypes import EventPacket, VoxelWindow
from streaming.exits import run_main

SAMPLING_MACS = 5  # per sampled value of a deformable conv: 4 bilinear taps + 1 mask product
REFERENCE = "pienet-lite"


class MacCounter:
    """MACs of every Conv2d, ConvTranspose2d and DCNPack run inside `with`."""

    def __init__(self, net: nn.Module):
        self.net, self.total = net, 0

    def __enter__(self):
        self.hooks = [m.register_forward_hook(self._hook) for m in self.net.modules()
                      if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, DCNPack))]
        return self

    def _hook(self, module: nn.Module, inputs, out: torch.Tensor) -> None:
        if isinstance(module, DCNPack):
            sampled = out.shape[0] * out.shape[2] * out.shape[3] * module.weight.shape[1] * 9
            self.total += sampled * (module.weight.shape[0] + SAMPLING_MACS)
        elif isinstance(module, nn.ConvTranspose2d):
            self.total += inputs[0].numel() * module.out_channels * module.kernel_size[0] * module.kernel_size[1]
        else:
            kh, kw = module.kernel_size
            self.total += out.numel() * module.in_channels // module.groups * kh * kw

    def __exit__(self, *exc):
        for h in self.hooks:
            h.remove()


def model_config(name: str) -> dict:
    """A --models name: livehdr (the default config's network, its own precision), livehdr-fp32,
    livehdr-bf16, pienet, pienet-lite, or a config name."""
    if name in ("pienet", "pienet-lite"):
        return {"type": name}
    if name.startswith("livehdr"):
        cfg = dict(load_config("livehdr").model)
        cfg["precision"] = name.partition("-")[2] or cfg.get("precision", "auto")
        return cfg
    return load_config(name).model


def random_windows(n: int, bins: int, height: int, width: int, seed: int = 0) -> list[VoxelWindow]:
    rng = np.random.default_rng(seed)
    return [VoxelWindow(j, j * 25000, (j + 1) * 25000,
                        rng.poisson(0.2, (2 * bins, height, width)).astype(np.float32), EventPacket.empty())
            for j in range(n)]


def time_models(models: dict, height: int, width: int, frames: int) -> dict[str, float]:
    """Median ms per frame of each model, the models taking turns frame by frame after 3 warm-up frames."""
    windows = random_windows(frames + 3, 5, height, width)
    times = {name: [] for name in models}
    for j, w in enumerate(windows):
        for name, model in models.items():
            t0 = time.perf_counter()
            model.push(w)
            if j >= 3:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


@torch.inference_mode()
def gmac(height: int, width: int) -> float:
    """Our default network's GMAC per frame at height x width (padded to multiples of 4)."""
    stream = make_reconstructor(load_config("livehdr").model, height, width, "cpu")
    net = stream.net.float()
    h, w = -(-height // SCALE) * SCALE, -(-width // SCALE) * SCALE
    with MacCounter(net) as count:
        net(torch.zeros(1, 2 * net.bins, h, w))
    return count.total / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["livehdr", "livehdr-fp32", REFERENCE, "pienet"])
    ap.add_argument("--sizes", nargs="+", default=["260x346"],
                    help="HxW, as every size flag here: 260x346 is a DAVIS346's sensor")
    ap.add_argument("--frames", type=positive_int, default=20, help="timed frames per model and size")
    ap.add_argument("--threads", type=positive_int, default=live_threads(),
                    help="torch threads (default: the live pipeline's, one per core less one)")
    args = ap.parse_args()
    sizes = [parse_size(text, "--sizes") for text in args.sizes]
    configs = {name: model_config(name) for name in args.models}
    torch.manual_seed(0)
    print(f"per frame, CPU, {args.threads} torch thread(s), native bf16: {'yes' if cpu_has_bf16() else 'no'}; "
          f"median of {args.frames} frames, the models taking turns; ratio: {REFERENCE}'s ms / the model's")
    print(f"{'model':<16}{'HxW':>10}{'GMAC':>8}{'ms/frame':>10}{'frames/s':>10}{'ratio':>8}")
    for height, width in sizes:
        models = {name: make_reconstructor(cfg, height, width, "cpu") for name, cfg in configs.items()}
        torch.set_num_threads(args.threads)  # after building: make_reconstructor may set its own
        ms = time_models(models, height, width, args.frames)
        ours = gmac(height, width)
        for name in models:
            ratio = f"{ms[REFERENCE] / ms[name]:>8.2f}" if REFERENCE in ms else f"{'-':>8}"
            count = f"{ours:>8.2f}" if name.startswith("livehdr") else f"{'-':>8}"
            print(f"{name:<16}{f'{height}x{width}':>10}{count}{ms[name]:>10.1f}{1e3 / ms[name]:>10.1f}{ratio}",
                  flush=True)


if __name__ == "__main__":
    run_main(main)
