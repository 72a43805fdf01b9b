"""How every command-line front ends: a user's mistake is one line and a status, not a traceback.

Imports nothing of the live path, so that the offline tools (train.py, evaluate.py) run where
its packages (ZeroMQ, PyAV) are missing, such as a GPU machine's own Python."""
import os
import signal
import sys
import threading
from pathlib import Path


def _quiet_interrupt(kind, value, tb, _default=sys.excepthook):
    """Ctrl-C while a front's imports load (torch, numba, dv: about a second) ends as one
    during start-up does: one line. Python then exits through SIGINT itself (status 130)."""
    if issubclass(kind, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
    else:
        _default(kind, value, tb)


# Set at import, before the imports below: every front imports this module first.
sys.excepthook = _quiet_interrupt

from streaming.errors import InputError  # noqa: E402

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # a terminal's Ctrl-C; kill, systemd, docker stop


class StopSignals:
    """Ctrl-C and SIGTERM as requests to stop, heard while the `with` block runs: they set a
    flag rather than raise KeyboardInterrupt. An exception raised inside a finalizer or a
    library's callback is only printed (one replay in our tests ran to its end after Ctrl-C),
    and one raised halfway through writing a frame tears it. The first signal sets `first`
    (stop taking input, finish what is queued); another sets `second` (drop what is queued).
    Only the main thread hears signals: elsewhere nothing is installed."""

    def __init__(self):
        self.first, self.second = threading.Event(), threading.Event()
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._heard) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _heard(self, signum, _frame):
        self.signum = self.signum or signum
        (self.second if self.first.is_set() else self.first).set()

    @property
    def exit_status(self) -> int:
        """0, or what a shell reports for a process the first signal ended: 130 (SIGINT), 143 (SIGTERM)."""
        return 128 + self.signum if self.signum else 0


def say(line: str) -> None:
    """A line on stdout, flushed. A closed stdout (`| head -1`) stops nothing: the lines go
    nowhere from then on, and the run and its recording go on."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def check_output_folder(path: str | Path, what: str) -> None:
    """Checked before any work: a missing folder found as the file is first written, at the end
    of a long evaluation or at a replay's first frame, would cost that work."""
    folder = Path(path).parent
    if not folder.is_dir():
        raise InputError(f"{what} {path}: there is no folder {folder}")
    if not os.access(folder, os.W_OK):
        raise InputError(f"{what} {path}: the folder {folder} is not writable")


ROOM_KEPT_FREE = 1 << 20  # bytes a write of a recording or video leaves free, to close the file in


def require_room(path: str | Path, nbytes: int, survives: str = "", name: str | Path | None = None) -> None:
    """Checked before each write of a recording or a video: a file whose writer ran out of space
    halfway cannot be closed (HDF5's clean-up crashed the process; an mp4 without its index does
    not play). So the room to close it is kept free. survives: what the message adds about what
    the file keeps; name: the file as the user knows it, where it is written under another."""
    st = os.statvfs(Path(path).resolve().parent)
    room = st.f_bavail * st.f_frsize
    if room < nbytes + ROOM_KEPT_FREE:
        raise InputError(f"{name or path}: no space left on the device ({room >> 10} KiB free){survives}")


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether writing a would overwrite b: the same path, a link, or a hard link to it."""
    return Path(a).exists() and Path(b).exists() and os.path.samefile(a, b)


def check_output_dir(path: str | Path, what: str) -> None:
    """A folder to write into, made with its parents where missing: a file in its way is found
    before any work, not when the first file is written at the end of it."""
    path = Path(path)
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise InputError(f"{what} {path}: {existing} is a file, not a folder")


def run_main(main) -> None:
    """Run a front's main(): an InputError is one line on stderr and exit status 2. Ctrl-C
    while a pipeline runs is the pipeline's (it drains and closes); before that, during
    start-up, nothing is open yet and the run just ends (status 130, as shells expect)."""
    try:
        sys.exit(main())
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, Exception) as e:
        interrupt = _interrupt(e)
        if interrupt is None:
            raise
        print("interrupted", file=sys.stderr)
        sys.exit(128 + getattr(interrupt, "signum", signal.SIGINT))


class Terminated(KeyboardInterrupt):
    """SIGTERM where a front takes it as Ctrl-C, ending with SIGTERM's status (143)."""
    signum = signal.SIGTERM


def _interrupt(e: BaseException | None) -> KeyboardInterrupt | None:
    """A Ctrl-C inside a Numba-compiled function comes out as a SystemError raised from it."""
    while e is not None:
        if isinstance(e, KeyboardInterrupt):
            return e
        e = e.__cause__ or e.__context__
    return None
