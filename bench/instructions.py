"""A workload for counting instructions with callgrind (wall time on a shared machine is too noisy for 1%).

Usage (the instructions a round costs: the count of 3 rounds minus 1 round, halved)::

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python bench/instructions.py kernel c 3 20000      # and 1; twin c or py
    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python bench/instructions.py flow c 3 20000        # and 1

``kernel``: the kernel alone on a random graph of ``n`` nodes (2 edges each,
to one of the 50 nodes before it); a round is one ``take(1)``/``done`` pass
and one ``take()``/``done_many`` pass.  ``flow``: ``Flow.run()`` inline on
the layered flow of ``bench_flow.py`` at ``n`` steps.  ``PYTHONHASHSEED``
must be fixed: string hashing changes dictionaries' probes, enough to move
a count by a few per cent between processes.  To compare with another
checkout, put its ``src`` first on ``PYTHONPATH``.
"""

import os
import random
import sys


def kernel(rounds: int, n: int) -> None:
    from microdag import _compat

    r = random.Random(1)
    src: "list[int]" = []
    dst: "list[int]" = []
    for i in range(1, n):
        for _ in range(2):
            src.append(r.randrange(max(0, i - 50), i))
            dst.append(i)
    k = _compat.sched.Kernel(n, src, dst)
    for _ in range(rounds):
        k.reset()
        while k.remaining:
            k.done(k.take(1)[0])
        k.reset()
        while k.remaining:
            k.done_many(k.take())


def flow(rounds: int, n: int) -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_flow

    _, compiled, _ = bench_flow.workload(n)
    for _ in range(rounds):
        compiled.run()


if __name__ == "__main__":
    what, twin, rounds, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if twin == "py":
        os.environ["MICRODAG_NO_EXTENSIONS"] = "1"
    {"kernel": kernel, "flow": flow}[what](rounds, n)
