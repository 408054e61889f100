"""Cohere: embed-v4.0 over ``/v2/embed`` (the request shape is the embed-v4 family's, :mod:`._cohere_v4`).

Cohere limits images apart from texts: Embed takes 2,000 inputs a minute, Embed (Images) 400 a minute on
production keys but only 5 on trial keys. Both are windows of the client's transport (one rate-limit mechanism,
:mod:`mmembed.ratelimit`: every wait counted in ``stats``, a 429 pausing them all), charged per attempt from
what its body carries; ``images_per_minute`` (default 400) sets the image one, and no request carries more
images than it allows in a minute. Cohere's URLs are never fetched by the server: http(s) images are downloaded
here. Auth is ``Authorization: Bearer``; errors are ``{"id", "message"}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, TypeVar

import requests

from ..errors import ConfigurationError
from ..options import Doc, ModelOptions
from ..ratelimit import RateLimiter
from ._cohere_v4 import CohereV4
from .base import Hosting, Provider, ProviderOptions

__all__ = ["CohereProvider", "CohereSettings"]

T = TypeVar("T")
INPUTS_PER_MINUTE = 2000  # "Embed": the same on trial and production keys
IMAGES_PER_MINUTE = 400  # "Embed (Images)" on production keys; trial keys: 5


class CohereSettings(ModelOptions, total=False):
    """Cohere's own option (besides ``model``)."""

    images_per_minute: Annotated[
        float | None,
        Doc("Images Cohere embeds per minute for this key: 400 on production keys, 5 on trial keys.", local=True),
    ]


class CohereProvider(Provider):
    """Cohere: embed-v4.0 (1536-d; 256/512/1024), texts and images interleaved in ``inputs``."""

    name: ClassVar[str] = "cohere"
    title: ClassVar[str] = "Cohere"
    env_var: ClassVar[str] = "COHERE_API_KEY"
    fallback_env_vars: ClassVar[tuple[str, ...]] = ("CO_API_KEY",)
    default_base_url: ClassVar[str] = "https://api.cohere.com"
    official_hosts: ClassVar[tuple[str, ...]] = ("api.cohere.com",)
    settings: ClassVar[type] = CohereSettings
    families = (
        Hosting(CohereV4, models=CohereV4.native_ids,
                wire={"path": "/v2/embed", "model_field": True, "truncate": True}),
    )
    default_model: ClassVar[str] = "embed-v4.0"
    emulator: ClassVar[tuple[str, ...]] = ("mmembed.testing.cohere:Cohere",)
    default_concurrency: ClassVar[int] = 4
    default_requests_per_minute: ClassVar[float | None] = None  # Cohere counts inputs, not requests: see below
    images_per_minute: float | None

    def __init__(self, options: ProviderOptions, **settings: Any) -> None:
        super().__init__(options, **settings)
        self.transport.windows.update(inputs=self.inputs, images=self.images)

    def configure(self, **settings: Any) -> None:
        super().configure(**settings)
        given = self.images_per_minute
        rate = IMAGES_PER_MINUTE if given is None else given
        if not rate > 0:
            raise ConfigurationError(f"cohere: images_per_minute must be positive, got {given}")
        self.images = RateLimiter(rate, paced=False)
        self.inputs = RateLimiter(INPUTS_PER_MINUTE, paced=False)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", images_per_minute={self.images.quota})"

    def request_cap(self, what: str) -> int | None:
        return self.images.quota if what == "images" else None

    def post(self, path: str, parse: Callable[[requests.Response], T], **body: Any) -> T:
        """POST, charging every attempt to the input and image windows for what the body carries."""
        inputs = body.get("json", {}).get("inputs", [])
        images = sum(s.get("type") == "image_url" for entry in inputs for s in entry.get("content", []))
        return super().post(path, parse, costs={"inputs": len(inputs), "images": images}, **body)

    def error_message(self, body: dict[str, Any], response: requests.Response) -> str | None:
        message = str(body.get("message") or f"HTTP {response.status_code}")
        if response.status_code == 429 and (self.images.quota or 0) > 5:
            message += " (a trial key embeds 5 images a minute: if this is one, pass images_per_minute=5)"
        return message

    def request_id(self, response: requests.Response, body: dict[str, Any]) -> str | None:
        return response.headers.get("x-request-id") or (str(body["id"]) if body.get("id") else None)

    def is_auth_error(self, response: requests.Response) -> bool:
        """401/403, and Cohere's 498 (invalid token)."""
        return response.status_code in (401, 403, 498)

