"""A recording's voxel windows without threads or pacing: for evaluation, training, benchmarks.

Here no sanitizer stands between a source and the binner, as in the pipeline; an event off the
sensor (a bag's, or any recording's under a smaller --sensor-size) would be written outside its
voxel grid, so it ends the run in one line instead."""
from __future__ import annotations

from collections.abc import Iterator

from streaming.binner import events_to_voxel
from streaming.datatypes import EventPacket, Source, VoxelWindow
from streaming.sensor import require_on_sensor
from streaming.windows import Windower, WindowPolicy


def voxel_windows(source: Source, policy: WindowPolicy, num_bins: int = 5) -> Iterator[VoxelWindow]:
    windower = Windower(policy)
    seq = 0

    def binned(closed):
        nonlocal seq
        for w in closed:
            ev = w.events
            grid = events_to_voxel(ev.x, ev.y, ev.t, ev.p, num_bins, source.height, source.width)
            yield VoxelWindow(seq, w.t_start_us, w.t_end_us, grid, ev, w.reference)
            seq += 1

    for item in source:
        if isinstance(item, EventPacket):
            require_on_sensor(source.description, item.x, item.y, source.height, source.width)
        yield from binned(windower.add_events(item) if isinstance(item, EventPacket) else windower.add_reference(item))
    yield from binned(windower.flush())
