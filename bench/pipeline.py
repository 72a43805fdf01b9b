"""The replay pipeline end to end on the demo recording.

    python -m bench.pipeline [--config highpass] [--file RECORDING]

1. Replay at `max` through the whole pipeline (binner, ring, model, publisher): events/s in,
   frames/s out, latency percentiles; and the model alone on the same windows, so the
   pipeline's overhead is a ratio measured in the same run.
2. Pacing at 1x: wall time of the paced replay over the recording's duration (ideal 1.000).
3. Live: a DV network stream served by a second process at fixed event rates (346x260 unless
   --live-size says otherwise, e.g. 480x640 for a DVXplorer; the stream converted to dv stores
   before it starts, as a camera's are), reconstructed by the pipeline: events received over
   events sent, frames over the stream's windows, how long after the stream's end the run ended
   (a reader that falls behind ends late), latency, how far reading ran behind the stream's
   clock at most, merges. A network on the CPU runs each rate twice: as the pipeline sets it up
   (torch leaves a core to reading) and, for reference, with torch on every core.
"""
import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench.args import positive_float
from model.factory import live_threads, make_reconstructor, run_device
from model.simulation.demo import ensure_demo_recording
from streaming.cli import SENSOR_SIZE_HELP, TOPIC_HELP, parse_size
from streaming.config import load_config
from streaming.datatypes import EventPacket
from streaming.exits import run_main
from streaming.offline import voxel_windows
from streaming.outputs.publisher import Publisher
from streaming.outputs.sinks import Outputs
from streaming.pipeline import Pipeline
from streaming.sources.dv import NetworkSource
from streaming.sources.open import open_recording
from streaming.sources.pacing import paced


def quiet_pipeline(src, cfg, model) -> Pipeline:
    """Unpaced, no stats lines, a publisher nobody listens to."""
    return Pipeline(src, cfg, model, Publisher(cfg.publish, log=lambda s: None), float("inf"),
                    Outputs(stats_every_s=1e9), log=lambda s: None)


def model_only(open_src, cfg):
    """The same windows, binned up front, pushed straight into the model."""
    src = open_src()
    windows = list(voxel_windows(src, cfg.window, cfg.bins))
    model = make_reconstructor(cfg.model, src.height, src.width, cfg.device)
    t0 = time.perf_counter()
    for w in windows:
        model.push(w)
    return len(windows), time.perf_counter() - t0


def live(cfg, rate: float, seconds: float, size: tuple[int, int], torch_threads: int | None = None) -> int:
    """One live run; its frames. torch_threads: instead of the pipeline's choice (a network on the
    CPU leaves a core to reading), for a reference."""
    with socket.socket() as s:  # a free loopback port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, str(Path(__file__).parents[1] / "tests" / "dvserver.py"), str(port),
                               "--seconds", str(seconds), "--rate", str(rate), "--width", str(size[1]),
                               "--height", str(size[0]), "--wait-client", "--prebuilt"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        src = NetworkSource(f"tcp://127.0.0.1:{port}")
        model = make_reconstructor(cfg.model, src.height, src.width, cfg.device, live=True)
        if torch_threads:
            torch.set_num_threads(torch_threads)
        t0 = time.perf_counter()  # the stream starts as the reader connects
        stats = quiet_pipeline(src, cfg, model).run()
        wall = time.perf_counter() - t0
        sent = int(server.communicate(timeout=30)[0].split()[-1])  # "sent N": the stream has ended
    finally:
        server.kill()
        server.wait()
    p50, p99 = stats.latency_ms()
    windows = round(seconds * 1000 / cfg.window.fixed_ms) if cfg.window.fixed_ms else stats.windows
    # a reader that falls behind shows in `behind`; its events wait at the sender, which drops what does not fit
    print(f"  live HxW {size[0]}x{size[1]} {rate / 1e6:.1f} Mev/s: events in / sent {stats.events / sent:.3f}; "
          f"frames / windows of the stream {stats.frames / windows:.2f}; done {wall - seconds:.2f} s after the "
          f"{seconds:g} s stream (start-up included); latency p50 {p50:.1f} ms p99 {p99:.1f} ms; "
          f"reading behind the stream by at most {stats.behind_max_s * 1e3:.0f} ms; merged {stats.merged}"
          + (f"; torch threads {torch.get_num_threads()}" if cfg.model["type"] != "highpass" else ""))
    return stats.frames


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="highpass",
                    help="the pipeline's configuration (default highpass: the README's rows measure the pipeline "
                         "around the cheapest model)")
    ap.add_argument("--file", help="a recording, any format run_replay.py reads (default: the demo recording)")
    ap.add_argument("--sensor-size", metavar="HxW", help=SENSOR_SIZE_HELP)
    ap.add_argument("--topic", help=TOPIC_HELP)
    ap.add_argument("--live-rates", type=positive_float, nargs="*", default=[5e5, 5e6, 1.5e7],
                    help="events/s of the live runs")
    ap.add_argument("--live-seconds", type=positive_float, default=2.0)
    ap.add_argument("--live-size", type=lambda text: parse_size(text, "--live-size"), default=(260, 346), metavar="HxW",
                    help="the live stream's sensor")
    args = ap.parse_args()
    path = Path(args.file) if args.file else ensure_demo_recording()
    sensor_size = parse_size(args.sensor_size)

    def open_src():
        return open_recording(str(path), sensor_size, args.topic)
    cfg = load_config(args.config)
    cfg.publish = "tcp://127.0.0.1:*"  # any free port: nobody listens
    cfg.device = run_device(cfg.model, cfg.device)

    n_win, t_model = model_only(open_src, cfg)
    src = open_src()
    pipe = quiet_pipeline(src, cfg, make_reconstructor(cfg.model, src.height, src.width, cfg.device))
    t0 = time.perf_counter()
    stats = pipe.run()
    t_pipe = time.perf_counter() - t0
    p50, p99 = stats.latency_ms()
    print(f"{path.name}: {stats.events:,} events, {stats.windows} windows, model {cfg.model['type']}, "
          f"{cfg.window.describe()} windows")
    print(f"  replay at max: {stats.events / t_pipe / 1e6:.2f} Mev/s in, {stats.frames / t_pipe:.1f} frames/s out, "
          f"latency p50 {p50:.1f} ms p99 {p99:.1f} ms")
    print(f"  model alone:   {n_win / t_model:.1f} windows/s; pipeline throughput / model alone = "
          f"{(stats.windows / t_pipe) / (n_win / t_model):.3f}")

    src = open_src()
    first = last = t_first = t_last = None
    for item in paced(src, 1.0):
        if isinstance(item, EventPacket) and len(item):
            last, t_last = time.monotonic(), int(item.t[-1])
            if first is None:
                first, t_first = last, int(item.t[0])
    src.close()
    duration = (t_last - t_first) * 1e-6
    print(f"  pacing at 1x:  {last - first:.3f} s wall for {duration:.3f} s of events: ratio {(last - first) / duration:.4f}")

    cpu_network = cfg.model["type"] != "highpass" and cfg.device == "cpu"
    for rate in args.live_rates:
        frames = live(cfg, rate, args.live_seconds, args.live_size)
        if cpu_network:
            reference = live(cfg, rate, args.live_seconds, args.live_size, torch_threads=live_threads() + 1)
            print(f"  live frames with a core left to reading / with torch on every core: {frames / reference:.2f}")


if __name__ == "__main__":
    run_main(main)
