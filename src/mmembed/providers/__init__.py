"""One module per provider: its limits, its wire format, its auth. Nothing about Chroma or LlamaIndex."""

from __future__ import annotations

from .base import ModelInfo, Provider, ProviderOptions, Ready, Task
from .cohere import CohereProvider
from .gemini import GeminiProvider
from .jina import JinaProvider
from .nomic import NomicProvider
from .vertex import TextTooLongWarning, VertexProvider
from .voyage import VoyageProvider

__all__ = [
    "PROVIDERS",
    "CohereProvider",
    "GeminiProvider",
    "JinaProvider",
    "ModelInfo",
    "NomicProvider",
    "Provider",
    "ProviderOptions",
    "Ready",
    "Task",
    "TextTooLongWarning",
    "VertexProvider",
    "VoyageProvider",
]

PROVIDERS: dict[str, type[Provider]] = {
    "nomic": NomicProvider,
    "jina": JinaProvider,
    "vertex": VertexProvider,
    "gemini": GeminiProvider,
    "voyage": VoyageProvider,
    "cohere": CohereProvider,
}
