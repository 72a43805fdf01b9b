"""The benchmarks' argument types: a count of 0 or a rate of nan is argparse's usage line and
status 2, not a traceback halfway through a measurement."""
import argparse
import math


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: give a whole number of 1 or more")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text}: give a positive finite number")
    return value
