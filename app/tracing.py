"""OpenTelemetry traces, exported over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, and off otherwise: then nothing here is even
imported from the SDK and the app gets no tracing middleware, so it costs nothing.

Spans: every HTTP request (Litestar's OpenTelemetry middleware, named by route template), every
database statement (the SQLAlchemy instrumentation on the app's engines), and each probe run and
Lighthouse audit (app/runner.py, through the global tracer this sets). The standard ``OTEL_*``
variables (service name, headers, timeout, sampler) apply as the SDK documents them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from litestar.plugins.opentelemetry import OpenTelemetryPlugin
    from opentelemetry.sdk.trace import TracerProvider
    from sqlalchemy.ext.asyncio import AsyncEngine

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return any(env.get(name) for name in ENDPOINT_VARS)


def _span_details(scope: Any) -> tuple[str, dict[str, str]]:
    route = scope.get("path_template") or scope.get("path", "")
    method = scope.get("method", "")
    return (f"{method} {route}" if method else route), {"http.route": route}


class Tracing:
    """The process's tracer provider while tracing is on; :meth:`close` flushes what is left."""

    def __init__(self, service_version: str) -> None:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        attributes = {"service.version": service_version}
        if not os.environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = "fieldlab"
        self.provider: TracerProvider = TracerProvider(resource=Resource.create(attributes))
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        # Global, so the runner's spans (app/runner.py uses the API's proxy tracer) land here too.
        trace.set_tracer_provider(self.provider)
        self._instrumented = False

    def plugin(self) -> OpenTelemetryPlugin:
        from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin

        return OpenTelemetryPlugin(
            OpenTelemetryConfig(
                tracer_provider=self.provider,
                scope_span_details_extractor=_span_details,
                exclude=["^/metrics$", "^/healthz$", "^/readyz$"],
                exclude_spans=["receive", "send"],
            )
        )

    def instrument(self, *engines: AsyncEngine) -> None:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        unique = list({id(e): e.sync_engine for e in engines}.values())
        # Its declared range stops below the SQLAlchemy 2.1 we run; the event API it hooks is
        # unchanged (tests/integration/test_observability_live.py checks the spans arrive).
        SQLAlchemyInstrumentor().instrument(
            engines=unique, tracer_provider=self.provider, skip_dep_check=True
        )
        self._instrumented = True

    def close(self) -> None:
        if self._instrumented:
            from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

            SQLAlchemyInstrumentor().uninstrument()
        self.provider.shutdown()


def start(service_version: str) -> Tracing | None:
    return Tracing(service_version) if enabled() else None
