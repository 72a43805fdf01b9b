"""The recorder: linear frames to HDF5, crash-safe, in-process or as a separate subscriber.

Layout: `frames` (N, H, W) float32 (one frame a chunk), `t_start_us`, `t_end_us`, `seq`
(N,) int64, and file attributes naming the model, config and source. The file is written
in HDF5's single-writer/multiple-reader mode and flushed after every frame, so a killed
recorder leaves a readable file holding every flushed frame.

    python -m streaming.outputs.recorder out.h5 [--connect tcp://127.0.0.1:5555]
"""
from __future__ import annotations

from streaming.exits import StopSignals, check_output_folder, run_main  # first: it makes a Ctrl-C during the imports quiet

import argparse
import json
import sys

import h5py
import numpy as np

from streaming.datatypes import Frame
from streaming.errors import InputError
from streaming.h5format import WriteGuard, check_h5_name
from streaming.outputs.protocol import DEFAULT_ADDRESS
from streaming.outputs.subscriber import Subscription


STOP_POLL_MS = 200  # how long a stop may wait for the next message


class FrameRecorder:
    def __init__(self, path: str, height: int, width: int, attrs: dict):
        try:
            self._f = h5py.File(path, "w", libver="latest")
        except OSError as e:
            raise InputError(f"cannot write {path}: {e}") from None
        self._guard = WriteGuard(path)
        self.count = 0
        self.shape = (height, width)
        with self._guard.writing(0, self._survives()):
            self._f.create_dataset("frames", (0, height, width), np.float32, maxshape=(None, height, width),
                                   chunks=(1, height, width))
            for name in ("t_start_us", "t_end_us", "seq"):
                self._f.create_dataset(name, (0,), np.int64, maxshape=(None,), chunks=(1024,))
            for k, v in attrs.items():
                self._f.attrs[k] = v if isinstance(v, (str, int, float)) else json.dumps(v)
            self._f.swmr_mode = True

    def write(self, seq: int, t_start_us: int, t_end_us: int, image: np.ndarray) -> None:
        n = self.count + 1
        with self._guard.writing(image.nbytes + 24, self._survives()):
            for name, value in (("frames", image), ("t_start_us", t_start_us), ("t_end_us", t_end_us), ("seq", seq)):
                d = self._f[name]
                d.resize(n, axis=0)
                d[n - 1] = value
                d.flush()
        self.count = n

    def _survives(self) -> str:
        return f"; the {self.count} frames recorded before are readable"

    def add(self, frame: Frame, preview_u8: np.ndarray | None = None) -> None:
        """A Sink's add (sinks.py): the linear frame is recorded, the preview is not."""
        self.write(frame.seq, frame.t_start_us, frame.t_end_us, frame.image)

    def close(self) -> None:
        if not self._guard.failed:  # HDF5 cannot close it (WriteGuard)
            with self._guard.closing(self._survives()):
                self._f.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m streaming.outputs.recorder",
                                 description="Record the `frame` topic of a running pipeline to HDF5.")
    ap.add_argument("out", help="output .h5 file")
    ap.add_argument("--connect", default=DEFAULT_ADDRESS, help=f"publisher address (default {DEFAULT_ADDRESS})")
    ap.add_argument("--max-frames", type=int, default=0,
                    help="stop after this many frames (0: when the pipeline ends, or Ctrl-C)")
    args = ap.parse_args(argv)
    if args.max_frames < 0:
        raise InputError(f"--max-frames must be 0 or more, got {args.max_frames}")
    check_h5_name(args.out, "output")
    check_output_folder(args.out, "output")
    sub = Subscription(args.connect, (b"frame", b"stats"))  # stats for the final one: the pipeline has ended
    rec, final = None, None
    # Ctrl-C and SIGTERM end the recording between frames, never halfway through one
    with StopSignals() as stop:
        try:
            while not stop.first.is_set() and (not args.max_frames or rec is None or rec.count < args.max_frames):
                msg = sub.recv(STOP_POLL_MS)
                if msg is None:
                    if sub.gone:  # without its final message
                        break
                    continue
                topic, h, img = msg
                if topic == "stats":
                    if h.get("final"):
                        final = h
                        break
                    continue
                if rec is None:  # a publisher of ours describes its run; any other, at least where it is
                    rec = FrameRecorder(args.out, h["height"], h["width"], h.get("run", {"source": args.connect}))
                if img.shape != rec.shape:
                    sub.skip(f"a frame of {img.shape[0]}x{img.shape[1]} in a recording of {rec.shape[0]}x{rec.shape[1]}")
                    continue
                rec.write(h["seq"], h["t_start_us"], h["t_end_us"], img)
        finally:
            if rec:
                rec.close()
            sub.close()
    sent = final.get("frames") if final else None
    if rec is None:
        print("recorded nothing: no frame came")
    elif sent is None or rec.count == sent:
        print(f"recorded {rec.count} frames to {args.out}")
    else:
        print(f"recorded {rec.count} of the pipeline's {sent} frames to {args.out} (the others were sent "
              "before this recorder joined, or dropped by ZeroMQ while it fell behind)")
    if sub.skipped:
        print(f"skipped {sub.skipped} bad messages")
    if sub.gone:
        print(f"error: the pipeline at {args.connect} went away without its final message: it was stopped, "
              "or this recorder fell behind and ZeroMQ dropped messages for it", file=sys.stderr)
        return 1
    return stop.exit_status


if __name__ == "__main__":
    run_main(main)
