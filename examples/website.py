"""Website analysis: one fetch step, sentiment and summary in parallel, and a
save step that fans them in.

Run it with ``python examples/website.py [PAGE]``: it analyses a local HTML
page (``examples/data/site.html`` by default), keeps the run in
``.microdag/runs.db`` and writes an HTML report of the run, printing its path.
The same flow runs from the shell, since this file holds one ``Flow``::

    python -m microdag run examples/website.py --input page=examples/data/site.html
    python -m microdag show RUN_ID
"""

from __future__ import annotations

import collections
import html.parser
import json
import os
import re
import sys

import microdag

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = os.path.join(HERE, "data", "site.html")

flow = microdag.Flow("website")

POSITIVE = set("love loves excellent great wonderful fresh friendly fair better best famous good soft crisp".split())
NEGATIVE = set("broke broken terrible slow closed bad worse worst stale rude poor".split())


class _Text(html.parser.HTMLParser):
    """The title and the visible text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self.parts: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data.strip()
        elif data.strip():
            self.parts.append(" ".join(data.split()))


@flow.step(retries=2, retry_delay=0.1, timeout=30)
def fetch(page: str = PAGE) -> dict[str, str]:
    """The page's title and text (a local file stands in for the web)."""
    with open(page, encoding="utf-8") as f:
        parser = _Text()
        parser.feed(f.read())
    text = "\n".join(parser.parts)
    print(f"fetched {page}: {len(text)} characters")
    return {"page": page, "title": parser.title, "text": text}


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


@flow.step
def sentiment(fetch: dict[str, str]) -> dict[str, object]:
    """A lexicon score in [-1, 1] and its label."""
    words = _words(fetch["text"])
    pos = sum(w in POSITIVE for w in words)
    neg = sum(w in NEGATIVE for w in words)
    score = 0.0 if pos + neg == 0 else (pos - neg) / (pos + neg)
    label = "positive" if score > 0.2 else "negative" if score < -0.2 else "neutral"
    return {"score": round(score, 3), "label": label, "positive": pos, "negative": neg}


@flow.step
def summary(fetch: dict[str, str], sentences: int = 2) -> str:
    """The page's most representative sentences, in page order."""
    found = [s for s in re.split(r"(?<=[.!?])\s+|\n", fetch["text"]) if len(_words(s)) >= 5]
    freq = collections.Counter(w for w in _words(fetch["text"]) if len(w) > 3)
    ranked = sorted(range(len(found)), key=lambda i: -sum(freq[w] for w in _words(found[i])) / (1 + len(found[i]) ** 0.5))
    return " ".join(found[i] for i in sorted(ranked[:sentences]))


@flow.step
def save(fetch: dict[str, str], sentiment: dict[str, object], summary: str) -> dict[str, object]:
    """Fan in: one JSON document in the step's working directory."""
    result = {"page": fetch["page"], "title": fetch["title"], "sentiment": sentiment, "summary": summary}
    path = os.path.join(microdag.context().workdir, "analysis.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    return {**result, "saved": path}


def main(argv: list[str]) -> int:
    page = argv[0] if argv else PAGE
    os.makedirs(".microdag", exist_ok=True)
    store = microdag.stores.open_store(os.path.join(".microdag", "runs.db"))  # as the CLI's default
    run = flow.run({"page": page}, executor="threads", store=store, raise_on_failure=False)
    for name, task in run.tasks.items():
        print(f"{name:10} {task.status:10} {task.duration or 0:.4f} s")
    if run.status == "succeeded":
        out = run["save"]
        print(f"{out['title']}: {out['sentiment']['label']} ({out['sentiment']['score']})")
        print(f"summary: {out['summary']}")
    report = os.path.join(".microdag", "reports", f"{run.id}.html")
    os.makedirs(os.path.dirname(report), exist_ok=True)
    with open(report, "w", encoding="utf-8") as f:
        f.write(store.report(run.id))
    store.close()
    print(f"run {run.id}: {run.status}")
    print(f"report: {os.path.abspath(report)}")
    return 0 if run.status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
