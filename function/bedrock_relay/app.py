"""The app factory: settings, the Bedrock client, and each API and page, assembled."""

from __future__ import annotations

from flask import Flask, Response, g, jsonify

from . import chat_api, cors, diag_api, errors, invocation, logs, openai_api, openapi, static
from .bedrock import make_client
from .settings import from_env


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app; settings come from the environment, and tests override them with a dict."""
    app = Flask(__name__, static_folder=None)
    # No redirect from `//chat` to `/chat`: werkzeug builds it from the client's Host header.
    app.url_map.merge_slashes = False
    config = dict(test_config or {})
    client = config.pop("BEDROCK_CLIENT", None)
    dynamodb = config.pop("DYNAMODB_CLIENT", None)
    settings = from_env().with_overrides(config)
    # One byte over the limit: a chunked body (no Content-Length) is read up to it, so a body of
    # exactly the limit is told apart from a longer one (chat_api refuses the longer).
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes + 1
    app.extensions["settings"] = settings
    # One client per process: it holds the connection pool to Bedrock.
    app.extensions["bedrock"] = client or make_client(settings)
    logs.init_logging("" if settings.metrics_namespace == "-" else settings.metrics_namespace)
    app.before_request(invocation.identify)
    app.after_request(_common_headers)
    errors.init_app(app)
    if settings.auth_modes:
        # Imported only when a mode is on: with auth off, sign-in costs nothing at all.
        from . import auth

        auth.init_app(app, settings)
    app.add_url_rule("/healthz", view_func=healthz)
    app.register_blueprint(chat_api.bp)
    app.register_blueprint(openai_api.bp)
    app.register_blueprint(diag_api.bp)
    if settings.streams_table:
        # Imported only with the store on: without it, streams cost nothing extra.
        from . import conversations_api, store, streams_api
        from .conversations import Conversations

        ttl = settings.stream_ttl_hours * 3600
        dynamodb = dynamodb or store.make_client(settings)  # one per process, like Bedrock's
        streams = app.extensions["store"] = store.Store(dynamodb, settings.streams_table, ttl)
        # Kept CONVERSATION_TTL_DAYS after their last use; held by an answer at most its stream's time.
        app.extensions["conversations"] = Conversations(
            streams, settings.conversation_ttl_days * 86400, stream_seconds=settings.max_stream_seconds
        )
        if settings.answer_cache_seconds:
            from .answer_cache import AnswerCache

            guardrail = (settings.guardrail_id, settings.guardrail_version, settings.guardrail_stream_mode)
            app.extensions["answer_cache"] = AnswerCache(
                streams, settings.answer_cache_seconds, guardrail if settings.guardrail_id else ()
            )
        if settings.caller_limits:
            from . import usage_api
            from .quotas import Quotas

            app.extensions["quotas"] = Quotas(
                streams,
                settings.max_concurrent_streams_per_caller,
                settings.daily_output_tokens_per_caller,
                settings.retry_after_seconds,
            )
            app.register_blueprint(usage_api.bp)
        app.register_blueprint(streams_api.bp)
        app.register_blueprint(conversations_api.bp)
    static.init_app(app, settings)
    openapi.init_app(app, settings)
    cors.init_app(app, settings)
    return app


def _common_headers(response: Response) -> Response:
    response.headers.setdefault("Cache-Control", "no-cache")
    response.headers["X-Request-Id"] = g.request_id
    return response


def healthz() -> Response:
    """Answer the readiness check at once; never touches Bedrock."""
    return jsonify(status="ok")
