"""mmembed: multimodal (text + image) embeddings for Chroma and LlamaIndex over Nomic, Jina, Vertex and Gemini.

>>> import mmembed
>>> embedder = mmembed.Embedder("jina")  # doctest: +SKIP
>>> vectors = embedder.embed(["a red square", mmembed.ImageSource("photo.jpg")])  # doctest: +SKIP
"""

from __future__ import annotations

from .cache import EmbeddingCache, VectorCache
from .embedder import Embedder
from .errors import (
    AuthenticationError,
    ConfigurationError,
    EmbeddingError,
    InputError,
    InvalidResponseError,
    ProviderError,
    RateLimitError,
    TransportError,
    UnsafeURLError,
)
from .inputs import ImageSource
from .providers import TextTooLongWarning

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "Embedder",
    "EmbeddingCache",
    "EmbeddingError",
    "ImageSource",
    "InputError",
    "InvalidResponseError",
    "ProviderError",
    "RateLimitError",
    "TextTooLongWarning",
    "TransportError",
    "UnsafeURLError",
    "VectorCache",
    "__version__",
]
