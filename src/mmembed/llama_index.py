"""LlamaIndex ``MultiModalEmbedding`` classes backed by :class:`mmembed.Embedder`: adapters only.

One object serves as both ``embed_model`` and ``image_embed_model`` of a ``MultiModalVectorStoreIndex``:
texts and images land in one space, and queries go out with the provider's query task. Every method,
single or batch, sync or async, hands its whole list to the Embedder, which batches to the provider's
caps, runs requests concurrently within ``max_concurrency`` and keeps order. Async methods run the
Embedder in a worker thread, so the event loop never blocks.

LlamaIndex passes images as ``str`` (a local path or an http(s) URL: here a ``str`` always names an
image) or ``BytesIO`` (``ImageNode.image`` decoded, or ``ImageNode.image_url`` fetched by LlamaIndex).

>>> from mmembed.llama_index import JinaMultiModalEmbedding
>>> from mmembed.testing import Emulator
>>> with Emulator() as emu:
...     embed_model = JinaMultiModalEmbedding(api_key="test-key", base_url=emu.url)
...     len(embed_model.get_query_embedding("a yellow flower"))
...     embed_model.close()
1024
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, ClassVar

try:
    from llama_index.core.base.embeddings.base import Embedding
    from llama_index.core.bridge.pydantic import Field, PrivateAttr, field_serializer
    from llama_index.core.embeddings import MultiModalEmbedding
    from llama_index.core.schema import ImageType
except ImportError as exc:  # an optional extra: say how to get it
    raise ImportError(
        "mmembed.llama_index needs llama-index-core; install it with: pip install 'mmembed[llama-index]'"
    ) from exc

import numpy as np

from .cache import EmbeddingCache
from .embedder import Embedder
from .errors import ConfigurationError, InputError
from .inputs import ImageSource

__all__ = [
    "EmbedderMultiModalEmbedding",
    "JinaMultiModalEmbedding",
    "NomicMultiModalEmbedding",
    "VertexMultiModalEmbedding",
]

# LlamaIndex's own ceiling for embed_batch_size. The Embedder splits each call into requests at the
# provider's caps and runs them concurrently, so a bigger LlamaIndex batch only means fewer, larger calls.
MAX_EMBED_BATCH_SIZE = 2048


class EmbedderMultiModalEmbedding(MultiModalEmbedding):
    """A LlamaIndex ``MultiModalEmbedding`` over one mmembed provider; subclasses set ``provider``.

    Every field that LlamaIndex's ``BaseEmbedding`` does not define is an :class:`mmembed.Embedder`
    option and is passed to it as is. ``api_key`` is never serialised or shown; without it the key is
    read from the environment variable ``api_key_env_var`` (the provider's usual one by default).
    """

    provider: ClassVar[str]

    embed_batch_size: int = Field(
        default=MAX_EMBED_BATCH_SIZE,
        description="Items per LlamaIndex call; mmembed splits each call into requests at the provider's caps.",
        gt=0,
        le=MAX_EMBED_BATCH_SIZE,
    )
    # A plain str (so type checkers accept api_key="...") kept out of every dump and repr. SecretStr alone
    # would not do: to_dict() would carry a SecretStr object and to_json() would fail on it.
    api_key: str | None = Field(
        default=None,
        description="The provider's API key; never serialised. Default: the api_key_env_var environment variable.",
        exclude=True,
        repr=False,
    )
    api_key_env_var: str | None = Field(
        default=None, description="Environment variable that holds the key (default: the provider's usual one)."
    )
    base_url: str | None = Field(
        default=None, description="Scheme and host to send requests to instead of the provider's (a gateway)."
    )
    dimensions: int | None = Field(
        default=None, description="Output size for texts and images alike (default: the model's native size)."
    )
    timeout: float = Field(default=60.0, description="Seconds per request attempt.", gt=0)
    max_retries: int = Field(default=5, description="Retries after 429, 5xx and network errors.", ge=0)
    max_concurrency: int | None = Field(
        default=None, description="Most requests in flight at once (default: the provider's documented limit)."
    )
    requests_per_minute: float | None = Field(
        default=None, description="Client-side rate limit (default: the provider's documented limit)."
    )
    cache: str | Path | EmbeddingCache | None = Field(
        default=None, description="Path of a SQLite embedding cache: items embedded before are not sent again."
    )
    allow_private_urls: bool = Field(
        default=False, description="Let client-side image downloads reach loopback and private addresses."
    )
    image_side: int | None = Field(
        default=None, description="Shortest side images are shrunk to before upload (default: the model's input)."
    )

    _embedder: Embedder = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        embedder = Embedder(self.provider, **self._embedder_options())
        names = embedder.provider.model_names()
        resolved = ", ".join(names.values())
        if "model_name" in self.model_fields_set and self.model_name != resolved:
            embedder.close()
            roles = " and ".join(f"{role}=" for role in names)
            raise ConfigurationError(
                f"{self.provider}: model_name is derived from the model in use; choose the model with {roles}"
            )
        for role, name in names.items():  # show the models actually in use (Nomic pairs the vision model)
            setattr(self, role, name)
        self.model_name = resolved
        self._embedder = embedder

    def _embedder_options(self) -> dict[str, Any]:
        """This object's Embedder options: every field the LlamaIndex base class does not declare."""
        own = type(self).model_fields.keys() - MultiModalEmbedding.model_fields.keys() - {"embed_batch_size"}
        return {name: getattr(self, name) for name in own}

    @field_serializer("cache")
    def _serialize_cache(self, cache: str | Path | EmbeddingCache | None) -> str | None:
        if isinstance(cache, EmbeddingCache):
            return str(cache.path)
        return None if cache is None else str(cache)

    @property
    def embedder(self) -> Embedder:
        """The :class:`mmembed.Embedder` doing the work (its ``provider.transport.stats`` count requests)."""
        return self._embedder

    def close(self) -> None:
        """Stop the worker threads and close the provider's connections."""
        self._embedder.close()

    # -- texts and queries --------------------------------------------------------------------------
    def _get_query_embedding(self, query: str) -> Embedding:
        return _lists(self._embedder.embed_query([query]))[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return _lists(await self._embedder.aembed_query([query]))[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return _lists(self._embedder.embed([text]))[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return _lists(await self._embedder.aembed([text]))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return _lists(self._embedder.embed(texts))

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return _lists(await self._embedder.aembed(texts))

    # -- images -------------------------------------------------------------------------------------
    def _get_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return _lists(self._embedder.embed(_images([img_file_path])))[0]

    async def _aget_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return _lists(await self._embedder.aembed(_images([img_file_path])))[0]

    def _get_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        return _lists(self._embedder.embed(_images(img_file_paths)))

    async def _aget_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        return _lists(await self._embedder.aembed(_images(img_file_paths)))


class NomicMultiModalEmbedding(EmbedderMultiModalEmbedding):
    """Nomic Atlas: nomic-embed-text-v1.5 and nomic-embed-vision-v1.5 (768-d), key in ``NOMIC_API_KEY``."""

    provider: ClassVar[str] = "nomic"

    text_model: str = Field(default="nomic-embed-text-v1.5", description="Nomic text model.")
    vision_model: str | None = Field(
        default=None, description="Nomic vision model (default: the one sharing text_model's space)."
    )

    @classmethod
    def class_name(cls) -> str:
        return "mmembed_NomicMultiModalEmbedding"


class JinaMultiModalEmbedding(EmbedderMultiModalEmbedding):
    """Jina AI: jina-clip-v2 (1024-d) by default, key in ``JINA_API_KEY``."""

    provider: ClassVar[str] = "jina"

    model: str = Field(default="jina-clip-v2", description="Jina model (jina-clip-v2, jina-clip-v1, ...).")

    @classmethod
    def class_name(cls) -> str:
        return "mmembed_JinaMultiModalEmbedding"


class VertexMultiModalEmbedding(EmbedderMultiModalEmbedding):
    """Google Vertex AI multimodalembedding@001 (1408-d): an API key (``GOOGLE_API_KEY``) or ADC."""

    provider: ClassVar[str] = "vertex"

    model: str = Field(default="multimodalembedding@001", description="Vertex AI model.")
    project_id: str | None = Field(default=None, description="Google Cloud project (default: GOOGLE_CLOUD_PROJECT).")
    location: str | None = Field(
        default=None, description="Google Cloud region (default: GOOGLE_CLOUD_LOCATION, else us-central1)."
    )
    credentials: Any = Field(
        default=None,
        description="google-auth credentials to use instead of an API key or ADC; never serialised.",
        exclude=True,
        repr=False,
    )

    @classmethod
    def class_name(cls) -> str:
        return "mmembed_VertexMultiModalEmbedding"


def _images(images: list[ImageType]) -> list[object]:
    """LlamaIndex's images as Embedder items: a ``str`` names an image, a ``BytesIO`` holds one."""
    items: list[object] = []
    for index, image in enumerate(images):
        try:
            items.append(_image(image))
        except InputError as err:
            raise err.at(index) from err.__cause__
    return items


def _image(image: object) -> object:
    if isinstance(image, str):
        return ImageSource(image)
    if isinstance(image, io.BytesIO):
        return image.getvalue()  # the whole buffer, wherever its position was left
    return image  # Path, bytes, PIL images, arrays, other file objects: the core takes them as they are


def _lists(vectors: np.ndarray) -> list[Embedding]:
    rows: list[Embedding] = vectors.tolist()
    return rows
