#!/usr/bin/env python3
"""Train an EventHDR network: see model/train.py."""
from model.train import main
from streaming.exits import run_main

if __name__ == "__main__":
    run_main(main)
