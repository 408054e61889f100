"""mmembed: multimodal embeddings (text, images, PDFs, video, audio) over every provider of the registry.

``mmembed.providers.PROVIDERS`` names them (the built-ins and the plugins of the ``mmembed.providers`` entry-point
group); ``provider`` below is one of those names.

>>> import mmembed
>>> embedder = mmembed.Embedder(provider)  # doctest: +SKIP
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
    RefusedInputError,
    TextTooLongWarning,
    TransportError,
    UnsafeURLError,
    UnsupportedKindError,
)
from .fallbacks import Segment
from .inputs import ImageSource, Interleaved, MediaSource
from .mediainfo import MediaLimits

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "Embedder",
    "EmbeddingCache",
    "EmbeddingError",
    "ImageSource",
    "InputError",
    "Interleaved",
    "InvalidResponseError",
    "MediaLimits",
    "MediaSource",
    "ProviderError",
    "RateLimitError",
    "RefusedInputError",
    "Segment",
    "TextTooLongWarning",
    "TransportError",
    "UnsafeURLError",
    "UnsupportedKindError",
    "VectorCache",
    "__version__",
]
