"""The steps of website.toml (docs/flow-file.md's example)."""

import re


def fetch(url):
    """The page's text, its markup removed."""
    with open(url, encoding="utf-8") as f:
        return re.sub(r"<[^>]+>", " ", f.read())


def top_words(text, limit):
    """The ``limit`` commonest words of four letters or more."""
    counts = {}
    for word in re.findall(r"[a-z]{4,}", text.lower()):
        counts[word] = counts.get(word, 0) + 1
    return sorted(counts, key=lambda w: (-counts[w], w))[:limit]
