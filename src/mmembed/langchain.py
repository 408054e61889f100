"""LangChain ``Embeddings`` classes with ``embed_image``, backed by :class:`mmembed.Embedder`: adapters only.

One class per provider in the registry (:data:`mmembed.providers.PROVIDERS`), derived from its declaration:
``{Title}MultimodalEmbeddings`` (``NomicMultimodalEmbeddings``, ``JinaMultimodalEmbeddings``,
``VertexMultimodalEmbeddings``, ...), each with one pydantic field per :class:`mmembed.Embedder` option the
provider takes. :func:`embeddings_class` looks one up by provider name.

Texts and images land in one space, so one object serves a mixed ``langchain_chroma.Chroma`` store:
``add_texts`` calls :meth:`~EmbedderEmbeddings.embed_documents`, ``add_images(uris)`` and
``similarity_search_by_image(uri)`` call :meth:`~EmbedderEmbeddings.embed_image`, and a text search calls
:meth:`~EmbedderEmbeddings.embed_query`, which uses the provider's query task. Every call hands its whole
list to the Embedder, which batches to the provider's caps, shrinks photos before upload and keeps order.
The async methods run the Embedder in a worker thread, so the event loop never blocks.

In ``embed_image`` a ``str`` always names an image: a local path, an http(s) URL (an API that fetches URLs gets it
as is, another gets it downloaded under the URL policy), a ``gs://`` URI (for an API that reads it) or a ``data:``
URI.

>>> from mmembed.langchain import JinaMultimodalEmbeddings
>>> from mmembed.testing import Emulator
>>> with Emulator() as emu:
...     embeddings = JinaMultimodalEmbeddings(api_key="test-key", base_url=emu.url)
...     len(embeddings.embed_query("a yellow flower"))
...     embeddings.close()
1024
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

try:
    from langchain_core.embeddings import Embeddings
    from pydantic import (
        BaseModel,
        ConfigDict,
        PrivateAttr,
        SecretStr,
        ValidationError,
        field_serializer,
    )
except ImportError as exc:  # an optional extra: say how to get it
    raise ImportError(
        "mmembed.langchain needs langchain-core; install it with: pip install 'mmembed[langchain]'"
    ) from exc

import numpy as np

from ._pydantic import derived_models, portable_fields, safe_error, serialised_cache
from .embedder import Embedder, provider_class
from .errors import InputError
from .inputs import ImageSource
from .options import options_for
from .providers import PROVIDERS

__all__ = [
    "CLASSES",
    "EmbedderEmbeddings",
    "embeddings_class",
]  # plus one {Title}MultimodalEmbeddings per registered provider, added below


class EmbedderEmbeddings(BaseModel, Embeddings):
    """LangChain ``Embeddings`` over one mmembed provider, with ``embed_image``; subclasses set ``provider``.

    Every field is an :class:`mmembed.Embedder` option, passed to it as is. ``api_key`` is a ``SecretStr``
    (as in LangChain's own integrations) that is never dumped, shown or pickled; without it the key is read
    from the environment variable ``api_key_env_var`` (the provider's usual one by default).
    """

    provider: ClassVar[str]

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), hide_input_in_errors=True)

    _embedder: Embedder = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:  # model_post_init's ValueErrors are wrapped: give ours back, hide inputs
            error = safe_error(exc)
        else:
            return
        # Raised outside the except block, so the original error (which holds the input) is not its context.
        raise error

    def model_post_init(self, context: Any, /) -> None:
        embedder = Embedder(self.provider, **self._embedder_options())
        for role, name in embedder.provider.model_names().items():  # show the models in use (every role's)
            setattr(self, role, name)
        self.api_key_env_var = embedder.provider.api_key_env_var  # where a rebuilt (unpickled) object reads it
        self._embedder = embedder

    def _embedder_options(self) -> dict[str, Any]:
        """This object's Embedder options: one field per option its provider takes."""
        options = {spec.name: getattr(self, spec.name) for spec in options_for(PROVIDERS[self.provider])}
        key = options.get("api_key")
        options["api_key"] = key.get_secret_value() if isinstance(key, SecretStr) else key
        return options

    @field_serializer("cache", check_fields=False)
    def _serialize_cache(self, cache: object) -> str | None:
        return serialised_cache(cache)

    def __reduce__(self) -> tuple[Any, tuple[str, dict[str, Any]]]:
        """Pickle without the key: the rebuilt object reads it from ``api_key_env_var``."""
        return (_rebuild, (self.provider, portable_fields(self)))

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> EmbedderEmbeddings:
        """A copy with its own Embedder and the same options, key included (a pickle would drop the key)."""
        return type(self)(**{name: getattr(self, name) for name in type(self).model_fields})

    @property
    def embedder(self) -> Embedder:
        """The :class:`mmembed.Embedder` doing the work (its ``provider.transport.stats`` count requests)."""
        return self._embedder

    def close(self) -> None:
        """Stop the worker threads and close the provider's connections."""
        self._embedder.close()

    # -- LangChain's Embeddings ---------------------------------------------------------------------
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts as documents (the provider's document task), one vector per text, in order."""
        return _lists(self._embedder.embed(_texts(texts)))

    def embed_query(self, text: str) -> list[float]:
        """Embed one search query with the provider's query task."""
        return _lists(self._embedder.embed_query([_text(text)]))[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """:meth:`embed_documents` in a worker thread: the event loop keeps running."""
        return _lists(await self._embedder.aembed(_texts(texts)))

    async def aembed_query(self, text: str) -> list[float]:
        """:meth:`embed_query` in a worker thread: the event loop keeps running."""
        return _lists(await self._embedder.aembed_query([_text(text)]))[0]

    # -- images (langchain-chroma's add_images and similarity_search_by_image call embed_image) -----
    def embed_image(self, uris: list[str]) -> list[list[float]]:
        """Embed images, one vector per URI, in order; a ``str`` is a local path or an http(s)/gs:// URL.

        Files are uploaded shrunk to the model's input size. Paths, bytes and PIL images work as well.
        """
        return _lists(self._embedder.embed(_images(uris)))

    async def aembed_image(self, uris: list[str]) -> list[list[float]]:
        """:meth:`embed_image` in a worker thread: the event loop keeps running."""
        return _lists(await self._embedder.aembed(_images(uris)))


CLASSES: dict[str, type[EmbedderEmbeddings]] = derived_models(
    EmbedderEmbeddings,
    "MultimodalEmbeddings",
    module=__name__,
    note="never in repr, model_dump or a pickle",
    key_type=SecretStr,  # LangChain's convention for keys
)
globals().update({cls.__name__: cls for cls in CLASSES.values()})
__all__ += sorted(cls.__name__ for cls in CLASSES.values())


def embeddings_class(provider: str) -> type[EmbedderEmbeddings]:
    """The LangChain embeddings class of ``provider`` (any name of ``PROVIDERS``)."""
    return CLASSES[provider_class(provider).name]


def _rebuild(provider: str, fields: dict[str, Any]) -> EmbedderEmbeddings:
    return CLASSES[provider](**fields)


def _text(text: object, index: int | None = None) -> str:
    if not isinstance(text, str):  # a Path or bytes here would be embedded as an image, silently
        name = type(text).__name__
        raise InputError(f"LangChain texts must be str, not {name}", index=index, source=name)
    return text


def _texts(texts: list[str]) -> list[object]:
    if isinstance(texts, str):
        raise TypeError("embed_documents() takes a list of texts; wrap a single one in a list")
    return [_text(text, index) for index, text in enumerate(texts)]


def _images(uris: list[str]) -> list[object]:
    """LangChain's image URIs as Embedder items: a ``str`` names an image; other image objects pass as is."""
    if isinstance(uris, (str, Path)):
        raise TypeError("embed_image() takes a list of URIs; wrap a single one in a list")
    return [ImageSource(uri) if isinstance(uri, str) else uri for uri in uris]


def _lists(vectors: np.ndarray) -> list[list[float]]:
    rows: list[list[float]] = vectors.tolist()
    return rows
