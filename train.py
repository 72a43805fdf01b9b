#!/usr/bin/env python3
"""Train a reconstruction network: see model/training/train.py."""
from streaming.exits import run_main  # first: it makes a Ctrl-C during the imports quiet
from model.training.train import main

if __name__ == "__main__":
    run_main(main)
