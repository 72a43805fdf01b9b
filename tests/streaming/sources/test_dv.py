"""The dv-processing sources against real parts: the DAVIS346 recording, a DV network stream
served by a second process (tests/dvserver.py), dv-processing's own denoiser."""
from __future__ import annotations

import socket
import threading
import time

import dv_processing as dv
import numpy as np
import pytest

from streaming.datatypes import EventPacket, ReferenceFrame
from streaming.errors import InputError, SourceUnavailable
from streaming.outputs.event_server import serve_events
from streaming.sources.aedat4 import Aedat4Source
from streaming.sources.dv import CameraSource, NetworkSource, denoiser, from_event_store, to_event_store
from streaming.sources.interleave import Interleaver
from streaming.sources.open import open_source
from tests.conftest import STREET_AEDAT4 as RECORDING
from tests.conftest import WAIT_S, free_port

UNIX_US = 1_700_000_000_000_000


def iterate_in_thread(source) -> tuple[threading.Thread, list]:
    """A source that never ends then fails the test (see finish) instead of hanging it."""
    items = []
    thread = threading.Thread(target=lambda: items.extend(source), daemon=True)
    thread.start()
    return thread, items


def finish(thread: threading.Thread):
    thread.join(WAIT_S)
    assert not thread.is_alive(), f"iteration did not end within {WAIT_S} s"


def drain(source) -> list:
    thread, items = iterate_in_thread(source)
    finish(thread)
    return items


def assert_one_line(err: pytest.ExceptionInfo, *fragments: str):
    msg = str(err.value)
    assert "\n" not in msg, msg
    for f in fragments:
        assert f in msg, msg


# --- AEDAT4 recording ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def recording_items():
    if not RECORDING.exists():
        pytest.skip(f"{RECORDING} is missing")
    src = Aedat4Source(RECORDING)
    try:
        return src, list(src)
    finally:
        src.close()


def test_aedat4_resolution_counts_and_types(recording_items):
    src, items = recording_items
    assert (src.width, src.height, src.live) == (346, 260, False)
    packets = [i for i in items if isinstance(i, EventPacket)]
    frames = [i for i in items if isinstance(i, ReferenceFrame)]
    assert len(packets) + len(frames) == len(items)
    ev = EventPacket.concat(packets)
    assert len(ev) == 78_830
    assert len(frames) == 59
    assert (ev.t.dtype, ev.x.dtype, ev.y.dtype, ev.p.dtype) == (np.int64, np.uint16, np.uint16, np.int8)
    assert set(np.unique(ev.p)) == {-1, 1}
    assert ev.x.max() < 346 and ev.y.max() < 260
    for f in frames:
        assert f.image.shape == (260, 346) and f.image.dtype == np.float32
        assert 0.0 <= f.image.min() and f.image.max() <= 1.0
    assert frames[5].image.std() > 0  # a real picture, not a blank


def test_aedat4_is_time_ordered(recording_items):
    _, items = recording_items
    stamps = np.concatenate([i.t if isinstance(i, EventPacket) else [i.t_us] for i in items])
    assert np.all(np.diff(stamps) >= 0)
    assert np.diff(np.array([i.t_us for i in items if isinstance(i, ReferenceFrame)])).min() > 0


def test_aedat4_event_idx_is_the_last_event_before_the_image(recording_items):
    _, items = recording_items
    all_t = EventPacket.concat([i for i in items if isinstance(i, EventPacket)]).t
    seen = 0
    for item in items:
        if isinstance(item, EventPacket):
            seen += len(item)
            continue
        expected = max(int(np.searchsorted(all_t, item.t_us, "left")) - 1, 0)
        assert item.event_idx == expected == max(seen - 1, 0)


def test_aedat4_iterates_again_from_the_start(recording_items):
    src = Aedat4Source(RECORDING)
    try:
        first = next(iter(src))
        again = next(iter(src))
    finally:
        src.close()
    assert type(first) is type(again) and first.t_us == again.t_us  # a frame comes first here


def test_aedat4_missing_file(tmp_path):
    with pytest.raises(InputError) as err:
        Aedat4Source(tmp_path / "nothing.aedat4")
    assert_one_line(err, "nothing.aedat4", "no such file")


def test_aedat4_not_an_aedat4_file(tmp_path):
    bad = tmp_path / "notes.aedat4"
    bad.write_text("these are not events\n")
    with pytest.raises(InputError) as err:
        Aedat4Source(bad)
    assert_one_line(err, "notes.aedat4", "not a readable AEDAT4 recording")


def test_aedat4_without_events(tmp_path):
    path = tmp_path / "frames_only.aedat4"
    writer = dv.io.MonoCameraWriter(str(path), dv.io.MonoCameraWriter.FrameOnlyConfig("TEST_0", (32, 24)))
    writer.writeFrame(dv.Frame(1000, np.zeros((24, 32), np.uint8)))
    del writer  # dv finishes the file when the writer is freed
    with pytest.raises(InputError) as err:
        Aedat4Source(path)
    assert_one_line(err, "no event stream", "frames")


def test_aedat4_colour_frames_are_read_as_opencv_writes_them(tmp_path):
    """dv's frames are OpenCV's: a pure blue picture is (255, 0, 0) there, and its luma is blue's
    weight (0.114), not red's (0.299)."""
    path = tmp_path / "colour.aedat4"
    writer = dv.io.MonoCameraWriter(str(path), dv.io.MonoCameraWriter.DAVISConfig("TEST_0", (32, 24)))
    events = dv.EventStore()
    for t in range(1000, 3000, 100):
        events.push_back(t, 1, 2, True)
    writer.writeEvents(events)
    blue = np.zeros((24, 32, 3), np.uint8)
    blue[..., 0] = 255
    writer.writeFrame(dv.Frame(2000, blue))
    del writer
    refs = [item for item in Aedat4Source(path) if isinstance(item, ReferenceFrame)]
    assert len(refs) == 1 and np.allclose(refs[0].image, 0.114, atol=1e-6)


# --- network stream ------------------------------------------------------------------------

def test_network_source_reads_until_the_server_stops(dvserver):
    port, proc = dvserver("--seconds", "1.5", "--rate", "50000", "--width", "240", "--height", "180")
    src = NetworkSource(f"tcp://127.0.0.1:{port}")
    assert (src.width, src.height, src.live) == (240, 180, True)  # from the stream, not a default
    items = drain(src)  # returns on its own: the server's end is the end of input
    src.close()
    assert proc.wait(WAIT_S) == 0
    ev = EventPacket.concat(items)
    assert 20_000 < len(ev) <= 75_000  # about 1.5 s at 50 kev/s
    assert np.all(np.diff(ev.t) >= 0)
    assert ev.x.max() < 240 and ev.y.max() < 180 and set(np.unique(ev.p)) <= {-1, 1}


def test_a_silent_stream_still_hands_control_back():
    """A reader waiting on a stream that sends nothing yields empty packets, so that the
    pipeline's reader still hears Ctrl-C."""
    port, listening = free_port(), threading.Event()
    server = threading.Thread(target=serve_events, args=(StubSource(silent_s=1.5), f"127.0.0.1:{port}"),
                              kwargs={"on_listening": listening.set, "wait_clients": 1}, daemon=True)
    server.start()
    assert listening.wait(WAIT_S)
    src = NetworkSource(f"tcp://127.0.0.1:{port}")
    items, t0 = iter(src), time.monotonic()
    first = next(items)
    assert len(first) == 0 and time.monotonic() - t0 < 0.5  # the server stays silent for 1.5 s
    rest = drain(items)
    assert sum(len(ev) for ev in rest) == 0  # and then ends: so does the reader
    src.close()
    finish(server)


def test_network_source_closed_port():
    port = free_port()
    with pytest.raises(InputError) as err:
        NetworkSource(f"tcp://127.0.0.1:{port}")
    assert_one_line(err, f"cannot connect to tcp://127.0.0.1:{port}", "is the server running?")


def test_bad_address():
    with pytest.raises(InputError) as err:
        open_source("tcp://localhost")
    assert_one_line(err, "bad address", "HOST:PORT")
    with pytest.raises(SourceUnavailable) as err:  # --reconnect waits for a name server
        open_source("tcp://nosuchhost.invalid:7777")
    assert_one_line(err, "cannot find the host nosuchhost.invalid")


def test_a_stream_by_host_name(dvserver):
    """dv takes IP addresses only: localhost gave 'Invalid argument'."""
    port, _ = dvserver("--seconds", "0.5", "--rate", "20000", "--width", "64", "--height", "48")
    src = NetworkSource(f"tcp://localhost:{port}")
    assert src.description.startswith(f"tcp://localhost:{port} (") and len(EventPacket.concat(drain(src))) > 0
    src.close()


def serve_to_a_reader(source, denoise: bool = False) -> tuple[int, EventPacket]:
    """serve_events(source) on a free port, read by a NetworkSource: (events written, events read)."""
    port = free_port()
    readers = []

    def connect():  # the reader must be connected before the first packet goes out
        src = open_source(f"tcp://127.0.0.1:{port}", denoise)
        readers.append((src, *iterate_in_thread(src)))

    written = serve_events(source, f"127.0.0.1:{port}", rate=float("inf"), on_listening=connect)
    src, thread, received = readers[0]
    finish(thread)  # serve_events hung up when its source ended: the reader's input ends
    src.close()
    assert (src.width, src.height) == (source.width, source.height)
    return written, EventPacket.concat(received)


def test_serve_events_forwards_a_recording_to_a_reader(recording_items):
    _, items = recording_items
    sent = EventPacket.concat([i for i in items if isinstance(i, EventPacket)])
    recording = Aedat4Source(RECORDING)
    written, got = serve_to_a_reader(recording)
    recording.close()
    assert written == len(sent)
    for f in "txyp":
        np.testing.assert_array_equal(getattr(got, f), getattr(sent, f))


def test_serve_events_relays_a_network_stream_without_converting_it(dvserver):
    port, proc = dvserver("--seconds", "1", "--rate", "50000", "--width", "240", "--height", "180", "--wait-client")
    upstream = NetworkSource(f"tcp://127.0.0.1:{port}")  # the other machine's camera, say
    served = []
    stores = upstream.stores()
    upstream.stores = lambda: (served.append(s) or s for s in stores)  # what the relay takes from upstream
    written, got = serve_to_a_reader(upstream)
    upstream.close()
    assert proc.wait(WAIT_S) == 0
    assert 30_000 < written == len(got) and written == sum(s.size() for s in served)
    sent = EventPacket.concat([from_event_store(s) for s in served])
    for f in "txyp":
        np.testing.assert_array_equal(getattr(got, f), getattr(sent, f))


def test_a_denoised_network_stream_drops_isolated_events_and_keeps_a_moving_edge():
    written, got = serve_to_a_reader(StubSource([edge_and_noise()], width=346, height=260), denoise=True)
    assert written == 80 * 260 + 16
    assert int((got.x >= 150).sum()) == 0  # the noise
    assert int((got.x < 100).sum()) > 0.9 * 80 * 260  # the edge


def test_serve_events_port_in_use():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(InputError) as err:
            serve_events(StubSource(), f"127.0.0.1:{port}")
    assert_one_line(err, f"cannot serve on 127.0.0.1:{port}", "pick another port")


class StubSource:
    """A live source made up by the test: `packets`, after `silent_s` seconds of nothing."""
    live, description = True, "test stub"

    def __init__(self, packets=(), silent_s: float = 0.0, width: int = 8, height: int = 8):
        self.packets, self.silent_s, self.width, self.height = list(packets), silent_s, width, height

    def __iter__(self):
        time.sleep(self.silent_s)
        return iter(self.packets)


# --- camera ----------------------------------------------------------------------------------

def test_no_camera_is_an_input_error():
    if dv.io.camera.discover():
        pytest.skip("a camera is plugged in")
    with pytest.raises(InputError) as err:
        CameraSource()
    assert_one_line(err, "no event camera found (discovered: none)", "tcp://HOST:PORT")
    with pytest.raises(InputError):
        open_source("")


# --- conversions and the denoiser ------------------------------------------------------------

def test_event_store_round_trip():
    ev = EventPacket(np.array([5, 7, 7, 90], np.int64), np.array([0, 345, 3, 4], np.uint16),
                     np.array([259, 0, 1, 2], np.uint16), np.array([1, -1, -1, 1], np.int8))
    back = from_event_store(to_event_store(ev))
    for f in "txyp":
        np.testing.assert_array_equal(getattr(back, f), getattr(ev, f))
        assert getattr(back, f).dtype == getattr(ev, f).dtype


def edge_and_noise() -> EventPacket:
    rng = np.random.default_rng(0)
    # an edge sweeping right one column per ms over x 10..89, every row firing within that ms
    cols = np.repeat(np.arange(10, 90), 260)
    edge_t = np.repeat(np.arange(80) * 1000, 260) + rng.integers(0, 1000, cols.size)
    edge = np.stack([edge_t, cols, np.tile(np.arange(260), 80)])
    # noise: lone pixels far from the edge and from each other, 5 ms apart (the filter looks 2 ms back)
    k = np.arange(16)
    noise = np.stack([k * 5000 + 500, 150 + 10 * k, 20 + 13 * k])
    both = np.concatenate([edge, noise], axis=1)
    both = both[:, np.argsort(both[0], kind="stable")]
    # camera clocks are Unix µs; near t=0 dv's filter would count its zeroed memory as support
    return EventPacket(UNIX_US + both[0].astype(np.int64), both[1].astype(np.uint16), both[2].astype(np.uint16),
                       np.ones(both.shape[1], np.int8))


def test_denoiser_drops_isolated_events_and_keeps_a_moving_edge():
    ev = edge_and_noise()
    denoise = denoiser(346, 260)
    out = EventPacket.concat([from_event_store(denoise(to_event_store(part)))
                              for part in (ev[:8000], ev[8000:])])  # the state spans stores
    assert int((out.x >= 150).sum()) == 0
    assert int((out.x < 100).sum()) > 0.9 * 80 * 260
    assert np.all(np.diff(out.t) >= 0)



def packet(*t: int) -> EventPacket:
    n = len(t)
    return EventPacket(np.array(t, np.int64), np.zeros(n, np.uint16), np.zeros(n, np.uint16), np.ones(n, np.int8))


def test_live_frames_wait_for_the_events_or_go_at_once_when_late():
    """The camera's path, without a camera: a frame ahead of the events waits for them; one
    that arrives behind events already passed on goes out at once with event_idx -1."""
    merge = Interleaver()
    image = np.ones((2, 3), np.float32)
    merge.add_frame(25, image)
    out = list(merge.events(packet(10, 20, 30)))
    assert [len(i) if isinstance(i, EventPacket) else i.t_us for i in out] == [2, 25, 1]
    assert out[1].event_idx == 1 and out[1].image.max() == 1.0
    merge.add_frame(28, image)  # late: the events up to 30 are out already
    assert [(f.t_us, f.event_idx) for f in merge.events(EventPacket.empty())] == [(28, -1)]
    merge.add_frame(45, image)  # early: waits for the events up to 45
    assert list(merge.events(EventPacket.empty())) == []
    out = list(merge.events(packet(40, 50)))
    assert [len(i) if isinstance(i, EventPacket) else (i.t_us, i.event_idx) for i in out] == [1, (45, 3), 1]
