"""The drawing's layout of a 1,000-node graph: ``python bench/layout_scale.py``.

Times the layout the report and the UI draw with (``microdag._layout.layout``;
``microdag._render.layout`` in versions before it moved) on three graphs of
1,000 nodes: ``layers`` (10 layers of 100, three dependencies each in the layer
before: no long edge), ``random`` (three dependencies each among the nodes
before it: most edges long) and ``chain``.  Prints the median of 9 rounds and
how many points the routes hold (docs/performance.md, "Graph layout").
"""

import random
import statistics
import time

try:
    from microdag._layout import layout
except ImportError:  # a version before the layout had a module of its own
    from microdag._render import layout  # type: ignore[no-redef]

N = 1000


def graphs() -> "dict[str, list[list[int]]]":
    rng = random.Random(25)
    return {
        "layers": [[] if v < 100 else rng.sample(range((v // 100 - 1) * 100, v // 100 * 100), 3) for v in range(N)],
        "random": [rng.sample(range(v), min(3, v)) for v in range(N)],
        "chain": [[v - 1] if v else [] for v in range(N)],
    }


def main() -> None:
    for name, deps in graphs().items():
        times = []
        for _ in range(9):
            started = time.perf_counter()
            out = layout(N, deps)
            times.append(time.perf_counter() - started)
        points = sum(len(r) for r in out[5]) if len(out) > 5 else 0
        print(f"{name}: {statistics.median(times) * 1000:.1f} ms, {sum(map(len, out[0]))} edges, {points} route points")


if __name__ == "__main__":
    main()
