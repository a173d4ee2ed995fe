"""A small text pipeline on microdag: fetch documents, count words per
document in parallel (a map), merge the counts, and report.

Run it with ``python examples/wordcount.py``; it needs nothing but microdag.
"""

from __future__ import annotations

import collections
import time

import microdag

flow = microdag.Flow("wordcount")

DOCUMENTS = {
    "kernel": "a ready set of steps and a ready set of steps run in order",
    "engine": "steps run inline on threads or on processes",
    "stores": "a crashed run resumes where it stopped",
}


@flow.step
def documents(corpus=DOCUMENTS) -> list[list[str]]:
    """The documents to count, as [name, text] pairs (lists: JSON values, which a
    durable store keeps exactly; a tuple would need the pickle codec)."""
    return [[name, text] for name, text in sorted(corpus.items())]


@flow.step(map="document", inputs={"document": "documents"}, retries=2)
def counts(document: list[str]) -> dict[str, int]:
    """Word counts of one document (one task per document)."""
    _, text = document
    return dict(collections.Counter(text.split()))


@flow.step
def merged(counts: list[dict[str, int]]) -> dict[str, int]:
    """All the counts added up."""
    total: collections.Counter[str] = collections.Counter()
    for c in counts:
        total.update(c)
    return dict(total)


@flow.step
def report(merged: dict[str, int], top: int = 3) -> str:
    """The most common words."""
    best = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return ", ".join(f"{word}: {n}" for word, n in best)


def main() -> None:
    start = time.perf_counter()
    run = flow.run({"top": 3}, executor="threads")
    elapsed = time.perf_counter() - start
    print(f"microdag {microdag.__version__} (scheduler: {microdag.SCHEDULER})")
    print(f"run {run.id}: {run.status} in {elapsed * 1000:.1f} ms")
    for name, task in run.tasks.items():
        print(f"  {name:<10} {task.status:<10} attempts={task.attempts}")
    print("top words:", run["report"])
    print(flow.graph.to_mermaid(), end="")


if __name__ == "__main__":
    main()
