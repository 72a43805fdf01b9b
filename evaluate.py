#!/usr/bin/env python3
"""Evaluate models against ground-truth frames: see model/evaluation/evaluate.py."""
from streaming.exits import run_main  # first: it makes a Ctrl-C during the imports quiet
from model.evaluation.evaluate import main

if __name__ == "__main__":
    run_main(main)
