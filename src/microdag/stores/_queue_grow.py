"""Steps that add steps, on the queue: a worker's step's adds applied to its run.

A step run by a worker (``executor="workers"``) that calls
``microdag.context().add`` makes each add's recipe (``_recipe.carried``);
the recipes travel with the attempt's :class:`~microdag.stores._queue.Outcome`
(``added``) to :meth:`~microdag.stores._queue.WorkQueue.finish`, which
applies them here, in its transaction, fenced by the claim as the outcome
is, before the outcome itself (so that the adder's dependents are not ready
before its added steps joined the run).  Per add, in order (:func:`apply`):

- the finishing worker binds it against the run's whole plan (the queue's
  ``bind_added``, given by the worker: its copy of the run's plan grown to
  the plan document's added steps; a taken name, an unknown dependency, a
  parameter bound to nothing, an option refused raise the ``FlowError``
  that fails the adding step; the adds before it stay);
- the plan document grows: ``names``, ``timeout``, ``retries``, and
  ``added`` (the recipe, with what the queue needs: ``after``, its
  dependencies as bound, and ``trigger``); ``base`` keeps the static flow's
  size, so that added step ``i``'s entry is ``added[i - base]``;
- the outcomes log gets a ``GROW`` entry, which every worker's mirror
  replays (``Mirror.apply``: ``Kernel.grow``), rereading the plan first;
- the added step, if ready, gets its queue row (and the waiting workers
  are woken); one skipped at once by its trigger rule is recorded skipped;
- the recipe is recorded with the run as an in-process add records it
  (``Store.save_added``: the store's ``graphs`` table, in this transaction),
  so that ``show``, the report, the UI and a resume see it.

An add made again (a retried attempt adding the same step) finds its step
there and is not applied twice.
"""

import json

from .._errors import FlowError
from ._base import _added_key
from ._queue import GROW, Outcome, plan_text
from ._sql import GRAPHS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._queue import Claim
    from ._sql_queue import SQLQueue, _Run

__all__ = ["apply", "grown"]

#: What a recorded recipe keeps of a plan document's entry.
_RECIPE = ("step", "by", "fn", "depends_on", "inputs", "options", "after")


def apply(
    queue: "SQLQueue", db: "Any", run: "_Run", claim: "Claim", added: "list[dict[str, Any]]", now: float
) -> "FlowError | None":
    """Apply the adds ``added`` of ``claim``'s attempt to its run (see the
    module docs); the first one refused, or ``None``."""
    bind = queue.bind_added
    if bind is None:
        return FlowError("steps added by a step that a worker ran are applied by workers only")
    (text,) = db.execute("SELECT plan FROM queue_runs WHERE run_id = ?", (run.run_id,)).fetchone()
    plan = json.loads(text)
    plan.setdefault("base", plan["n"])
    entries = plan.setdefault("added", [])
    grew = False
    try:
        for made in added:
            entry = bind(run.run_id, plan, made)
            if entry is None:
                continue  # (added again: a retried attempt)
            i = len(plan["names"])
            plan["names"].append(made["step"])
            plan["timeout"].append(entry.pop("timeout"))
            plan["retries"].append(entry.pop("retries"))
            uses, mapped = entry.pop("uses", None), entry.pop("map", False)
            entries.append(entry)
            if "uses" in plan:  # (a run with pools or rates: what the step holds, as _queue_pools keeps it)
                plan["uses"].append(uses)
                if uses and mapped:
                    plan["mapped"].append(i)
                db.executemany("INSERT INTO queue_uses VALUES (?, ?, ?, ?, ?)",
                               [(run.run_id, i, int(mapped), pool, units) for pool, units in uses or ()])
                queue.reconsider(run.run_id)
            db.execute(GRAPHS, (_added_key(run.run_id, len(entries) - 1), json.dumps({k: entry[k] for k in _RECIPE})))
            run.mirror.learn(plan)
            queue._follow(db, run, i, GROW, now)
            grew = True
    except FlowError as exc:
        return exc
    finally:
        if grew:
            db.execute("UPDATE queue_runs SET plan = ? WHERE run_id = ?", (plan_text(plan), run.run_id))
    return None


def grown(queue: "SQLQueue", db: "Any", run: "_Run", claim: "Claim", out: "Outcome", now: float) -> "Outcome":
    """``out`` after its adds were applied (:func:`apply`); a failure with
    the ``FlowError`` of the first add refused (not retried)."""
    refused = apply(queue, db, run, claim, out.added or [], now)
    if refused is None or out.status not in ("succeeded", "failed"):
        return out
    return Outcome("failed", out.started, out.finished, None, "FlowError", str(refused), f"FlowError: {refused}\n",
                   out.logs, None, out.attempts)
