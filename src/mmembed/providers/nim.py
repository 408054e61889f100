"""NVIDIA NIM embedding microservices: ``POST /v1/embeddings`` on NVIDIA's hosted catalog or a container.

The hosted catalog (``https://integrate.api.nvidia.com``, a Bearer ``nvapi-…`` key in ``NVIDIA_API_KEY``) is the
default host; a container (port 8000, no key) is named by ``base_url``. ``input`` is a list of strings: a text,
an image as a ``data:`` URL, or, for the VL embedders, a text with its image as ``<img src='data:…'/>`` (the
form NVIDIA's own benchmark client sends; ``modality: "text_image"``). Texts carry ``input_type`` ``query`` or
``passage`` (asymmetric retrievers refuse a text without it); images go without one, which every model
accepts. Remote image URLs are downloaded here: whether NIM fetches them is not documented. The per-request
cap is the model's and not documented either: ``batch_size`` (default 16, the smallest runtime batch NVIDIA
documents) keeps requests small. A container is asked what it serves (``GET /v1/models``); the catalog serves
many models, so there the model is the one named (default ``nvidia/llama-nemotron-embed-vl-1b-v2``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar

import numpy as np

from ..errors import ConfigurationError
from ..inputs import Item, TextItem
from ..options import Doc
from ._selfhosted import (
    VLM_KINDS,
    SelfHostedFamily,
    SelfHostedOptions,
    SelfHostedProvider,
    Served,
    ServerFamilyOptions,
    data_uri,
    ids,
    served_models,
)
from ._types import TEXT_IMAGE, ModelInfo, ProviderOptions, Ready, Task, indexed_data

__all__ = ["NimEmbeddings", "NimFamilyOptions", "NimProvider"]

TRUNCATE = ("START", "END", "NONE")
HOSTED_MODEL = "nvidia/llama-nemotron-embed-vl-1b-v2"

NIM_MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo(HOSTED_MODEL, 2048, image_side=512, matryoshka=False, kinds=VLM_KINDS),
        ModelInfo("nvidia/nvclip", 1024, image_side=224, matryoshka=False, kinds=TEXT_IMAGE),
        ModelInfo("nvidia/nv-embedqa-e5-v5", 1024, matryoshka=False, kinds=frozenset({"text"})),
        ModelInfo("nvidia/llama-3.2-nv-embedqa-1b-v2", 2048, kinds=frozenset({"text"})),
    )
}


class NimFamilyOptions(ServerFamilyOptions, total=False):
    """NIM's request options that are not documented well enough to fix: settings with safe defaults."""

    truncate: Annotated[
        str | None,
        Doc("What the server does with a text longer than the model takes: 'END' (cut its end), 'START' or "
            "'NONE' (refuse it).", default="END"),
    ]


class NimEmbeddings(SelfHostedFamily):
    """Embedding NIMs: texts with ``input_type``, images as data URLs, text+image in one string for VL models."""

    models: ClassVar[dict[str, ModelInfo]] = NIM_MODELS
    settings: ClassVar[type | None] = NimFamilyOptions
    kinds: ClassVar[frozenset[str]] = TEXT_IMAGE
    image_formats: ClassVar[frozenset[str]] = frozenset({"JPEG", "PNG"})
    server_fetches_urls: ClassVar[bool] = False
    default_cap: ClassVar[int] = 16  # NIM's cap is the model's and undocumented: the smallest runtime batch
    truncate: str

    def configure(self, **settings: Any) -> None:
        super().configure(**settings)
        if self.truncate not in TRUNCATE:
            raise ConfigurationError(f"{self.name}: truncate must be one of {', '.join(TRUNCATE)}")

    def route(self, item: Item) -> str:
        return "text" if isinstance(item, TextItem) else "image"

    def send(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        body: dict[str, Any] = {"model": self.model, "encoding_format": "float", "truncate": self.truncate}
        if route == "text":
            body["input"] = [self.text(ready, task) for ready in batch]
            body["input_type"] = "query" if task == "query" else "passage"
        else:
            body["input"] = [self._visual(ready, task) for ready in batch]
            body["modality"] = ["text_image" if ready.parts else "image" for ready in batch]
        return self.provider.post("/v1/embeddings", self.indexed_parser(len(batch)), json=body)

    def _visual(self, ready: Ready, task: Task) -> str:
        if not ready.parts:
            return data_uri(ready)
        texts = [self.text(part, task) for part in ready.parts if part.text is not None]
        images = [f"<img src='{data_uri(part)}'/>" for part in ready.parts if part.text is None]
        return " ".join([*texts, *images])

    def takes_interleaved(self, item: Any) -> bool:
        # One string holds the text and one image (the only text+image form NVIDIA shows).
        kinds = [part.kind for part in item.parts]
        return "interleaved" in self.native_kinds() and kinds.count("image") == 1 and set(kinds) <= TEXT_IMAGE

    def embed_raw(self, texts: list[str]) -> list[Any]:
        body = {"model": self.model, "input": texts, "input_type": "passage", "encoding_format": "float",
                "truncate": self.truncate}
        return self.provider.post("/v1/embeddings", lambda r: indexed_data(r, self.name, len(texts)), json=body)


class NimProvider(SelfHostedProvider):
    """NVIDIA NIM: the hosted catalog by default (``NVIDIA_API_KEY``), or a container by ``base_url``."""

    name: ClassVar[str] = "nim"
    title: ClassVar[str] = "NIM"
    env_var: ClassVar[str] = "NVIDIA_API_KEY"
    default_base_url: ClassVar[str] = "https://integrate.api.nvidia.com"
    official_hosts: ClassVar[tuple[str, ...]] = ("integrate.api.nvidia.com",)
    settings: ClassVar[type] = SelfHostedOptions
    families = (NimEmbeddings,)
    default_model: ClassVar[str] = ""  # a container's served model; the catalog's default is HOSTED_MODEL
    emulator: ClassVar[tuple[str, ...]] = ("mmembed.testing.nim:Nim",)
    test_options: ClassVar[Mapping[str, Any]] = {"model": HOSTED_MODEL}  # the emulator serves it too

    def __init__(self, options: ProviderOptions, **settings: Any) -> None:
        super().__init__(options, **settings)
        if self.hosted and not self._api_key:
            self.close()
            raise ConfigurationError(
                f"{self.name}: NVIDIA's hosted catalog needs a key; set the {self.env_var} environment variable "
                "or pass api_key=... (or base_url=... for a NIM container of your own)"
            )

    def choose_model(self, settings: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        model, rest = super().choose_model(settings)
        if not model and self.options.base_url is None:
            model = HOSTED_MODEL
        return model, rest

    def ask_server(self) -> Served:
        return Served(ids(served_models(self.get_json("/v1/models"), self.name)))
