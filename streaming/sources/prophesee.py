"""Prophesee recordings: RAW files in the EVT 2.0 and EVT 3.0 encodings, and DAT files.

Decoded here, in Numba, from Prophesee's published format descriptions
(docs.prophesee.ai: data/encoding_formats/evt2.html, evt3.html; data/file_formats/dat.html),
because Prophesee's own reader (OpenEB) is not on PyPI. Files are read in chunks (recordings run
to many GB). Only change-detection (CD) events are kept; triggers and other words are skipped.
"""
from __future__ import annotations

from pathlib import Path

import numba
import numpy as np

from streaming.datatypes import EventPacket
from streaming.errors import InputError
from streaming.sensor import require_on_sensor, size_text

CHUNK_BYTES = 1 << 19  # EVT3: up to 12 events a 2-byte word, so up to 3M events a chunk
PROPHESEE_SUFFIXES = (".raw", ".dat")

# Decoder state carried from chunk to chunk, int64 slots: time of the last time-high word, time
# now, row, column, polarity; whether a time-high word has been seen (events before the first
# one have no time, and are skipped); and the index of the word where the clock ran backwards
# (-1: none), where decoding stopped.
_T_BASE, _T, _Y, _X, _POL, _STARTED, _BACKWARDS = range(7)
EVT3_LOOP_US = 1 << 24  # EVT 3.0 time is 24 bits (12 high + 12 low)
EVT2_LOOP_US = 1 << 34  # EVT 2.0 time is 34 bits (28 high + 6 low)
DAT_LOOP_US = 1 << 32
DAT_CD_TYPE, DAT_CD_SIZE = 12, 8  # a DAT file of CD events: 8-byte (uint32 t, uint32 x|y|p) records


def _new_state() -> np.ndarray:
    state = np.zeros(7, np.int64)
    state[_BACKWARDS] = -1
    return state


@numba.njit(nogil=True, cache=True)
def _time_high(state, base, loop_us):
    """A time-high word, `base` on the wrapping clock. The clock only moves forward (a smaller
    base is a wrap), so the step is taken modulo the clock's range; a step of half the range or
    more reads as the clock running backwards: damaged data (False)."""
    if not state[_STARTED]:
        state[_T_BASE], state[_STARTED] = base, 1
        return True
    step = (base - state[_T_BASE]) % loop_us
    if step >= loop_us // 2:
        return False
    state[_T_BASE] += step
    return True


@numba.njit(nogil=True, cache=True)
def _decode_evt3(words, state, t, x, y, p):
    """16-bit words; events are a row (EVT_ADDR_Y) and then one column (EVT_ADDR_X) or a base
    column and bit masks of the 12 or 8 columns after it (VECT_BASE_X, VECT_12, VECT_8)."""
    n = 0
    for k in range(len(words)):
        w = words[k]
        kind = w >> 12
        if kind == 0x0:  # EVT_ADDR_Y
            state[_Y] = w & 0x7FF
        elif kind == 0x2 and state[_STARTED]:  # EVT_ADDR_X: one event
            t[n], x[n], y[n], p[n] = state[_T], w & 0x7FF, state[_Y], 1 if w & 0x800 else -1
            n += 1
        elif kind == 0x3:  # VECT_BASE_X
            state[_X], state[_POL] = w & 0x7FF, 1 if w & 0x800 else -1
        elif (kind == 0x4 or kind == 0x5) and state[_STARTED]:  # VECT_12, VECT_8
            width = 12 if kind == 0x4 else 8
            for i in range(width):
                if w & (1 << i):
                    t[n], x[n], y[n], p[n] = state[_T], state[_X] + i, state[_Y], state[_POL]
                    n += 1
            state[_X] += width
        elif kind == 0x6:  # EVT_TIME_LOW
            state[_T] = state[_T_BASE] + (w & 0xFFF)
        elif kind == 0x8:  # EVT_TIME_HIGH: the low part restarts at 0, as in OpenEB
            if not _time_high(state, np.int64(w & 0xFFF) << 12, EVT3_LOOP_US):
                state[_BACKWARDS] = k
                break
            state[_T] = state[_T_BASE]
    return n


@numba.njit(nogil=True, cache=True)
def _decode_evt2(words, state, t, x, y, p):
    """32-bit words; a CD event carries its column, row and the 6 low bits of its time."""
    n = 0
    for k in range(len(words)):
        w = words[k]
        kind = w >> 28
        if kind <= 0x1 and state[_STARTED]:  # CD_OFF, CD_ON
            t[n] = state[_T_BASE] + ((w >> 22) & 0x3F)
            x[n], y[n], p[n] = (w >> 11) & 0x7FF, w & 0x7FF, 1 if kind else -1
            n += 1
        elif kind == 0x8:  # EV_TIME_HIGH
            if not _time_high(state, np.int64(w & 0xFFFFFFF) << 6, EVT2_LOOP_US):
                state[_BACKWARDS] = k
                break
    return n


def _decode_dat(records: np.ndarray, state: np.ndarray) -> EventPacket:
    """(N, 2) uint32 records: time, then x (bits 0-13), y (bits 14-27) and polarity (bit 28).
    Times are stored whole, but wrap at 2^32 µs (71 minutes)."""
    if len(records) == 0:
        return EventPacket.empty()
    raw = records[:, 0].astype(np.int64)
    if not state[_STARTED]:
        state[_T], state[_STARTED] = raw[0], 1
    steps = np.diff(raw, prepend=state[_T] % DAT_LOOP_US) % DAT_LOOP_US
    back = np.flatnonzero(steps >= DAT_LOOP_US // 2)
    if len(back):
        state[_BACKWARDS] = back[0]
        records, steps = records[:back[0]], steps[:back[0]]
    t = state[_T] + np.cumsum(steps)
    if len(t):
        state[_T] = t[-1]
    data = records[:, 1]
    return EventPacket(t, (data & 0x3FFF).astype(np.uint16), ((data >> 14) & 0x3FFF).astype(np.uint16),
                       np.where(data & 0x10000000, 1, -1).astype(np.int8))


class StreamDecoder:
    """One encoding's words (EVT3: uint16, EVT2: uint32, DAT: uint32 pairs), chunk after chunk,
    with the decoder state carried across chunks: a file read in pieces, or a ROS driver's
    packets of one camera's raw stream."""
    WORDS = {"EVT3": np.uint16, "EVT2": np.uint32, "DAT": np.uint32}

    def __init__(self, encoding: str):
        self.encoding = encoding
        self.word = np.dtype(self.WORDS[encoding])
        self.record = self.word.itemsize * (2 if encoding == "DAT" else 1)  # DAT: two words an event
        self._state = _new_state()

    @property
    def backwards_at(self) -> int:
        """The record of the last chunk where the clock ran backwards and decoding stopped, or -1."""
        return int(self._state[_BACKWARDS])

    def decode(self, words: np.ndarray) -> EventPacket:
        if self.encoding == "DAT":
            return _decode_dat(words.reshape(-1, 2), self._state)
        per_word = 12 if self.encoding == "EVT3" else 1  # a VECT_12 word holds up to 12 events
        n = len(words) * per_word
        t, x, y, p = np.empty(n, np.int64), np.empty(n, np.uint16), np.empty(n, np.uint16), np.empty(n, np.int8)
        decode = _decode_evt3 if self.encoding == "EVT3" else _decode_evt2
        return EventPacket(t, x, y, p)[:decode(words, self._state, t, x, y, p)]


def _read_header(f) -> dict[str, str]:
    """The '% key value' lines at the head of a RAW or DAT file; f is left after them."""
    header = {}
    while f.peek(1)[:1] == b"%":
        key, _, value = f.readline()[1:].decode("latin-1").strip().partition(" ")
        header[key.lower()] = value.strip()
    return header


def _encoding(path: Path, header: dict[str, str]) -> str:
    if path.suffix.lower() == ".dat":
        return "DAT"
    named = header.get("evt") or header.get("format", "").split(";")[0]  # 'evt 3.0', 'format EVT3;...'
    evt = {"2.0": "EVT2", "3.0": "EVT3", "EVT2": "EVT2", "EVT3": "EVT3"}.get(named.upper())
    if evt is None:
        raise InputError(f"{path}: unsupported RAW encoding ({named or 'none named in the header'}); "
                         f"EVT 3.0, EVT 2.0 and DAT files are supported: convert it with Metavision")
    return evt


def _geometry(header: dict[str, str]) -> tuple[int, int] | None:
    """(height, width) where the header says: 'Height' and 'Width' lines (DAT),
    'format EVT3;height=..;width=..' or 'geometry WxH' (RAW)."""
    fields = dict(kv.split("=", 1) for kv in header.get("format", "").split(";")[1:] if "=" in kv)
    w, _, h = header.get("geometry", "").partition("x")
    for h, w in ((header.get("height"), header.get("width")), (fields.get("height"), fields.get("width")), (h, w)):
        if h and w and h.isdigit() and w.isdigit() and int(h) > 0 and int(w) > 0:
            return int(h), int(w)
    return None


class PropheseeSource:
    """A Prophesee RAW (EVT 2.0 / 3.0) or DAT recording. Not paced: the pipeline paces recordings."""
    live = False
    has_frames = False

    def __init__(self, path: str | Path, sensor_size: tuple[int, int] | None = None,
                 chunk_bytes: int = CHUNK_BYTES):
        self._path = path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        self._f = open(path, "rb")
        try:
            self._open(path, sensor_size, chunk_bytes)
        except InputError:
            self._f.close()
            raise

    def _open(self, path: Path, sensor_size: tuple[int, int] | None, chunk_bytes: int):
        header = _read_header(self._f)
        self.encoding = _encoding(path, header)
        if self.encoding == "DAT":
            kind, size = self._f.read(2).ljust(2, b"\0")
            if (kind, size) != (DAT_CD_TYPE, DAT_CD_SIZE):
                raise InputError(f"{path}: not a DAT file of CD events (event type {kind}, size {size}; "
                                 f"expected {DAT_CD_TYPE}, {DAT_CD_SIZE})")
        self._data_start = self._f.tell()
        record = StreamDecoder(self.encoding).record
        self._chunk_bytes = max(chunk_bytes // record, 1) * record
        size = sensor_size or _geometry(header)
        if size is None:
            raise InputError(f"{path}: the header gives no sensor size; pass --sensor-size HxW "
                             f"(e.g. 480x640 for a Gen3 VGA sensor, 720x1280 for an IMX636)")
        self.height, self.width = size
        self.description = f"{path.name} (Prophesee {self.encoding}, {size_text(self.height, self.width)})"

    def __iter__(self):
        self._f.seek(self._data_start)
        decoder, n = StreamDecoder(self.encoding), 0
        while chunk := self._f.read(self._chunk_bytes):
            # a file cut mid-record (a recording that was killed) ends at its last whole record
            whole = len(chunk) // decoder.record * decoder.record
            ev = decoder.decode(np.frombuffer(chunk, decoder.word, whole // decoder.word.itemsize))
            if len(ev):
                require_on_sensor(str(self._path), ev.x, ev.y, self.height, self.width)
                n += len(ev)
                yield ev
            if decoder.backwards_at >= 0:
                at = self._f.tell() - len(chunk) + decoder.backwards_at * decoder.record
                raise InputError(f"{self._path}: damaged {self.encoding} data at byte {at}: its clock runs "
                                 f"backwards there (a damaged file, or not the encoding its header names)")
        if n == 0:
            raise InputError(f"{self._path}: the file holds no change-detection events")

    def close(self):
        self._f.close()
