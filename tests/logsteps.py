"""Module-level steps that print and log, for tests/test_logs.py (process workers import them)."""

import logging
import sys
import time

import microdag


def talk() -> int:
    print("to stdout")
    print("to stderr", file=sys.stderr)
    logging.getLogger("talker").warning("a warning record")
    return 1


def flaky(talk: int) -> int:
    attempt = microdag.context().attempt
    print(f"attempt {attempt}")
    if attempt == 1:
        raise ValueError("first attempt fails")
    return talk + 1


def item(x: int) -> int:
    print(f"item {x}")
    return x


def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
