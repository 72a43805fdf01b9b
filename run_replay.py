#!/usr/bin/env python3
"""Replay an event recording (HDF5, AEDAT4, Prophesee RAW or DAT, ROS 1 or 2 bag) at real speed
through the reconstruction pipeline."""
from streaming.exits import run_main, same_file, say  # first: it makes a Ctrl-C during the imports quiet

from streaming.cli import (RECORDING_HELP, SENSOR_SIZE_HELP, TOPIC_HELP, common_parser, describe_model, outputs,
                           parse_size, print_outputs, run_config)
from streaming.datatypes import InputError
from streaming.pipeline import Pipeline
from streaming.sources import open_recording, parse_rate


def parser():
    ap = common_parser(__doc__)
    ap.add_argument("file", help=RECORDING_HELP)
    ap.add_argument("--rate", default="1x",
                    help="replay speed: 1x = real time (default), any factor such as 0.5x or 4x, or max")
    ap.add_argument("--sensor-size", metavar="HxW", help=SENSOR_SIZE_HELP)
    ap.add_argument("--topic", help=TOPIC_HELP)
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    rate = parse_rate(args.rate)
    cfg = run_config(args)
    if args.record and same_file(args.record, args.file):
        raise InputError(f"--record {args.record}: that is the recording being replayed")
    source = open_recording(args.file, parse_size(args.sensor_size), args.topic)
    say(f"replaying {source.description} at {args.rate}, {cfg.window.describe()} windows, "
        f"{describe_model(cfg)}; publishing on {cfg.publish}")
    pipeline = Pipeline(source, cfg, rate, outputs(args), args.max_seconds)
    say(pipeline.run().summary())
    print_outputs(outputs(args))
    return pipeline.exit_status


if __name__ == "__main__":
    run_main(main)
