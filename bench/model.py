"""EventHDR cost per output frame: counted MACs and measured time, streaming against the
official sliding window, for each configuration and resolution.

    .venv/bin/python -m bench.model [--quick] [--configs eventhdr eventhdr_cpu]
                                    [--sizes 180x240 260x346 480x640] [--frames N] [--max-gmac G]
                                    [--device cpu|cuda]

- GMAC: multiply-accumulates per output, counted with forward hooks: every conv, and every
  deformable conv as its conv plus its sampling (4 bilinear taps + 1 mask product per sampled
  value). "stream" computes each window's features once; "sliding" recomputes all three windows'
  (the official code); "(sampling)" is the sampling's share of "sliding" (the network spec's
  figures, ~473 GMAC at 346x260 for the official size, count convolutions only). Counted at a
  small size and scaled by the padded pixel count, which is exact: padded sizes are multiples of
  16, so every pyramid level divides evenly.
- ms/frame: the streaming wrapper (push of a VoxelWindow to numpy frame) and the plain sliding
  forward on the same windows in the same run, after one warm-up output each; ratio = sliding /
  stream. Random weights and random sparse voxel grids: the cost does not depend on the values.
  Timing is skipped where the sliding GMAC exceed --max-gmac (the official size at 640x480 takes
  minutes per frame on a laptop CPU); the table says so.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from bench.args import positive_int
from model.eventhdr import EventHDR, make_arch
from model.layers import DCNPack
from model.stream import CentredPad, EventHDRStream
from streaming.cli import parse_size
from streaming.config import load_config, resolve_device
from streaming.datatypes import EventPacket, InputError, VoxelWindow
from streaming.exits import run_main

COUNT_SIZE = 64  # a multiple of 16: MACs counted at 64x64 scale exactly to any padded size
SAMPLING_MACS = 5  # per sampled value of a deformable conv: 4 bilinear taps + 1 mask product


class MacCounter:
    """MACs of every Conv2d and DCNPack run inside `with`: `conv` (a DCNPack's conv_offset is a
    Conv2d of its own) and `sampling` (the deformable convs' bilinear sampling)."""

    def __init__(self, net: nn.Module):
        self.net, self.conv, self.sampling = net, 0, 0

    def __enter__(self):
        self.hooks = [m.register_forward_hook(self._hook) for m in self.net.modules()
                      if isinstance(m, (nn.Conv2d, DCNPack))]
        return self

    def _hook(self, module: nn.Module, inputs, out: torch.Tensor) -> None:
        if isinstance(module, DCNPack):
            sampled = out.shape[0] * out.shape[2] * out.shape[3] * module.weight.shape[1] * 9
            self.conv += sampled * module.weight.shape[0]
            self.sampling += sampled * SAMPLING_MACS
        else:
            kh, kw = module.kernel_size
            self.conv += out.numel() * module.in_channels // module.groups * kh * kw

    def __exit__(self, *exc):
        for h in self.hooks:
            h.remove()

    @property
    def total(self) -> int:
        return self.conv + self.sampling


@torch.inference_mode()
def gmac_per_output(net: EventHDR, height: int, width: int) -> tuple[float, float, float]:
    """(stream, sliding, sliding's deformable sampling) GMAC per output at a height x width sensor."""
    x = torch.zeros(1, net.arch["num_in_ch"], COUNT_SIZE, COUNT_SIZE, device=next(net.parameters()).device)
    with MacCounter(net) as extract:
        pyramid = net.extract(x)
    with MacCounter(net) as predict:
        net.predict([pyramid] * net.num_frame, None)
    pad = CentredPad(height, width)
    scale = (height + sum(pad.pads[2:])) * (width + sum(pad.pads[:2])) / COUNT_SIZE ** 2 / 1e9
    return ((extract.total + predict.total) * scale,
            (net.num_frame * extract.total + predict.total) * scale,
            (net.num_frame * extract.sampling + predict.sampling) * scale)


def random_windows(n: int, channels: int, height: int, width: int, seed: int = 0) -> list[VoxelWindow]:
    rng = np.random.default_rng(seed)
    return [VoxelWindow(j, j * 25000, (j + 1) * 25000,
                        rng.poisson(0.2, (channels, height, width)).astype(np.float32), EventPacket.empty())
            for j in range(n)]


@torch.inference_mode()
def ms_per_frame(net: EventHDR, height: int, width: int, frames: int) -> tuple[float, float]:
    """(stream, sliding) milliseconds per output frame, one warm-up output each, same windows."""
    t, warm = net.num_frame, 1
    device = next(net.parameters()).device
    windows = random_windows(t - 1 + warm + frames, net.arch["num_in_ch"], height, width)

    stream = EventHDRStream(net, height, width)
    for w in windows[:t - 1 + warm]:
        stream.push(w)
    t0 = time.perf_counter()
    for w in windows[t - 1 + warm:]:
        stream.push(w)
    t_stream = (time.perf_counter() - t0) / frames

    pad = CentredPad(height, width)
    grids = torch.stack([torch.from_numpy(w.grid) for w in windows])  # on the host, as the stream's
    state = None
    for j in range(warm + frames):
        if j == warm:
            t0 = time.perf_counter()
        out, state = net(pad.pad(grids[j:j + t].to(device))[None], state)
        pad.crop(out)[0, 0].cpu().numpy()  # the copy back also waits for a GPU to finish
    t_sliding = (time.perf_counter() - t0) / frames
    return t_stream * 1e3, t_sliding * 1e3


def _size(text: str) -> tuple[int, int]:
    height, width = parse_size(text, "--sizes")
    if min(height, width) < 16:  # the smallest the pyramid's three levels take
        raise InputError(f"--sizes {text}: each side must be 16 or more")
    return height, width


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["eventhdr", "eventhdr_cpu"])
    ap.add_argument("--sizes", nargs="+", default=["180x240", "260x346", "480x640"],
                    help="HxW, as every size flag here: 260x346 is a DAVIS346's sensor")
    ap.add_argument("--frames", type=positive_int, default=3, help="timed output frames per measurement")
    ap.add_argument("--max-gmac", type=float, default=1000, help="skip timing above this sliding-window cost")
    ap.add_argument("--quick", action="store_true", help="1 timed frame; time nothing above 500 sliding GMAC")
    ap.add_argument("--threads", type=positive_int, default=torch.get_num_threads())
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    args = ap.parse_args()
    sizes = [_size(text) for text in args.sizes]
    if args.quick:
        args.frames, args.max_gmac = 1, min(args.max_gmac, 500)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    device = resolve_device(args.device)
    where = f"CPU, {args.threads} threads" if device == "cpu" else torch.cuda.get_device_name(device)
    print(f"EventHDR per output frame, {where}, {args.frames} timed frame(s), random weights")
    print(f"{'config':<14}{'HxW':>9}{'GMAC stream':>13}{'GMAC sliding':>14}{'(sampling)':>12}"
          f"{'ms stream':>11}{'ms sliding':>12}{'sliding/stream':>16}")
    skipped = []
    models = {name: load_config(name).model for name in args.configs}
    for name, model in models.items():
        if model["type"] != "eventhdr":
            raise InputError(f"config {name}: its model is {model['type']}, not a network; nothing to count")
    for name, model in models.items():
        net = EventHDR(**make_arch(model.get("arch"))).eval().to(device)
        for height, width in sizes:
            size = f"{height}x{width}"
            g_stream, g_sliding, g_sampling = gmac_per_output(net, height, width)
            row = f"{name:<14}{size:>9}{g_stream:>13.2f}{g_sliding:>14.2f}{g_sampling:>12.2f}"
            if g_sliding > args.max_gmac:
                skipped.append(f"{name} at {size} ({g_sliding:.0f} GMAC > --max-gmac {args.max_gmac:g})")
                print(f"{row}{'skipped':>11}{'skipped':>12}{'-':>16}", flush=True)
                continue
            ms_stream, ms_sliding = ms_per_frame(net, height, width, args.frames)
            print(f"{row}{ms_stream:>11.1f}{ms_sliding:>12.1f}{ms_sliding / ms_stream:>16.2f}", flush=True)
    if skipped:
        print("timing skipped: " + "; ".join(skipped))


if __name__ == "__main__":
    run_main(main)
