"""LlamaIndex ``MultiModalEmbedding`` classes backed by :class:`mmembed.Embedder`: adapters only.

One object serves as both ``embed_model`` and ``image_embed_model`` of a ``MultiModalVectorStoreIndex``:
texts and images land in one space, and queries go out with the provider's query task. Every method,
single or batch, sync or async, hands its whole list to the Embedder, which batches to the provider's
caps, runs requests concurrently within ``max_concurrency`` and keeps order. Async methods run the
Embedder in a worker thread, so the event loop never blocks.

LlamaIndex passes images as ``str`` (a local path or an http(s) URL: here a ``str`` always names an
image) or ``BytesIO`` (``ImageNode.image`` decoded, or ``ImageNode.image_url`` fetched by LlamaIndex).

PDFs and video reach the same methods: ``get_image_embedding("report.pdf")`` or
``get_image_embedding_batch(["talk.mp4"])`` are read by content (a local file's first bytes; a URL's name),
and go natively or through mmembed's fallbacks (a PDF's pages rendered and averaged). For one node per page
or per video segment, expand first: ``embed_model.embedder.expand([Path("report.pdf")])`` gives the
segments, each with its ``page`` or ``start``/``end`` metadata, whose ``item`` the same methods embed.

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
from typing import Any, ClassVar

try:
    from llama_index.core.base.embeddings.base import Embedding
    from llama_index.core.bridge.pydantic import Field, PrivateAttr, ValidationError, field_serializer
    from llama_index.core.embeddings import MultiModalEmbedding
    from llama_index.core.schema import ImageType
except ImportError as exc:  # an optional extra: say how to get it
    raise ImportError(
        "mmembed.llama_index needs llama-index-core; install it with: pip install 'mmembed[llama-index]'"
    ) from exc

import numpy as np

from ._pydantic import derived_models, portable_fields, safe_error, serialised_cache
from .embedder import Embedder, provider_class
from .errors import ConfigurationError, InputError
from .inputs import from_uri
from .options import OptionSpec, options_for
from .providers import PROVIDERS, Provider

__all__ = [
    "CLASSES",
    "EmbedderMultiModalEmbedding",
    "embedding_class",
]  # plus one {Title}MultiModalEmbedding per registered provider, added below

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
    _embedder: Embedder = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:  # pydantic wraps the ValueErrors of model_post_init: give ours back
            error = safe_error(exc)
        else:
            return
        raise error  # outside the except block, so the error holding the input is not its context

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
        for role, name in names.items():  # show the models actually in use (a vision model paired to the text one, say)
            setattr(self, role, name)
        self.model_name = resolved
        self._embedder = embedder

    def _embedder_options(self) -> dict[str, Any]:
        """This object's Embedder options: one field per option its provider takes."""
        return {spec.name: getattr(self, spec.name) for spec in _options(PROVIDERS[self.provider])}

    @field_serializer("cache", check_fields=False)
    def _serialize_cache(self, cache: object) -> str | None:
        return serialised_cache(cache)

    def __reduce__(self) -> tuple[Any, tuple[str, dict[str, Any]]]:
        """Pickle without the key: the rebuilt object reads it from ``api_key_env_var`` (as an Embedder does)."""
        return (_rebuild, (self.provider, portable_fields(self)))

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


def _options(provider: type[Provider]) -> list[OptionSpec]:
    """The Embedder options that become fields: all but those LlamaIndex's base class already has.

    ``rate_limiter`` is LlamaIndex's own (acquired once per batch call); mmembed's limiter stays per provider.
    """
    return [spec for spec in options_for(provider) if spec.name not in MultiModalEmbedding.model_fields]


CLASSES: dict[str, type[EmbedderMultiModalEmbedding]] = derived_models(
    EmbedderMultiModalEmbedding,
    "MultiModalEmbedding",
    module=__name__,
    note="never in repr, to_dict or to_json",
    options=_options,  # a plain str key: SecretStr would put an object into to_dict() and break to_json()
)
for _cls in CLASSES.values():
    _cls.class_name = classmethod(lambda cls: f"mmembed_{cls.__name__}")  # type: ignore[method-assign,assignment]
globals().update({cls.__name__: cls for cls in CLASSES.values()})
__all__ += sorted(cls.__name__ for cls in CLASSES.values())


def _rebuild(provider: str, fields: dict[str, Any]) -> EmbedderMultiModalEmbedding:
    return CLASSES[provider](**fields)


def embedding_class(provider: str) -> type[EmbedderMultiModalEmbedding]:
    """The LlamaIndex embedding class of ``provider`` (any name of ``PROVIDERS``)."""
    return CLASSES[provider_class(provider).name]


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
    if isinstance(image, str):  # a path (an image, a PDF, a video...: read from its content) or a URL
        return from_uri(image)
    if isinstance(image, io.BytesIO):
        return image.getvalue()  # the whole buffer, wherever its position was left
    return image  # Path, bytes, PIL images, arrays, other file objects: the core takes them as they are


def _lists(vectors: np.ndarray) -> list[Embedding]:
    rows: list[Embedding] = vectors.tolist()
    return rows
