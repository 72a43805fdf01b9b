"""Checks a fresh build of native/_C: `make` runs `python -m native.check` after setup.py and,
if it fails, removes the library, so the network falls back instead of crashing later.

What it catches: a compiler that links its own copy of the C++ runtime into the extension
(seen with a g++ wrapper that links libstdc++ statically). Such a library computes right, but
its first argument error formats a number with an uninitialised copy of the runtime and kills
the process (SIGSEGV) instead of raising. The cure is the system compiler:
    CC=gcc CXX=g++ LDSHARED="g++ -shared" make native
"""
import sys

import torch

import native


def main() -> int:
    if not native.available:
        print(f"native.check: the extension did not load: {native.load_error}", file=sys.stderr)
        return 1
    x = torch.zeros(1, 2, 4, 4)
    weight = torch.zeros(1, 2, 3, 3)
    bad_offset = torch.zeros(1, 17, 4, 4)  # not a multiple of 2 * 3 * 3: the error names both numbers
    try:
        native.deform_conv2d(x, bad_offset, weight, padding=1)
    except RuntimeError as e:
        if "18" not in str(e) or "17" not in str(e):
            print(f"native.check: unexpected error text: {e}", file=sys.stderr)
            return 1
        return 0
    print("native.check: a bad offset shape was accepted", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
