"""Twelve Labs: Marengo 3.0 over the Embed API v2 (``POST /v1.3/embed-v2``), the request shape of :mod:`._marengo`.

Text, image, text+image (one fused vector), audio and video (base64 uploads, or a clip of one by
``start_sec``/``end_sec``) synchronously, one item per request; audio and video files over ``sync_media_bytes``
go through the asynchronous tasks API (``POST /v1.3/embed-v2/tasks``, polled by ``GET …/tasks/{id}`` until
``ready``). Auth is ``x-api-key`` (``TWELVE_LABS_API_KEY``), not Bearer. Errors are ``{"code", "message"}``;
``api_key_invalid`` / ``unauthorized`` are auth errors, 429 ``too_many_requests`` carries ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import requests

from ._marengo import Marengo
from .base import Hosting, Provider, error_body

__all__ = ["TwelveLabsProvider"]


class TwelveLabsProvider(Provider):
    """Twelve Labs: Marengo 3.0 (512-d): text, images, text+image, audio and video."""

    name: ClassVar[str] = "twelvelabs"
    title: ClassVar[str] = "TwelveLabs"
    env_var: ClassVar[str] = "TWELVE_LABS_API_KEY"
    fallback_env_vars: ClassVar[tuple[str, ...]] = ("TWELVELABS_API_KEY",)
    secret_headers: ClassVar[tuple[str, ...]] = ("x-api-key",)
    default_base_url: ClassVar[str] = "https://api.twelvelabs.io"
    official_hosts: ClassVar[tuple[str, ...]] = ("api.twelvelabs.io",)
    families = (
        Hosting(Marengo, concurrency=4, models=Marengo.native_ids, wire={
            "case": "snake", "model_name": True, "path": "/v1.3/embed-v2", "media": True,
            "tasks": "/v1.3/embed-v2/tasks",
        }),
    )
    default_model: ClassVar[str] = "marengo3.0"
    emulator: ClassVar[tuple[str, ...]] = ("mmembed.testing.twelvelabs:TwelveLabs",)
    default_concurrency: ClassVar[int] = 4

    def headers(self) -> Mapping[str, str]:
        return {"x-api-key": self._api_key} if self._api_key else {}

    def error_message(self, body: dict[str, Any], response: requests.Response) -> str | None:
        """``{"code", "message"}`` → ``message (code)``."""
        message = str(body.get("message") or f"HTTP {response.status_code}")
        code = body.get("code")
        return f"{message} ({code})" if code else message

    def is_auth_error(self, response: requests.Response) -> bool:
        if response.status_code in (401, 403):
            return True
        return (error_body(response) or {}).get("code") in ("api_key_invalid", "unauthorized")
