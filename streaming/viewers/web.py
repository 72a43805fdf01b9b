"""The web viewer (view.py --web): a page that any number of browsers open, each fed the newest
linear frame over a WebSocket and tone-mapping it itself (the page: web_static/).

One thread subscribes to the pipeline and keeps only the newest frame, encoded once for every
page. Each page gets a frame only after it has drawn the previous one, and only the newest:
a slow browser or network skips frames, and a stalled one holds nothing but its own
connection. ZeroMQ drops what the subscriber cannot take, so nothing here can slow the pipeline.
"""
from __future__ import annotations

import asyncio
import json
import struct
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
from aiohttp import WSMsgType, web

from streaming.errors import InputError
from streaming.outputs.subscriber import Subscription

PAGE = Path(__file__).with_name("web_static")
DEFAULT_WEB = "127.0.0.1:8080"
HISTORY_S = 60  # the page's plot of the stats
POLL_MS = 100  # how soon the receiving thread notices the server stopping
FLOAT16_MAX = 65504.0  # larger radiance goes as float32
HEARTBEAT_S = 10  # a page that answers no ping within this is closed (a vanished laptop, say)


def parse_web_address(text: str) -> tuple[str, int]:
    """[HOST:]PORT -> (host, port); host defaults to this machine only (127.0.0.1)."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or DEFAULT_WEB.partition(":")[0]
    if not (port.isdigit() and 0 < int(port) < 65536):
        raise InputError(f"--web {text}: give [HOST:]PORT with a port 1-65535, e.g. {DEFAULT_WEB} "
                         "(0.0.0.0:8080 for other machines)")
    return host, int(port)


def encode_frame(header: dict, image: np.ndarray) -> bytes:
    """One binary WebSocket message: uint32 header length, the JSON header padded to a multiple
    of 4 bytes (a typed array over the pixels must start aligned), the raw pixels. float16
    halves what goes over the network; radiance beyond its range (or NaN) goes as float32."""
    peak = float(np.max(np.abs(image))) if image.size else 0.0
    pixels = image.astype(np.float16 if peak < FLOAT16_MAX else np.float32)
    head = json.dumps({**header, "dtype": str(pixels.dtype)}).encode()
    head += b" " * (-len(head) % 4)
    return struct.pack("<I", len(head)) + head + pixels.tobytes()


class Feed:
    """What every page is shown: the newest frame, the pipeline's state and its recent stats.
    Filled from the receiving thread through the event loop; each page's sender is woken."""

    def __init__(self, address: str):
        self.address = address
        self.frame: bytes | None = None
        self.status = {"type": "status", "state": "waiting", "address": address, "runs": 0}
        self.stats: deque[dict] = deque()
        self.stats_total = 0  # every stats message so far: a page's count of those it has says what it lacks
        self.pages: set[Page] = set()

    def _wake(self) -> None:
        for page in self.pages:
            page.wake.set()

    def set_frame(self, message: bytes) -> None:
        self.frame = message
        self._wake()

    def set_state(self, state: str, run: dict | None = None) -> None:
        """run: what makes the frames (protocol.py), as a new run goes live."""
        runs = self.status["runs"] + (state == "live")
        self.status = {"type": "status", "state": state, "address": self.address, "runs": runs,
                       "run": run or self.status.get("run", {})}
        self._wake()

    def add_stats(self, stats: dict) -> None:
        now = time.time()
        self.stats.append({**stats, "wall_s": now})
        while self.stats[0]["wall_s"] < now - HISTORY_S:
            self.stats.popleft()
        self.stats_total += 1
        self._wake()


class Page:
    """One browser's connection, and what it has been sent."""

    def __init__(self, ws: web.WebSocketResponse):
        self.ws = ws
        self.wake = asyncio.Event()
        self.drawn = True  # the page has drawn the last frame sent: it may have the next
        self.frame: bytes | None = None
        self.status: dict | None = None
        self.stats_total = 0

    async def send_news(self, feed: Feed) -> None:
        """Until the page goes: whatever it lacks, the frame only once it has drawn the last."""
        try:
            while not self.ws.closed:
                self.wake.clear()
                if not await self._send_what_is_new(feed):
                    await self.wake.wait()
        except ConnectionError:  # the page went while a message was on its way
            pass

    async def _send_what_is_new(self, feed: Feed) -> bool:
        sent = False
        if self.status is not feed.status:
            self.status, sent = feed.status, True
            await self.ws.send_str(json.dumps(self.status))
        if self.stats_total < feed.stats_total:
            missed = min(feed.stats_total - self.stats_total, len(feed.stats))
            self.stats_total, sent = feed.stats_total, True
            await self.ws.send_str(json.dumps({"type": "stats", "stats": list(feed.stats)[-missed:]}))
        if self.drawn and feed.frame is not None and self.frame is not feed.frame:
            self.frame, self.drawn, sent = feed.frame, False, True
            await self.ws.send_bytes(self.frame)
        return sent


TOPICS = (b"frame", b"stats")


def receive(feed: Feed, sub: Subscription, loop: asyncio.AbstractEventLoop, stop: threading.Event,
            failed: asyncio.Future) -> None:
    """The receiving thread: the pipeline's messages into the feed, one subscription per run
    (a pipeline that ends is waited for again at the same address)."""
    post = loop.call_soon_threadsafe
    try:
        while not stop.is_set():
            try:
                outcome = _relay_run(feed, sub, post, stop)
            finally:
                sub.close()
            if outcome:
                post(feed.set_state, outcome)
            if not stop.is_set():
                sub = Subscription(feed.address, TOPICS)
    except Exception as e:  # an InputError, or a bug: either must end the server, not leave a stale page
        post(failed.set_exception, e)


def _relay_run(feed: Feed, sub: Subscription, post, stop: threading.Event) -> str | None:
    """One pipeline's messages, until the server stops or the run is over: "ended" (its final
    stats came), "gone" (its connection closed first), or None: stopped, or a connection that
    brought nothing, such as one that reached a pipeline in its last moments after its end."""
    last_seq, ended, heard = None, False, False
    while not (stop.is_set() or sub.gone or ended):
        newest = None
        while not ended and (msg := sub.recv(POLL_MS if newest is None else 0)):  # drain: only the newest is shown
            topic, header, image = msg
            heard = True
            if topic == "stats":
                post(feed.add_stats, header)
                ended = bool(header.get("final"))
            else:
                newest = header, image
        if newest is not None:
            header, image = newest
            if last_seq is None or header["seq"] < last_seq:  # a first frame, or a pipeline restarted
                post(feed.set_state, "live", header.get("run", {}))
            last_seq = header["seq"]
            post(feed.set_frame, encode_frame(header, image))
    return "ended" if ended else "gone" if sub.gone and heard else None


def make_app(feed: Feed) -> web.Application:
    async def index(_request):
        return web.FileResponse(PAGE / "index.html")

    async def socket(request):
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S)
        await ws.prepare(request)
        page = Page(ws)
        feed.pages.add(page)
        sender = asyncio.create_task(page.send_news(feed))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and msg.data == "drawn":
                    page.drawn = True
                    page.wake.set()
        finally:
            feed.pages.discard(page)
            sender.cancel()
        return ws

    async def close_pages(_app):
        for page in list(feed.pages):
            await page.ws.close()

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/ws", socket)
    app.router.add_static("/static/", PAGE)
    app.on_shutdown.append(close_pages)
    return app


async def serve(address: str, web_address: str, log=lambda line: print(line, flush=True)) -> None:
    """Serve the page until cancelled (Ctrl-C)."""
    host, port = parse_web_address(web_address)
    first = Subscription(address, TOPICS)  # a bad address is refused before anything starts
    feed = Feed(address)
    runner = web.AppRunner(make_app(feed), handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as e:
        first.close()
        await runner.cleanup()
        raise InputError(f"cannot serve on {host}:{port}: {e.strerror}; pass another --web [HOST:]PORT, "
                         "e.g. 127.0.0.1:8081") from None
    stop = threading.Event()
    loop = asyncio.get_running_loop()
    failed = loop.create_future()
    receiver = threading.Thread(target=receive, args=(feed, first, loop, stop, failed), daemon=True)
    receiver.start()
    log(f"serving {address} on http://{host}:{port}/ (Ctrl-C stops)")
    try:
        await failed  # runs until cancelled, or until the address turns out not to be a pipeline's
    finally:
        stop.set()
        await runner.cleanup()
        receiver.join()
