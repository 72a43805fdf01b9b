#!/usr/bin/env python3
"""Convert an event recording to the HDF5 layout of the EventHDR dataset and event_cnn_minimal
(the layout run_replay.py, train.py and evaluate.py read, and the official EventHDR code too):
its events, and its intensity frames as images with their timestamps and event indices."""
from streaming.exits import run_main  # first: it makes a Ctrl-C during the imports quiet

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from streaming.cli import RECORDING_HELP, SENSOR_SIZE_HELP, TOPIC_HELP, parse_size
from streaming.datatypes import ReferenceFrame
from streaming.errors import InputError
from streaming.exits import check_output_folder, same_file
from streaming.h5format import EventH5Writer, check_h5_name
from streaming.sources.open import open_recording


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("file", help=RECORDING_HELP)
    ap.add_argument("out", help="the HDF5 file to write (replaced if it exists)")
    ap.add_argument("--sensor-size", metavar="HxW", help=SENSOR_SIZE_HELP)
    ap.add_argument("--topic", help=TOPIC_HELP)
    args = ap.parse_args(argv)
    out = Path(args.out)
    if same_file(out, args.file):
        raise InputError(f"{out}: the output would replace the recording it is converted from")
    if out.is_dir():
        raise InputError(f"{out}: a folder; give the HDF5 file to write")
    check_h5_name(out, "output")
    check_output_folder(out, "output")
    src = open_recording(args.file, parse_size(args.sensor_size), args.topic)
    # written under another name, then renamed: a failed or interrupted conversion leaves no
    # half-written file to be mistaken for a recording, and never costs the file it would replace
    partial = out.with_name(f".{out.name}.partial")
    try:
        with EventH5Writer(partial, src.height, src.width, out) as writer:
            events, images = _copy(src, writer, args.file)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
        src.close()
    print(f"{out}: {events:,} events and {images} images from {src.description}")
    return 0


def _copy(src, writer: EventH5Writer, name: str) -> tuple[int, int]:
    """Every event and reference frame of src into writer, checked as a replay of the result
    will check them; returns the counts."""
    events = images = 0
    last_t = np.iinfo(np.int64).min
    # a terminal sees progress (a camera's hour is 10^9 events); leave=False: an error is one line
    with tqdm(desc="converting", unit="ev", unit_scale=True, leave=False, disable=None) as bar:
        for item in src:
            if isinstance(item, ReferenceFrame):
                writer.add_reference(item)
                images += 1
                continue
            if not len(item):
                continue
            if item.t[0] < last_t or np.any(np.diff(item.t) < 0):
                raise InputError(f"{name}: timestamps decrease near event {events}; the file must be time-sorted")
            writer.add_events(item)
            events, last_t = events + len(item), int(item.t[-1])
            bar.update(len(item))
    return events, images


if __name__ == "__main__":
    run_main(main)
