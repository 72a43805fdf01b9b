"""The errors every stage may raise. Imports nothing.

An InputError is the user's to fix: the fronts print its message as one line and exit non-zero.
"""


class InputError(Exception):
    """A problem the user can fix (missing file, wrong format, bad config, no camera).

    The command-line fronts print its message as one line and exit non-zero."""


class SourceLost(InputError):
    """A live input went away mid-run (camera unplugged), or its clock jumped back (a timestamp
    reset: `still_there`, the source can be reopened at once). The pipeline may re-open the
    source; left unhandled it ends the run with one line like any InputError."""

    def __init__(self, message: str, still_there: bool = False):
        super().__init__(message)
        self.still_there = still_there


class SourceUnavailable(InputError):
    """A live input that is not there (yet): no camera plugged in, or in another program's hands;
    no server listening. --reconnect waits for it; else it ends the run with one line."""


class WindowRefused(Exception):
    """A window a reconstructor will not take (its voxel grid holds NaN or inf). The model's state
    stays as it was; the pipeline counts the window as rejected and goes on. Any other exception
    from a model is a bug, and ends the run."""
