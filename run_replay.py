#!/usr/bin/env python3
"""Replay an event recording (HDF5, AEDAT4, Prophesee RAW or DAT, ROS 1 or 2 bag) at real speed
through the reconstruction pipeline."""
from streaming.exits import run_main, same_file, say  # first: it makes a Ctrl-C during the imports quiet

from model.factory import make_reconstructor, run_device
from model.simulation.demo import DEMO_OUT, ensure_demo_recording
from streaming.cli import (RECORDING_HELP, SENSOR_SIZE_HELP, TOPIC_HELP, common_parser, describe_model, outputs,
                           parse_size, print_outputs, run_config)
from streaming.errors import InputError
from streaming.outputs.publisher import Publisher
from streaming.pipeline import Pipeline
from streaming.sources.open import open_recording
from streaming.sources.pacing import parse_rate


def parser():
    ap = common_parser(__doc__)
    ap.add_argument("file", nargs="?", help=RECORDING_HELP)
    ap.add_argument("--demo", action="store_true",
                    help="replay the demo scene instead (simulated, made once into data/demo.h5), its frames "
                         "recorded to out/demo_frames.h5 and its video to out/demo.mp4: what `make demo` runs")
    ap.add_argument("--rate", default="1x",
                    help="replay speed: 1x = real time (default), any factor such as 0.5x or 4x, or max")
    ap.add_argument("--sensor-size", metavar="HxW", help=SENSOR_SIZE_HELP)
    ap.add_argument("--topic", help=TOPIC_HELP)
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.demo == bool(args.file):
        raise InputError("give a recording to replay, or --demo (not both)")
    if args.demo:
        args.record, args.video = args.record or str(DEMO_OUT / "demo_frames.h5"), args.video or str(DEMO_OUT / "demo.mp4")
        DEMO_OUT.mkdir(exist_ok=True)
    rate = parse_rate(args.rate)
    cfg = run_config(args)
    if args.demo:  # once every flag is checked: a typo should not cost the scene's generation first
        args.file = str(ensure_demo_recording())
    cfg.device = run_device(cfg.model, cfg.device)
    if args.record and same_file(args.record, args.file):
        raise InputError(f"--record {args.record}: that is the recording being replayed")
    source = open_recording(args.file, parse_size(args.sensor_size), args.topic)
    say(f"replaying {source.description} at {args.rate}, {cfg.window.describe()} windows, "
        f"{describe_model(cfg)}; publishing on {cfg.publish}")
    # a replay paced at a rate must keep up as a camera's stream must: the same one core to reading
    model = make_reconstructor(cfg.model, source.height, source.width, cfg.device, live=rate < float("inf"))
    out = outputs(args)
    publisher, pipeline = Publisher(cfg.publish), None
    try:
        publisher.wait_for_subscribers(out.wait_subscribers)
        pipeline = Pipeline(source, cfg, model, publisher, rate, out, args.max_seconds)
        say(pipeline.run().summary())
    finally:  # subscribers end on the final stats: they go out whatever failed
        publisher.finish(pipeline.stats.snapshot() if pipeline else {})
    print_outputs(out)
    return pipeline.exit_status


if __name__ == "__main__":
    run_main(main)
