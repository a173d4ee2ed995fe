"""Flows the Argo export refuses (tests/test_argo.py), one problem or several each."""

import microdag

from argosteps import numbers, square

cached = microdag.Flow("cached")
cached.add("numbers", numbers, cache=True)

several = microdag.Flow("several")
several.add("numbers", numbers, priority=3, retry_on=ValueError)
several.add("square", square, inputs={"x": "numbers"}, retries=2, retry_delay=1, retry_backoff=1.5)
