"""A user's module tracing runs with OpenTelemetry, checked by ``mypy --strict``
(``tests/test_typing.py``): ``Tracing`` is a hook and takes a tracer provider."""

from opentelemetry.sdk.trace import TracerProvider

import microdag
from microdag.otel import Tracing

flow = microdag.Flow("traced")


def traced(provider: TracerProvider) -> microdag.Run:
    Tracing(tracer_provider="the global one")  # type: ignore[arg-type]
    flow.run(hooks=[Tracing(), print])
    return flow.run(hooks=[Tracing(provider)], executor="processes")
