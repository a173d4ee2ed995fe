"""A retrieval pipeline: index a corpus, then retrieve and rerank candidates
for a list of queries, each a map step over the queries with batching.

``retrieve`` scores every document with BM25 and keeps the best ten;
``rerank`` rescores those candidates with a finer measure (cosine similarity of
word and word-pair counts, plus a bonus for query words that appear close
together).  Both take batches of queries (``batch_size``), as a model server
would, and return one result per query.  Everything is pure Python.

Run it with ``python examples/retrieval.py``.
"""

from __future__ import annotations

import collections
import math
import re
import sys

import microdag

flow = microdag.Flow("retrieval")

CORPUS = [
    "A ready set scheduler runs every step whose dependencies have finished.",
    "Topological sorting orders the nodes of a directed acyclic graph.",
    "A cycle in the dependency graph makes a topological order impossible.",
    "Retries with exponential backoff help steps that fail for transient reasons.",
    "A timeout stops a step that runs for too long and fails it.",
    "SQLite keeps the state of every task so that a crashed run can resume.",
    "Write-ahead logging lets readers and one writer share an SQLite file.",
    "Caching by input hash skips a step whose inputs have not changed.",
    "A thread pool runs blocking steps in parallel within one process.",
    "A process pool runs CPU-bound steps in parallel on several cores.",
    "Asyncio runs many waiting steps concurrently on one event loop.",
    "Mapping a step over a list runs it once per item, in batches if asked.",
    "The critical path is the longest chain of dependent steps in a graph.",
    "Priorities decide which ready step starts first when workers are scarce.",
    "A flow file in TOML declares steps, their commands and their options.",
    "Graphviz DOT and Mermaid draw a graph of steps for documentation.",
    "BM25 ranks documents by term frequency and inverse document frequency.",
    "Reranking rescores the best candidates with a slower, finer model.",
    "Cosine similarity compares two vectors of word counts by their angle.",
    "Batching amortises per-call overhead over many items at once.",
]

QUERIES = [
    "how does a crashed run resume",
    "rank documents by term frequency",
    "run CPU-bound steps in parallel",
    "what breaks a topological order",
    "skip a step when its inputs have not changed",
    "which ready step starts first",
    "draw a graph for documentation",
]


def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


@flow.step
def index(corpus: list[str] = CORPUS) -> dict[str, object]:
    """Term counts per document and document frequencies (JSON-friendly)."""
    docs = [collections.Counter(tokens(d)) for d in corpus]
    df: collections.Counter[str] = collections.Counter()
    for counts in docs:
        df.update(counts.keys())
    lengths = [sum(c.values()) for c in docs]
    return {
        "docs": [dict(c) for c in docs],
        "df": dict(df),
        "lengths": lengths,
        "avg": sum(lengths) / len(lengths),
        "text": corpus,
    }


@flow.step(map="queries", batch_size=3)
def retrieve(queries: list[str], index: dict, k: int = 10) -> list[dict[str, object]]:
    """BM25 top ``k`` per query, for a batch of queries."""
    n = len(index["docs"])
    k1, b = 1.5, 0.75
    out = []
    for query in queries:
        scores = []
        for d, (counts, length) in enumerate(zip(index["docs"], index["lengths"])):
            score = 0.0
            for term in set(tokens(query)):
                tf = counts.get(term, 0)
                if tf:
                    idf = math.log(1 + (n - index["df"][term] + 0.5) / (index["df"][term] + 0.5))
                    score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / index["avg"]))
            scores.append((score, d))
        best = sorted(scores, key=lambda s: (-s[0], s[1]))[:k]
        out.append({"query": query, "candidates": [d for score, d in best if score > 0]})
    return out


def _features(words: list[str]) -> collections.Counter[str]:
    feats = collections.Counter(words)
    feats.update(f"{a} {b}" for a, b in zip(words, words[1:]))
    return feats


def _cosine(a: collections.Counter[str], b: collections.Counter[str]) -> float:
    dot = sum(v * b[k] for k, v in a.items() if k in b)
    norm = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    return dot / norm if norm else 0.0


@flow.step(map="hits", inputs={"hits": "retrieve"}, batch_size=4)
def rerank(hits: list[dict], index: dict) -> list[dict[str, object]]:
    """Rescore each query's candidates; the best three stay."""
    out = []
    for hit in hits:
        q = tokens(hit["query"])
        qf = _features(q)
        ranked = []
        for d in hit["candidates"]:
            words = tokens(index["text"][d])
            near = sum(1 for a, b in zip(words, words[1:]) if a in q and b in q)
            ranked.append((round(_cosine(qf, _features(words)) + 0.1 * near, 4), d))
        ranked.sort(key=lambda r: (-r[0], r[1]))
        out.append({"query": hit["query"], "top": [{"doc": d, "score": s} for s, d in ranked[:3]]})
    return out


@flow.step
def answers(rerank: list[dict], index: dict) -> dict[str, str]:
    """Each query's best document."""
    return {r["query"]: index["text"][r["top"][0]["doc"]] if r["top"] else "" for r in rerank}


def main() -> int:
    run = flow.run({"queries": QUERIES}, executor="threads", max_workers=2)
    for query, doc in run["answers"].items():
        print(f"{query}\n    -> {doc}")
    tasks = run.tasks
    print(f"{run.status}: retrieve {tasks['retrieve'].duration:.4f} s, rerank {tasks['rerank'].duration:.4f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
