"""``worker``, ``submit`` and ``cancel``: runs shared through a store's work queue.

``worker`` serves the queue of ``--store``: it claims ready steps of any run
whose flow it can load (the flows of ``--flows``, else the one the run was
started from, a file or ``module:attr`` importable here), runs them and
records them (``runner/workers``; docs/workers.md).  ``submit`` starts a run
on the queue and prints its id at once; ``cancel`` cancels a run for every
worker.
"""

import sys

from .._cmdline import OK, UsageError, input_option, load, positive
from ..stores._queue import cancel_shared
from ._common import DEFAULT_STORE, store_at, store_options
from ._run import _pool, _rate, flow_to_run

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from .._flow import Flow
    from .._plan import _Plan
    from .._records import RunInfo


def add_parser(sub: "Any", name: str, **options: "Any") -> None:
    """Command ``name`` (``worker``, ``submit`` or ``cancel``) on subparsers ``sub``."""
    p = sub.add_parser(name, **options)
    store_options(p)
    if name == "worker":
        p.add_argument("--concurrency", type=positive, default=1, metavar="N", help="steps run at once (default: 1)")
        p.add_argument("--flows", nargs="+", default=[], metavar="FLOW",
                       help="the flows this worker runs (files or module:attr; default: each run's own)")
        p.add_argument("--lease", type=_seconds, default=None, metavar="SECONDS",
                       help="seconds this worker's claims hold without a heartbeat, for runs without a lease of "
                       "their own (submit --lease): a worker that dies loses its steps after that (default: 30)")
        p.add_argument("--exit-idle", type=_seconds, metavar="SECONDS",
                       help="stop after this long with nothing to claim (default: never)")
        p.set_defaults(handler=_cmd_worker)
    elif name == "submit":
        p.add_argument("flow", metavar="FLOW")
        input_option(p)
        p.add_argument("--inputs", metavar="FILE.json", help="flow inputs from a JSON object (--input overrides)")
        p.add_argument("--run-id", metavar="ID", help="the run's id (default: a new one)")
        lease_option(p)
        p.add_argument("--pool", type=_pool, action="append", default=[], metavar="NAME=N",
                       help="a resource pool of N units, held across every worker; repeatable (adds to the flow "
                       "file's [pools])")
        p.add_argument("--rate", type=_rate, action="append", default=[], metavar="NAME=RATE",
                       help="a rate limit (e.g. api=10/s) across every worker; repeatable (adds to the flow "
                       "file's [rates])")
        p.add_argument("--target", metavar="STEP", action="append",
                       help="run only this step and what it needs; repeatable")
        p.add_argument("--on-failure", choices=("fail_fast", "continue"), default="fail_fast",
                       help="fail_fast: start nothing new after a failure (default); continue: run every "
                       "branch that does not depend on it")
        p.set_defaults(handler=_cmd_submit)
    else:
        p.add_argument("run_id", metavar="RUN_ID")
        p.set_defaults(handler=_cmd_cancel)


def lease_option(p: "argparse.ArgumentParser") -> None:
    """``--lease SECONDS`` of a run submitted (``submit``) on parser ``p``."""
    p.add_argument("--lease", type=_seconds, default=None, metavar="SECONDS",
                   help="the run's lease: seconds every worker's claim of one of its steps holds "
                   "without a heartbeat: a worker that dies loses the step after that (default: each worker's "
                   "--lease, 30)")


def _seconds(text: str) -> float:
    import argparse  # (import time: argparse is loaded by the parser already)

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, not {text}")
    return value


class _Plans:
    """The flows a worker runs: those of ``--flows`` by name, else each
    run's own (its recorded source), loaded once."""

    def __init__(self, specs: "list[str]") -> None:
        self.named: dict[str, Flow] = {}
        for spec in specs:
            flow = load(spec, None)
            self.named[flow.name] = flow
        self.loaded: dict[str, Flow] = {}
        self.from_source = not specs

    def __call__(self, info: "RunInfo") -> "_Plan | None":
        flow = self.named.get(info.flow)
        if flow is None and self.from_source and info.source is not None:
            flow = self.loaded.get(info.source)
            if flow is None:
                flow = self.loaded[info.source] = load(info.source, None)
        if flow is None or flow.name != info.flow:
            return None
        return flow._compiled()


def say(text: str) -> None:
    """What a worker tells: on stderr, at once."""
    print(text, file=sys.stderr, flush=True)


def _cmd_worker(args: "argparse.Namespace") -> int:
    import signal  # (the worker only: SIGTERM stops it as Ctrl-C does)
    import time  # (the worker only)

    from ..runner.workers import LEASE, Worker  # (the worker only: the runner)

    plans = _Plans(args.flows)
    store = store_at(args.store, codec=args.codec)
    worker = Worker(store, plans, concurrency=args.concurrency, lease=args.lease or LEASE, say=say)

    def stop(signum: int, frame: "Any") -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    say(f"worker {worker.token}: serving {args.store or DEFAULT_STORE} ({args.concurrency} at once, "
        f"lease {worker.lease:g} s)")
    worker.start()
    idle_since = time.monotonic()
    ran = 0
    try:
        while not worker.done.wait(0.1):
            if worker.ran != ran or worker.held:
                ran, idle_since = worker.ran, time.monotonic()
            elif args.exit_idle is not None and time.monotonic() - idle_since >= args.exit_idle:
                break
    except KeyboardInterrupt:
        say("worker: stopping; steps it holds go back to the queue")
    finally:
        worker.stop_after(0.0)
        store.close()
    say(f"worker {worker.token}: {worker.ran} step{'s' if worker.ran != 1 else ''} run")
    return OK


def _cmd_submit(args: "argparse.Namespace") -> int:
    from ..runner import RunOptions  # (the run's options: the runner loads with the command)
    from ..runner.workers import submit  # (the command's own: the runner loads with it)

    flow, inputs = flow_to_run(args)
    if (args.store or DEFAULT_STORE) == "memory":
        raise UsageError("submit needs a store workers share: --store PATH.db")
    options = RunOptions(
        executor="workers", max_workers=None, targets=args.target, on_failure=args.on_failure, hooks=(),
        keep_outputs=False, cancel=None, store=store_at(args.store, create=True, codec=args.codec),
        run_id=args.run_id, resume=False, force=False, lease=args.lease,
        pools={**flow._pools, **dict(args.pool)}, rates={**flow._rates, **dict(args.rate)},
    )
    store, run_id, _, _ = submit(flow._compiled(), flow.name, flow._source, inputs, options)
    store.close()
    print(run_id)
    return OK


def _cmd_cancel(args: "argparse.Namespace") -> int:
    store = store_at(args.store, codec=args.codec)
    try:
        info = store.run_info(args.run_id)
        if info.status != "running":
            print(f"run {args.run_id} already ended: {info.status}", file=sys.stderr)
            return OK
        if not cancel_shared(store, args.run_id):
            raise UsageError(f"run {args.run_id} is not shared with workers: stop the process running it (Ctrl-C)")
    finally:
        store.close()
    print(f"run {args.run_id}: cancelled; the steps running stop as their workers see it", file=sys.stderr)
    return OK
