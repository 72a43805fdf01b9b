"""The events the binner can trust: on the sensor, in time order; a clock's glitch or reset told apart."""
import numba
import numpy as np

from streaming.datatypes import EventPacket
from streaming.errors import SourceLost

GLITCH_US = 1_000_000  # a jump of the clock this large is a glitch if the next event disagrees, else real

NO_EVENT = np.iinfo(np.int64).min  # the last kept time before any event
# what _valid_mask saw at the packet's end
CLEAN, HOLD, RESET = 0, 1, 2


@numba.njit(nogil=True, cache=True)
def _valid_mask(x, y, t_us, height, width, t_prev):
    """(keep, outside, unordered, the last kept time, CLEAN); or HOLD: the last event is far off,
    and no next event yet tells a glitch from a gap or a reset; or RESET, with the time the
    clock jumped back to where the last kept time would be."""
    n = t_us.shape[0]
    keep = np.empty(n, np.bool_)
    outside = unordered = 0
    last = t_prev
    for i in range(n):
        if x[i] >= width or y[i] >= height:
            keep[i] = False
            outside += 1
            continue
        t = t_us[i]
        if last <= t <= last + GLITCH_US or last == NO_EVENT:  # in order, no jump: nearly every event
            keep[i] = True
            last = t
            continue
        # A lone event far ahead or far behind is a glitch. Kept as the newest, one far ahead
        # would make every later event "earlier than the last kept one": the rest of the stream
        # would be dropped. What follows a real gap is as far ahead, and after a timestamp reset
        # as far behind.
        far_ahead, far_behind = t > last + GLITCH_US, t < last - GLITCH_US
        if (far_ahead or far_behind) and i + 1 == n:
            keep[i] = False
            return keep, outside, unordered, last, HOLD
        if far_behind and t <= t_us[i + 1] < last - GLITCH_US:
            return keep, outside, unordered, t, RESET
        if t < last or t_us[i + 1] <= last + GLITCH_US:  # behind, or a lone one far ahead
            keep[i] = False
            unordered += 1
        else:  # a gap in the stream
            keep[i] = True
            last = t
    return keep, outside, unordered, last, CLEAN


class Sanitizer:
    """Drops and counts events off the sensor or earlier than the last kept one, so that
    bad data from a live stream can never write out of bounds or scramble a window; and a
    lone timestamp far ahead of its neighbours, which would drop the rest of the stream. A
    clock that jumps back for good (a camera's timestamp reset) ends the source's sequence:
    SourceLost, which --reconnect answers with a new one."""

    def __init__(self, height: int, width: int):
        self.height, self.width = height, width
        self.outside = self.unordered = 0
        self._last = NO_EVENT
        self._held: EventPacket | None = None  # a last event far off, until the next packet judges it

    def __call__(self, ev: EventPacket) -> EventPacket:
        if self._held is not None:
            ev, self._held = EventPacket.concat([self._held, ev]), None
        before = self._last
        keep, outside, unordered, self._last, seen = _valid_mask(ev.x, ev.y, ev.t, self.height, self.width, before)
        if seen == RESET:
            raise SourceLost(f"the event clock jumped back {(before - self._last) / 1e6:.1f} s (a camera's timestamp "
                             "reset?); a new sequence must start (--reconnect starts one)", still_there=True)
        if seen == HOLD:
            self._held = ev[len(ev) - 1:]
        if outside or unordered or seen == HOLD:
            self.outside += outside
            self.unordered += unordered
            return EventPacket(ev.t[keep], ev.x[keep], ev.y[keep], ev.p[keep])
        return ev

    def finish(self) -> None:
        """The stream has ended, so a held event has no next packet to judge it. Counted as
        dropped: kept, one far ahead would fill its gap with empty windows."""
        if self._held is not None:
            self.unordered += 1
            self._held = None
