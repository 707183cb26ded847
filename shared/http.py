"""HTTP plumbing every service uses: the FastAPI factory with health, readiness and
metrics, RFC 9457 problem details for every error, and a correlation id per request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_fastapi_instrumentator import Instrumentator
from pymongo.errors import ConnectionFailure
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import telemetry, trace
from shared.asyncapi import asyncapi_router
from shared.edge import Gate
from shared.log import bind_contextvars, clear_contextvars, get_logger
from shared.openapi import describe_errors
from shared.problem import PROBLEM_JSON, Problem, problem_body

log = get_logger(__name__)

CORRELATION_HEADER = "X-Correlation-ID"

ReadinessCheck = Callable[[], Awaitable[None]]


def problem_response(
    request: Request,
    status: int,
    title: str,
    detail: str | None = None,
    kind: str = "about:blank",
    **extra: Any,
) -> JSONResponse:
    body = problem_body(request.url.path, status, title, detail, kind, **extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def _install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> JSONResponse:
        response = problem_response(
            request, exc.status, exc.title, exc.detail, exc.kind, **exc.extra
        )
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": ".".join(str(p) for p in err["loc"] if p != "body") or "body",
                "message": err["msg"],
                "type": err["type"],
            }
            for err in exc.errors()
        ]
        return problem_response(
            request,
            422,
            "Invalid request",
            f"{len(errors)} field(s) failed validation",
            "validation",
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {
            401: "Unauthorized",
            403: "Forbidden",
            404: "Not found",
            405: "Method not allowed",
            413: "Too large",
        }
        response = problem_response(
            request, exc.status_code, title.get(exc.status_code, "Error"), str(exc.detail)
        )
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def on_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The database or broker is away: say so, and when to try again; no traceback.
        log.warning("http.unavailable", path=request.url.path, error=repr(exc))
        response = problem_response(
            request, 503, "Service unavailable", "a backing service is not reachable"
        )
        response.headers["Retry-After"] = "5"
        return response

    # Registered by class, not under Exception: Starlette answers a handler for Exception
    # and then raises the error on to the server, which logs it as a crash.
    for unavailable in UNAVAILABLE:
        app.add_exception_handler(unavailable, on_unavailable)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("http.unhandled", path=request.url.path)
        response = problem_response(request, 500, "Internal error", "see the service log")
        # Raised past the correlation middleware: the id the log line carries, for support.
        response.headers[CORRELATION_HEADER] = getattr(request.state, "correlation_id", "")
        return response


# Errors that mean a backing service is away rather than a bug.
UNAVAILABLE = (ConnectionFailure, KafkaConnectionError, KafkaTimeoutError, TimeoutError)


class Correlation:
    """Every request's correlation id (``shared.trace.of_request``: the caller's trace or
    id, else a new one): bound to every log line and to the commands the request sends,
    kept on ``request.state`` and sent back in a header. Plain
    ASGI: Starlette's ``@app.middleware("http")`` runs each request in a task of its own
    with a stream between, a cost every request paid."""

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        cid = telemetry.trace_id() or trace.of_request(  # OpenTelemetry's trace, when on
            headers.get(b"traceparent", b"").decode("latin-1"),
            headers.get(_CORRELATION_KEY, b"").decode("latin-1"),
        )
        trace.begin(cid)
        clear_contextvars()
        bind_contextvars(service=self.service, correlation_id=cid)
        scope.setdefault("state", {})["correlation_id"] = cid
        header = (_CORRELATION_KEY, cid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        await self.app(scope, receive, send_with_id)


_CORRELATION_KEY = CORRELATION_HEADER.lower().encode()


def service_app(
    name: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    *,
    description: str = "",
    body_limits: Mapping[str, int] | None = None,
) -> FastAPI:
    """A FastAPI app with /healthz, /readyz, /metrics, problem+json errors, and the gate
    (``shared.edge``: credentials and body size, before any route reads the body).

    The lifespan must put a ``dict[str, ReadinessCheck]`` on ``app.state.readiness`` and
    the public keys tokens are checked with on ``app.state.keys``
    (``shared.keys.KeyRing``). ``body_limits``: path pattern -> bytes,
    for routes that take more (or less) than the default.
    """
    app = FastAPI(title=f"Doorstep {name}", description=description, lifespan=lifespan)
    app.state.readiness = {}
    _install_problem_handlers(app)
    app.add_middleware(Gate, body_limits=body_limits)

    app.add_middleware(Correlation, service=name)  # added last, so outermost: the gate's
    # refusals carry the id too
    telemetry.instrument(name, app)  # off unless OTEL_EXPORTER_OTLP_ENDPOINT is set

    @app.get("/healthz", tags=["ops"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="Ready to serve: the database answers a ping and the broker a metadata request",
        responses={503: {"description": "Not ready; the body names what is down"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        checks: dict[str, str] = {}
        checks_fns: dict[str, ReadinessCheck] = request.app.state.readiness
        for check_name, check in checks_fns.items():
            try:
                await check()
                checks[check_name] = "ok"
            except Exception as exc:
                # The reason goes to the log, not to whoever asks (it names hosts and ports).
                log.warning("ready.check_failed", check=check_name, error=repr(exc)[:300])
                checks[check_name] = "unavailable"
        ready = bool(checks) and all(v == "ok" for v in checks.values())
        body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
        runtime = getattr(request.app.state, "runtime", None)
        if runtime is not None and hasattr(runtime, "stuck"):
            # Named, not failed: taking the instance off the load balancer would stop the
            # healthy communities too. An alert reads these (and the metric).
            body["stuck_communities"] = runtime.stuck()
        return JSONResponse(body, status_code=200 if ready else 503)

    Instrumentator(excluded_handlers=["/metrics", "/healthz", "/readyz"]).instrument(app).expose(
        app, include_in_schema=False
    )
    app.include_router(asyncapi_router())  # the event contracts, beside the OpenAPI
    describe_errors(app)
    return app
