"""What a sensor gives: the checks of its size and of events on it, and grey images from colour."""
from __future__ import annotations

import numpy as np

from streaming.errors import InputError

MAX_SENSOR_SIDE = 4096  # an IMX636 is 1280x720: a larger side is a typo, whose voxel grids would not fit in memory


def size_text(height: int, width: int) -> str:
    """A sensor's size as every flag takes it, height first (sensors are named the other way
    round: a DAVIS346 is 346 pixels wide), so that what a run prints can be passed back."""
    return f"HxW {height}x{width}"


def check_sensor_size(where: str, height: int, width: int, flag: str = "--sensor-size") -> None:
    if not (0 < height <= MAX_SENSOR_SIDE and 0 < width <= MAX_SENSOR_SIDE):
        raise InputError(f"{where}: a sensor of {height}x{width} (height x width)? Each side is 1 to "
                         f"{MAX_SENSOR_SIDE} pixels; give the size with {flag} HxW, e.g. 260x346")


def require_on_sensor(where: str, x: np.ndarray, y: np.ndarray, height: int, width: int) -> None:
    """A recording's events off its sensor mean a wrong size (the file's or --sensor-size) or
    damaged data: one line, rather than a replay whose sanitizer drops them as it does a live
    camera's."""
    out = (x < 0) | (x >= width) | (y < 0) | (y >= height)
    if out.any():
        i = int(np.argmax(out))
        raise InputError(f"{where}: an event at (x={x[i]}, y={y[i]}) lies outside the {size_text(height, width)} "
                         f"sensor: damaged data, or a wrong sensor size (run_replay.py and convert.py "
                         f"take --sensor-size HxW, height first)")


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # Rec. 601 weights of R, G, B (as OpenCV's grey)


def reference_image(pixels: np.ndarray, channel_order: str = "rgb") -> np.ndarray:
    """A recorded image as a ReferenceFrame's: (H, W) or (H, W, 1 or 3), integer or float ->
    linear float32 (H, W); integers divided by their type's maximum, colour (channel_order "rgb"
    or "bgr") to its luma."""
    img = pixels.astype(np.float32)
    if np.issubdtype(pixels.dtype, np.integer):
        img /= np.iinfo(pixels.dtype).max
    if img.ndim == 3:
        img = img[..., 0] if img.shape[2] == 1 else img @ (_LUMA if channel_order == "rgb" else _LUMA[::-1])
    return img
