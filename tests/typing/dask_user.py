"""A user's module running flows on a Dask cluster, checked by ``mypy --strict``
(``tests/test_typing.py``): ``executor=`` takes a ``distributed.Client``."""

import asyncio

import distributed

import microdag

flow = microdag.Flow("on a cluster")


def on_cluster(client: distributed.Client) -> microdag.Run:
    asyncio.run(flow.arun(executor=client))
    flow.run(executor=client, max_workers="4")  # type: ignore[arg-type]
    return flow.run(executor=client, max_workers=4)
