"""Google's error format, shared by the providers on Google's APIs: ``google.rpc.Status`` bodies.

Errors come as ``{"error": {"code", "message", "status", "details": [...]}}``. A bad API key is a 400 whose details
hold ``ErrorInfo.reason == "API_KEY_INVALID"``; a 429 ``RESOURCE_EXHAUSTED`` says when to come back in
``RetryInfo.retryDelay`` (a protobuf Duration such as ``"47s"`` or ``"1.5s"``) rather than in ``Retry-After``.
A provider takes them by listing :class:`GoogleErrors` before :class:`~mmembed.providers.base.Provider`.
"""

from __future__ import annotations

import re
from typing import Any

import requests

from ..transport import parse_retry_after

__all__ = ["GoogleErrors", "describe_error", "is_auth_error", "retry_delay"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)s\s*$")


class GoogleErrors:
    """The error hooks of a provider on a Google API (a mixin: list it before ``Provider``)."""

    def describe_error(self, response: requests.Response) -> tuple[str, str | None]:
        return describe_error(response)

    def is_auth_error(self, response: requests.Response) -> bool:
        return is_auth_error(response)

    def retry_after(self, response: requests.Response) -> float | None:
        return retry_delay(response)


def _error(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _details(response: requests.Response) -> list[dict[str, Any]]:
    details = _error(response).get("details")
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def describe_error(response: requests.Response) -> tuple[str, str | None]:
    """``STATUS: message`` from a ``google.rpc.Status`` body, and the request id if a header has one."""
    request_id = response.headers.get("x-request-id")
    error = _error(response)
    if not error:
        return f"HTTP {response.status_code} {response.reason or ''}".strip(), request_id
    return f"{error.get('status', 'ERROR')}: {error.get('message', '')}".strip(), request_id


def is_auth_error(response: requests.Response) -> bool:
    """401/403, and Google's answer to a bad API key: 400 INVALID_ARGUMENT with reason API_KEY_INVALID."""
    if response.status_code in (401, 403):
        return True
    return response.status_code == 400 and any(d.get("reason") == "API_KEY_INVALID" for d in _details(response))


def retry_delay(response: requests.Response) -> float | None:
    """Seconds to wait: ``google.rpc.RetryInfo.retryDelay`` when the body has one, else ``Retry-After``."""
    for detail in _details(response):
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = detail.get("retryDelay")
            match = _DURATION.match(delay) if isinstance(delay, str) else None
            if match:
                return float(match.group(1))
    return parse_retry_after(response.headers.get("Retry-After"))
