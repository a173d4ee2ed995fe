"""A data pipeline whose steps pass files through the run directory:
load -> transform -> save.

Each step writes into its own working directory (``microdag.context().workdir``)
and a later step reads an earlier one's files with ``context().path_of(step)``;
only small values (paths, counts) travel as outputs.  With a store the run
directory lives beside it, so a failed run resumed later finds the files of the
steps that had succeeded.

Run it with ``python examples/pipeline.py``.
"""

from __future__ import annotations

import csv
import json
import os
import sys

import microdag

flow = microdag.Flow("pipeline")

ORDERS = [
    ("2024-06-01", "bread", 3, 4.5),
    ("2024-06-01", "buns", 12, 1.25),
    ("2024-06-02", "bread", 5, 4.5),
    ("2024-06-02", "coffee", 7, 2.8),
    ("2024-06-03", "buns", 20, 1.25),
    ("2024-06-03", "bread", -1, 4.5),  # a bad row: transform drops it
]


@flow.step
def load() -> str:
    """Write the raw orders as CSV."""
    path = os.path.join(microdag.context().workdir, "orders.csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["day", "product", "quantity", "price"])
        writer.writerows(ORDERS)
    return path


@flow.step(depends_on=["load"])
def transform() -> int:
    """Read load's CSV, drop bad rows, write clean JSON lines; return the row count."""
    ctx = microdag.context()
    rows = 0
    with open(os.path.join(ctx.path_of("load"), "orders.csv"), newline="", encoding="utf-8") as src, \
            open(os.path.join(ctx.workdir, "orders.jsonl"), "w", encoding="utf-8") as out:
        for row in csv.DictReader(src):
            quantity = int(row["quantity"])
            if quantity <= 0:
                print(f"dropped a bad row: {row}")
                continue
            out.write(json.dumps({**row, "quantity": quantity, "total": quantity * float(row["price"])}) + "\n")
            rows += 1
    return rows


@flow.step(depends_on=["transform"])
def save(transform: int) -> dict[str, object]:
    """Revenue per product from transform's file, saved as JSON."""
    ctx = microdag.context()
    revenue: dict[str, float] = {}
    with open(os.path.join(ctx.path_of("transform"), "orders.jsonl"), encoding="utf-8") as f:
        for line in f:
            order = json.loads(line)
            revenue[order["product"]] = round(revenue.get(order["product"], 0.0) + order["total"], 2)
    path = os.path.join(ctx.workdir, "revenue.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(revenue, f, indent=2, sort_keys=True)
    return {"rows": transform, "revenue": revenue, "file": path}


def main() -> int:
    os.makedirs(".microdag", exist_ok=True)
    run = flow.run(store=os.path.join(".microdag", "runs.db"))
    out = run["save"]
    print(f"run {run.id}: {run.status}, {out['rows']} rows")
    for product, total in sorted(out["revenue"].items()):
        print(f"{product:8} {total:8.2f}")
    print(f"saved {out['file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
