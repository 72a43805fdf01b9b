"""The command-line fronts' shared options (run_replay.py, run_live.py, convert.py); their error
handling is streaming.exits."""
from __future__ import annotations

import argparse
import math
from dataclasses import replace

from streaming.config import RunConfig, load_config, model_from_flag, validate
from streaming.errors import InputError
from streaming.exits import check_output_folder, say
from streaming.h5format import check_h5_name
from streaming.outputs.protocol import DEFAULT_ADDRESS
from streaming.outputs.sinks import Outputs
from streaming.sensor import check_sensor_size
from streaming.windows import Cut, WindowPolicy

EPILOG = f"""\
where the frames go:
  Frames are published over ZeroMQ (default {DEFAULT_ADDRESS}) as multipart messages
  [topic, JSON header, payload] on the topics `frame` (linear float32 HDR), `preview`
  (uint8, tone-mapped) and `stats`; README.md shows a consumer in plain pyzmq.
  --record writes the linear frames to HDF5; --video writes events | reconstruction |
  reference frame side by side. A stats line prints every few seconds, a summary at the end.
"""


def common_parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    m = ap.add_argument_group("model")
    m.add_argument("--config", metavar="NAME|PATH",
                   help="a configuration from configs/ (e.g. highpass) or a YAML file (default: livehdr, "
                        "our trained network)")
    m.add_argument("--model", metavar="highpass|pienet|pienet-lite|CKPT",
                   help="override the config's model: 'highpass' (the classical filter), 'pienet' or 'pienet-lite' "
                        "(PIE-Net, whose frames are display images, not radiance) or a checkpoint (ours or the "
                        "official EventHDR .pth)")
    m.add_argument("--device", metavar="auto|cpu|cuda[:N]",
                   help="where the network runs (default auto: the first CUDA GPU torch sees, else the CPU); "
                        "the high-pass filter always runs on the CPU")
    w = ap.add_argument_group("windows (how events are cut into frames; default from the config)")
    x = w.add_mutually_exclusive_group()
    x.add_argument("--window-ms", type=float, metavar="D", help="fixed duration windows of D milliseconds")
    x.add_argument("--window-events", type=int, metavar="N", help="windows of N events each")
    x.add_argument("--window", choices=[Cut.FRAMES.value],
                   help="'frames': windows end at the recording's intensity frames (the official evaluation)")
    w.add_argument("--window-max-ms", type=float, metavar="D",
                   help="with event-count windows: also end a window D ms after it began, so a still scene "
                        "keeps giving frames")
    w.add_argument("--bins", type=int, help="temporal bins per voxel grid (5 for EventHDR)")
    o = ap.add_argument_group("output")
    o.add_argument("--publish", metavar="ADDR", help=f"ZeroMQ PUB address (default {DEFAULT_ADDRESS})")
    o.add_argument("--wait-subscribers", type=int, default=0, metavar="N",
                   help="wait until N subscribers are connected before starting (so they miss nothing)")
    o.add_argument("--record", metavar="OUT.h5", help="write linear float32 frames to this HDF5 file")
    o.add_argument("--video", metavar="OUT.mp4", help="write events | reconstruction | reference as a video")
    o.add_argument("--max-seconds", type=float, metavar="S", help="stop after S seconds of the event stream")
    o.add_argument("--stats-every", type=float, default=2.0, metavar="S", help="seconds between stats lines")
    return ap


RECORDING_HELP = ("recording: .h5/.hdf5 (EventHDR / event_cnn_minimal layout), .aedat4, "
                  "Prophesee .raw (EVT 3.0, EVT 2.0) / .dat, or a ROS bag (dvs_msgs, or event_camera_msgs "
                  "evt3): ROS 1 .bag, ROS 2 folder or its .mcap / .db3")
TOPIC_HELP = "a ROS bag's event topic, where it holds more than one camera's (e.g. /davis/left/events)"
SENSOR_SIZE_HELP = ("the sensor's size where the file does not give it (an HDF5 file without "
                    "sensor_resolution, a Prophesee EVT 2.0 file), or to override it")


def parse_size(text: str | None, flag: str = "--sensor-size") -> tuple[int, int] | None:
    """'HxW' (a sensor's height first, as numpy's shapes and the HDF5 layout's sensor_resolution
    have it) -> (H, W); None -> None (the file's own). Every size flag takes this form."""
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"bad {flag} {text!r}: give HEIGHTxWIDTH, e.g. 260x346") from None
    check_sensor_size(f"{flag} {text}", h, w, flag)
    return h, w


def describe_model(cfg: RunConfig) -> str:
    """The start line's model, and a warning where its frames are not radiance."""
    kind = cfg.model["type"]
    note = " (its frames are display images in [0, 1], not radiance)" if kind.startswith("pienet") else ""
    return f"model {kind}{note} on {cfg.device}"


def run_config(args) -> RunConfig:
    """The configuration the flags select; bad flags end here, before any source is opened."""
    if args.wait_subscribers < 0:
        raise InputError(f"--wait-subscribers must be 0 or more, got {args.wait_subscribers}")
    for flag in ("max_seconds", "stats_every"):
        seconds = getattr(args, flag)
        if seconds is not None and not 0 < seconds < math.inf:
            raise InputError(f"--{flag.replace('_', '-')} must be a positive number of seconds, got {seconds:g}")
    if args.record:
        check_h5_name(args.record, "--record")
    for flag in ("record", "video"):
        if getattr(args, flag):
            check_output_folder(getattr(args, flag), f"--{flag}")
    cfg = load_config(args.config)
    if args.model and not (args.model == "highpass" == cfg.model["type"]):  # keep the config's filter settings
        cfg.model = model_from_flag(args.model)
    if args.window_ms is not None:
        cfg.window = WindowPolicy(Cut.MS, ms=args.window_ms)
    elif args.window_events is not None:  # the config's max_ms stays with its event-count windows
        cfg.window = replace(cfg.window, events=args.window_events) if cfg.window.policy is Cut.EVENTS else \
            WindowPolicy(Cut.EVENTS, events=args.window_events)
    elif args.window == Cut.FRAMES:
        cfg.window = WindowPolicy(Cut.FRAMES)
    if args.window_max_ms is not None:
        cfg.window = replace(cfg.window, max_ms=args.window_max_ms)
    for name in ("bins", "publish", "device"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    if getattr(args, "overload", None):
        cfg.overload = args.overload
    validate(cfg)
    return cfg


def outputs(args) -> Outputs:
    return Outputs(args.record, args.video, args.wait_subscribers, args.stats_every)


def print_outputs(out: Outputs) -> None:
    for path, what in ((out.record, "recording"), (out.video, "video")):
        if path:
            say(f"{what}: {path}")
