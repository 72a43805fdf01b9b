#!/usr/bin/env python3
"""Evaluate models against ground-truth frames: see model/evaluate.py."""
from model.evaluate import main
from streaming.exits import run_main

if __name__ == "__main__":
    run_main(main)
