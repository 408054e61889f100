"""Hugging Face text-embeddings-inference (TEI): text only, on its native ``POST /embed``.

``/embed`` rather than TEI's OpenAI route (``/v1/embeddings``): only ``/embed`` takes ``prompt_name`` (the
query prompt a sentence-transformers model declares), and its answer is the bare ``[[...], ...]`` in input
order. ``{"inputs": [...]}`` carries at most ``max_client_batch_size`` texts (32 unless the server was started
otherwise; read from ``GET /info``, which also names the served model); more is refused with a 422. A server
started with ``--api-key`` (give it here as ``api_key`` or ``TEI_API_KEY``) wants a Bearer key. Overload:
each input takes one of ``--max-concurrent-requests`` (512) permits; none left → 429 "Model is overloaded".
An image (or any non-text item) is refused with an :class:`~mmembed.errors.UnsupportedKindError` naming the
providers that embed it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar

import numpy as np
import requests

from ..errors import InvalidResponseError
from ..options import Doc
from ._selfhosted import TEXT_MODELS, SelfHostedFamily, SelfHostedProvider, Served, ServerFamilyOptions
from ._types import ModelInfo, Ready, Task, json_body

__all__ = ["TeiEmbeddings", "TeiFamilyOptions", "TeiProvider"]

TEXT_ONLY = frozenset({"text"})
MAX_CLIENT_BATCH = 32  # TEI's default --max-client-batch-size


class TeiFamilyOptions(ServerFamilyOptions, total=False):
    """The prompts a sentence-transformers model declares (names TEI looks up in its config)."""

    query_prompt_name: Annotated[
        str | None, Doc("The model's prompt name for queries (e.g. 'query'), sent as prompt_name; default none.")
    ]
    document_prompt_name: Annotated[
        str | None, Doc("The model's prompt name for documents (e.g. 'document'); default none.")
    ]


class TeiEmbeddings(SelfHostedFamily):
    """Text embedding models on TEI's ``/embed``."""

    models: ClassVar[dict[str, ModelInfo]] = TEXT_MODELS
    settings: ClassVar[type | None] = TeiFamilyOptions
    kinds: ClassVar[frozenset[str]] = TEXT_ONLY
    default_cap: ClassVar[int] = MAX_CLIENT_BATCH
    query_prompt_name: str | None
    document_prompt_name: str | None

    @classmethod
    def unknown(cls, model: str) -> ModelInfo:
        return ModelInfo(model, None, known=False, kinds=TEXT_ONLY)

    def native_kinds(self) -> frozenset[str]:
        return TEXT_ONLY

    def send(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        body: dict[str, Any] = {"inputs": [self.text(ready, task) for ready in batch]}
        prompt = self.query_prompt_name if task == "query" else self.document_prompt_name
        if prompt:
            body["prompt_name"] = prompt
        expected = len(batch)
        return self.provider.post("/embed", lambda r: self.finish(self._rows(r, expected), expected), json=body)

    def _rows(self, response: requests.Response, expected: int) -> list[Any]:
        rows = json_body(response, self.name)
        if not isinstance(rows, list):
            raise InvalidResponseError("the answer is not a list of embeddings", provider=self.name,
                                       body=response.text)
        return rows

    def embed_raw(self, texts: list[str]) -> list[Any]:
        return self.provider.post("/embed", lambda r: self._rows(r, len(texts)), json={"inputs": texts})


class TeiProvider(SelfHostedProvider):
    """A text-embeddings-inference server: text models (BGE, E5, GTE, MiniLM, Qwen3-Embedding...)."""

    name: ClassVar[str] = "tei"
    title: ClassVar[str] = "TEI"
    env_var: ClassVar[str] = "TEI_API_KEY"
    families = (TeiEmbeddings,)
    default_model: ClassVar[str] = ""  # the served one
    emulator: ClassVar[tuple[str, ...]] = ("mmembed.testing.tei:Tei",)
    test_options: ClassVar[Mapping[str, Any]] = {"model": "BAAI/bge-small-en-v1.5"}  # the emulator's model
    strips_v1: ClassVar[bool] = True  # /embed and /info are at the root, so a /v1 in base_url is the habit

    def url(self, path: str) -> str:
        base = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        return f"{base}{path}"

    def ask_server(self) -> Served:
        info = self.get_json("/info")
        if not isinstance(info, dict) or not isinstance(info.get("model_id"), str):
            raise InvalidResponseError("/info has no model_id", provider=self.name)
        cap = info.get("max_client_batch_size")
        return Served((info["model_id"],), kinds=TEXT_ONLY, max_batch=cap if isinstance(cap, int) and cap > 0 else None)
