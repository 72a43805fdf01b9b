#!/usr/bin/env python3
"""Replay an event recording (HDF5, AEDAT4, Prophesee RAW or DAT) at real speed through the reconstruction pipeline."""
from streaming.cli import common_parser, outputs, run_config, run_main
from streaming.datatypes import InputError
from streaming.pipeline import Pipeline
from streaming.sources import open_recording, parse_rate


def main(argv=None) -> int:
    ap = common_parser(__doc__)
    ap.add_argument("file", help="recording: .h5/.hdf5 (EventHDR / event_cnn_minimal layout), .aedat4, "
                                  "or Prophesee .raw (EVT 2.0, EVT 3.0) / .dat")
    ap.add_argument("--rate", default="1x",
                    help="replay speed: 1x = real time (default), any factor such as 0.5x or 4x, or max")
    ap.add_argument("--sensor-size", metavar="HxW", help="the sensor's size where the file does not give it "
                    "(an HDF5 file without sensor_resolution, a Prophesee EVT 2.0 file), or to override it")
    args = ap.parse_args(argv)
    rate = parse_rate(args.rate)
    cfg = run_config(args)
    source = open_recording(args.file, _size(args.sensor_size))
    print(f"replaying {source.description} at {args.rate}, {cfg.window.describe()} windows, "
          f"model {cfg.model['type']} on {cfg.device}; publishing on {cfg.publish}", flush=True)
    stats = Pipeline(source, cfg, rate, outputs(args), args.max_seconds).run()
    print(stats.summary())
    for path, what in ((args.record, "recording"), (args.video, "video")):
        if path:
            print(f"{what}: {path}")
    return 0


def _size(text):
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        if h > 0 and w > 0:
            return h, w
    except ValueError:
        pass
    raise InputError(f"bad --sensor-size {text!r}: give HEIGHTxWIDTH, e.g. 260x346")


if __name__ == "__main__":
    run_main(main)
