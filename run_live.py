#!/usr/bin/env python3
"""Reconstruct HDR video live from an event camera (iniVation, through dv-processing) or a DV
network stream.

  python run_live.py --camera                      # the first camera found
  python run_live.py --camera SERIAL               # a given camera
  python run_live.py --camera tcp://HOST:PORT      # a DV event stream (DV software, or --serve-events)
  python run_live.py --camera --serve-events 0.0.0.0:7777   # camera machine: forward raw events only
"""
from streaming.exits import Terminated, run_main, say  # first: it makes a Ctrl-C during the imports quiet

import signal
import time
from pathlib import Path

from model.factory import make_reconstructor, run_device
from streaming.cli import common_parser, describe_model, outputs, print_outputs, run_config
from streaming.errors import InputError, SourceLost, SourceUnavailable
from streaming.outputs.event_server import serve_events
from streaming.outputs.publisher import Publisher
from streaming.pipeline import Pipeline, warm_up
from streaming.ring import OVERLOAD_POLICIES
from streaming.sources.open import open_source
from streaming.stats import run_totals

RECONNECT_EVERY_S = 1.0
WARM_UP_SIZE = 64  # compiling the kernels before connecting needs no sensor size; PIE-Net needs 64 to pool


def main(argv=None) -> int:
    ap = common_parser(__doc__)
    ap.add_argument("--camera", nargs="?", const="", required=True, metavar="SERIAL|tcp://HOST:PORT",
                    help="the event source: no value = the first camera found")
    ap.add_argument("--overload", choices=OVERLOAD_POLICIES,
                    help="when the model falls behind: merge pending windows (default; no event lost, "
                         "the frame rate falls) or drop the oldest (counted in the stats)")
    ap.add_argument("--denoise", action="store_true", help="dv-processing's background-activity filter")
    ap.add_argument("--reconnect", action="store_true",
                    help="wait for the camera or stream if it is not there yet, and when it is lost, keep "
                         "trying to reopen it (each reconnection "
                         "starts a new sequence, and --record/--video files get a -2, -3, ... suffix); a "
                         "network stream that ends counts as lost, so only Ctrl-C or --max-seconds (the whole run's, waits "
                         "included) end the run")
    ap.add_argument("--serve-events", metavar="HOST:PORT",
                    help="do not reconstruct: forward the camera's raw events as a DV network stream")
    args = ap.parse_args(argv)
    if args.serve_events:
        return _serve(args, ap)
    cfg = run_config(args)
    cfg.device = run_device(cfg.model, cfg.device)
    # One publisher for the whole run: subscribers stay connected across reconnections, and get
    # the final stats once, at its end. It waits for them before the source opens: a camera's
    # events would pile up into one first window meanwhile.
    publisher = Publisher(cfg.publish)
    signal.signal(signal.SIGTERM, _interrupt)  # between connections too, the run ends as with Ctrl-C
    sequences = []  # each connection's final stats
    try:
        publisher.wait_for_subscribers(args.wait_subscribers)
        return _connections(args, cfg, publisher, sequences)
    finally:
        publisher.finish(run_totals(sequences))


def _connections(args, cfg, publisher, sequences: list) -> int:
    """A pipeline for the source, and with --reconnect a new one each time it is lost."""
    warm_up(make_reconstructor(cfg.model, WARM_UP_SIZE, WARM_UP_SIZE, cfg.device), cfg.bins, WARM_UP_SIZE, WARM_UP_SIZE)
    source = _open(args, None if args.max_seconds is None else time.monotonic() + args.max_seconds)
    if source is None:
        raise InputError(f"--max-seconds {args.max_seconds:g} passed while waiting for the source")
    # --max-seconds: the first connection's events, and from its start the whole run, reconnections
    # and the waits between them included
    deadline, attempt = None, 1
    while True:
        say(f"live from {source.description}, {cfg.window.describe()} windows, "
            f"{describe_model(cfg)}, overload {cfg.overload}; publishing on {cfg.publish}")
        out = _numbered(outputs(args), attempt)
        left = args.max_seconds if deadline is None else max(deadline - time.monotonic(), 0.0)
        model = make_reconstructor(cfg.model, source.height, source.width, cfg.device, live=True)
        pipeline = Pipeline(source, cfg, model, publisher, float("inf"), out, left)
        if args.max_seconds is not None and deadline is None:
            deadline = time.monotonic() + args.max_seconds
        try:
            pipeline.run()
            lost = None
        except SourceLost as e:
            say(f"lost the source: {e}")
            lost = e
        finally:
            sequences.append(pipeline.stats.snapshot())
        say(pipeline.stats.summary())  # each connection's own, a lost one's too
        print_outputs(out)
        if not lost:
            return pipeline.exit_status
        if not args.reconnect:
            return 1
        if not lost.still_there:  # a server that has just ended its stream may still take a connection
            time.sleep(RECONNECT_EVERY_S)
        source, attempt = _open(args, deadline), attempt + 1
        if source is None:
            say(f"--max-seconds {args.max_seconds:g} passed while waiting for the source")
            return 0


def _interrupt(*_):
    raise Terminated


def _serve(args, ap) -> int:
    """--serve-events: the camera's raw events out as a DV network stream, nothing else."""
    # a flag of the pipeline's would be silently ignored
    ignored = ["--" + name.replace("_", "-") for name, value in vars(args).items()
               if name not in ("camera", "denoise", "serve_events") and value != ap.get_default(name)]
    if ignored:
        raise InputError(f"--serve-events only forwards the camera's events: {', '.join(ignored)} would do nothing")
    source = open_source(args.camera, args.denoise)
    say(f"serving events of {source.description} on tcp://{args.serve_events} (Ctrl-C stops)")
    try:
        n = serve_events(source, args.serve_events)
    except KeyboardInterrupt:
        n = None
    say("stopped" if n is None else f"done: forwarded {n:,} events")
    return 0


def _open(args, deadline: float | None):
    """The camera or stream. With --reconnect, one that is not there yet is waited for: tried
    every second (Ctrl-C stops) until it is, or None at the deadline. Says why it waits once,
    and again when the reason changes."""
    said = None
    while True:
        try:
            return open_source(args.camera, args.denoise, args.reconnect)
        except SourceUnavailable as e:
            if not args.reconnect:
                raise
            if str(e) != said:
                say(f"waiting for the source: {e}")
                said = str(e)
        if deadline is not None and time.monotonic() + RECONNECT_EVERY_S >= deadline:
            return None
        time.sleep(RECONNECT_EVERY_S)


def _numbered(out, attempt):
    """Outputs of the attempt-th connection: out.h5, out-2.h5, out-3.h5, ..."""
    if attempt == 1:
        return out
    rename = lambda p: str(Path(p).with_stem(f"{Path(p).stem}-{attempt}")) if p else p
    return type(out)(rename(out.record), rename(out.video), out.wait_subscribers, out.stats_every_s)


if __name__ == "__main__":
    run_main(main)
