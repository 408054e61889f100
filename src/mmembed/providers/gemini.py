"""Google ``gemini-embedding-2`` on the Gemini Developer API: ``models/{m}:batchEmbedContents``, an API key.

One ``EmbedContentRequest`` per item, at most 100 per call (the family, :mod:`._gemini_embedding`, shapes them);
``outputDimensionality`` goes in every request. The key travels in the ``x-goog-api-key`` header, never in the
URL; errors are Google's (:mod:`._google`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from ._gemini_embedding import IMAGES_PER_REQUEST, GeminiEmbedding
from ._google import GoogleErrors
from .base import Hosting, Provider

__all__ = ["IMAGES_PER_REQUEST", "GeminiProvider"]

API_VERSION = "v1beta"


class GeminiProvider(GoogleErrors, Provider):
    """Google gemini-embedding-2 on the Gemini Developer API (text and images in one space; an API key)."""

    name: ClassVar[str] = "gemini"
    title: ClassVar[str] = "Gemini"
    env_var: ClassVar[str] = "GEMINI_API_KEY"
    fallback_env_vars: ClassVar[tuple[str, ...]] = ("GOOGLE_API_KEY",)
    default_base_url: ClassVar[str] = "https://generativelanguage.googleapis.com"
    official_hosts: ClassVar[tuple[str, ...]] = ("generativelanguage.googleapis.com",)
    families = (Hosting(GeminiEmbedding, wire={"batch": True}),)
    default_model: ClassVar[str] = "gemini-embedding-2"
    emulator: ClassVar[tuple[str, ...]] = ("mmembed.testing.gemini:GeminiApi",)
    default_concurrency: ClassVar[int] = 4
    default_requests_per_minute: ClassVar[float | None] = 100  # the free tier's limit; a batch is one request
    rate_window: ClassVar[float] = 60.0  # a per-minute quota per project and model

    def headers(self) -> Mapping[str, str]:
        return {"x-goog-api-key": self._api_key or ""}

    def url(self, path: str) -> str:
        return f"{self.base_url}/{API_VERSION}{path}"
