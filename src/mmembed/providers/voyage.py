"""Voyage AI: voyage-multimodal-3.5 (default) and voyage-multimodal-3 over ``/v1/multimodalembeddings``.

Each item is one ``inputs[]`` entry whose ``content`` holds typed segments (``text``, ``image_base64`` as a data
URI, ``image_url``); every input comes back as ONE vector, so texts and images travel together. Voyage refuses
a request that mixes ``image_url`` and ``image_base64`` segments, so images the server fetches (http(s) URLs)
go in requests of their own (route ``"url"``); texts and uploaded images share route ``"inline"``.

Limits (PROVIDERS-NEXT §4): at most 1,000 inputs and 320,000 tokens per request, where a text costs about
one token per 4 characters and an image one token per 560 pixels, each image counted between 50,000 and
2,000,000 pixels (the model sees no more than 2 M). :meth:`VoyageMultimodal.fits` closes a batch before either
cap with what is known when an item is admitted; :meth:`VoyageMultimodal.send` packs the prepared batch again
with the exact pixel counts, so a request never goes over. Keys starting ``al-`` (MongoDB Atlas) go to
``https://ai.mongodb.com``. Errors are ``{"detail": ...}`` with a ``request-id`` header. Vectors are
normalised here (whether Voyage's are unit length is UNCONFIRMED).
"""

from __future__ import annotations

import base64
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any, ClassVar, TypedDict

import numpy as np
import requests

from ..download import download
from ..images import prepare_image
from ..inputs import ImageItem, InterleavedItem, Item, MediaItem, TextItem, VideoItem
from ..options import Doc
from .base import ModelFamily, ModelInfo, Provider, Ready, Task

__all__ = ["VoyageMultimodal", "VoyageProvider", "VoyageSettings"]

# Shortest side 1024: a 4:3 page at 1365x1024 keeps small print legible, and every aspect ratio up to 1.9:1
# stays under the 2 M pixels the model sees; wider images are shrunk further to that budget (see prepare).
MODELS = {
    "voyage-multimodal-3.5": ModelInfo(
        "voyage-multimodal-3.5", 1024, image_side=1024, dimension_choices=(256, 512, 1024, 2048), max_batch=1000,
        kinds=frozenset({"text", "image", "interleaved", "video"}),
    ),
    "voyage-multimodal-3": ModelInfo(
        "voyage-multimodal-3", 1024, image_side=1024, dimension_choices=(1024,), max_batch=1000,
        kinds=frozenset({"text", "image", "interleaved"}),
    ),
}
DEFAULT_MODEL = "voyage-multimodal-3.5"
MONGODB_BASE_URL = "https://ai.mongodb.com"  # where Voyage keys issued by MongoDB Atlas ("al-...") are served
INPUT_CAP = 1000
TOKEN_CAP = 320_000
TOKEN_BUDGET = 300_000  # the cap less headroom: the text estimate is an approximation of Voyage's tokenizer
PIXELS_PER_TOKEN = 560
MIN_PIXELS, MAX_PIXELS = 50_000, 2_000_000  # what Voyage counts (and sees) of one image
PREFIX_TOKENS = 12  # the input_type prompt Voyage prepends ("Represent the query for retrieving ...: ")
INPUT_TYPES: dict[str, str] = {"document": "document", "query": "query"}
VIDEO_TOKENS = 32_000  # a video counted as the most one input may hold (Voyage's video pricing: UNCONFIRMED)
IMAGE_TEXT = frozenset({"text", "image", "interleaved"})


def image_tokens(pixels: int | None) -> int:
    """What Voyage counts for one image of ``pixels`` (None, unknown: the most it counts)."""
    seen = MAX_PIXELS if pixels is None else min(max(pixels, MIN_PIXELS), MAX_PIXELS)
    return math.ceil(seen / PIXELS_PER_TOKEN)


def text_tokens(text: str) -> int:
    """An estimate of a text's tokens: one per 4 characters, rounded up, plus the input_type prompt."""
    return math.ceil(len(text) / 4) + PREFIX_TOKENS


class VoyageSettings(TypedDict, total=False):
    """Voyage's request options."""

    truncation: Annotated[
        bool | None, Doc("Let the server shorten inputs over the model's length.", default=True, local=True)
    ]


class VoyageMultimodal(ModelFamily):
    """voyage-multimodal-3.5 / -3: one ``inputs[]`` entry of typed segments per item, one vector each."""

    models: ClassVar[dict[str, ModelInfo]] = MODELS
    settings: ClassVar[type | None] = VoyageSettings
    image_formats: ClassVar[frozenset[str]] = frozenset({"JPEG", "PNG", "WEBP", "GIF"})
    server_fetches_urls: ClassVar[bool] = True
    # One input holds any mix of text, image (and, on 3.5, video) segments and gives one vector: interleaved.
    kinds: ClassVar[frozenset[str]] = IMAGE_TEXT
    unknown_image_side: ClassVar[int] = 1024
    truncation: bool

    def configure(self, **settings: Any) -> None:
        super().configure(**settings)
        self.truncation = bool(self.truncation)
        self._tallies: list[_Tally] = []  # per open batch: its estimate so far (see fits)
        self._tally_lock = threading.Lock()

    def check_dimensions(self, model: ModelInfo) -> None:
        # 3.5 answers 1024 values unless asked for more (2048) or fewer: check against the largest choice.
        choices = model.dimension_choices
        super().check_dimensions(replace(model, dimensions=max(choices)) if choices else model)

    def route(self, item: Item) -> str:
        # Voyage refuses image_url and image_base64 in one request: what the server fetches travels apart.
        # An interleaved item with both kinds of parts has its URLs downloaded here (see prepare).
        parts = item.parts if isinstance(item, InterleavedItem) else (item,)
        media = [p for p in parts if isinstance(p, (ImageItem, MediaItem))]
        return "url" if media and all(p.url is not None for p in media) else "inline"

    def cap(self, route: str) -> int:
        return self.info.max_batch or INPUT_CAP

    def fits(self, batch: Sequence[Item], item: Item, route: str) -> bool:
        if len(batch) >= self.cap(route):
            return False
        # Images already in an open batch are pixel-less stand-ins: count them at the least Voyage counts, and
        # let send() split the batch if their real sizes go over (it knows them exactly).
        if self._tally(batch) + _least_tokens(item) <= TOKEN_BUDGET:
            return True
        with self._tally_lock:  # the batch is closed now: forget it
            self._tallies = [t for t in self._tallies if t.batch is not batch]
        return False

    def _tally(self, batch: Sequence[Item]) -> int:
        """The estimated tokens of an open batch, counted once per item (a batch only ever grows)."""
        with self._tally_lock:
            tally = next((t for t in self._tallies if t.batch is batch), None)
            if tally is None:
                tally = _Tally(batch)
                self._tallies = [tally, *self._tallies[:15]]  # open batches of the last few calls
            tally.tokens += sum(_least_tokens(b) for b in batch[tally.counted :])
            tally.counted = len(batch)
            return tally.tokens

    def prepare(self, item: Item) -> Ready:
        if isinstance(item, InterleavedItem):
            inline = self.route(item) == "inline"
            return Ready(kind="interleaved", parts=tuple(self._part(p, download_urls=inline) for p in item.parts))
        return self._part(item, download_urls=False)

    def _part(self, item: Item, *, download_urls: bool) -> Ready:
        if download_urls and isinstance(item, ImageItem) and item.url is not None:
            data = download(item.url, self.provider.download_policy, self.provider.download_session())
            return self._part(ImageItem(source=item.source, raw=data), download_urls=False)
        ready = super().prepare(item)
        image = ready.image
        pixels = 0 if image is None else image.width * image.height
        if image is None or pixels <= MAX_PIXELS or not isinstance(item, ImageItem):
            return ready
        # Wider than ~1.9:1 at the chosen side: shrink to the pixel budget the model sees, not beyond.
        side = max(1, math.floor(min(image.width, image.height) * math.sqrt(MAX_PIXELS / pixels)))
        return Ready(image=prepare_image(image.data, replace(self.image_spec(), min_side=side)))

    def prepare_media(self, item: MediaItem) -> Ready:
        if isinstance(item, VideoItem) and item.url is not None:  # the server fetches video URLs (3.5)
            return Ready(kind="video", url=item.url, media_type=item.media_type)
        return super().prepare_media(item)

    def send(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        vectors: list[np.ndarray] = []
        for part in _packed(batch):
            vectors.extend(self._post(part, task))
        return vectors

    def _post(self, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        body: dict[str, Any] = {
            "inputs": [{"content": _content(r)} for r in batch],
            "model": self.model,
            "input_type": INPUT_TYPES[task],
            "truncation": self.truncation,
        }
        if self.provider.options.dimensions is not None and self.info.known:
            body["output_dimension"] = self.provider.options.dimensions
        return self.provider.post("/v1/multimodalembeddings", self.indexed_parser(len(batch)), json=body)


class VoyageProvider(Provider):
    """Voyage AI: voyage-multimodal-3.5 by default (1024-d; 256/512/2048), voyage-multimodal-3 (1024-d)."""

    name: ClassVar[str] = "voyage"
    title: ClassVar[str] = "Voyage"
    env_var: ClassVar[str] = "VOYAGE_API_KEY"
    default_base_url: ClassVar[str] = "https://api.voyageai.com"
    official_hosts: ClassVar[tuple[str, ...]] = ("api.voyageai.com", "ai.mongodb.com")
    families = (VoyageMultimodal,)
    default_model: ClassVar[str] = DEFAULT_MODEL
    emulator: ClassVar[tuple[str, ...]] = ("mmembed.testing.voyage:Voyage",)
    # Voyage's limits are per tier (TPM/RPM on the dashboard; numbers UNCONFIRMED): tier-1-like defaults.
    default_concurrency: ClassVar[int] = 4
    default_requests_per_minute: ClassVar[float | None] = 300
    rate_window: ClassVar[float] = 60.0  # RPM and TPM: per-minute quotas

    def default_url(self) -> str:
        # Keys issued by MongoDB Atlas ("al-...") are served there.
        return MONGODB_BASE_URL if (self._api_key or "").startswith("al-") else self.default_base_url

    def request_id(self, response: requests.Response, body: dict[str, Any]) -> str | None:
        return response.headers.get("request-id") or super().request_id(response, body)


@dataclass
class _Tally:
    """An open batch (held, so its identity stays unique) and the tokens of its first ``counted`` items."""

    batch: Sequence[Item]
    counted: int = 0
    tokens: int = 0


def _content(ready: Ready) -> list[dict[str, str]]:
    """The ``content`` segments of one input: one per part of an interleaved item."""
    if ready.parts:
        return [segment for part in ready.parts for segment in _content(part)]
    if ready.text is not None:
        return [{"type": "text", "text": ready.text}]
    kind = "video" if ready.kind == "video" else "image"
    if ready.url is not None:
        return [{"type": f"{kind}_url", f"{kind}_url": ready.url}]
    if ready.image is not None:
        data, media_type = ready.image.data, ready.image.media_type
    elif ready.media is not None and ready.media_type is not None:
        data, media_type = ready.media, ready.media_type
    else:
        raise ValueError("an input segment with nothing to send")  # a bug, not user input
    uri = f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"
    return [{"type": f"{kind}_base64", f"{kind}_base64": uri}]


def _least_tokens(item: Item) -> int:
    if isinstance(item, TextItem):
        return text_tokens(item.text)
    if isinstance(item, InterleavedItem):
        return sum(_least_tokens(part) for part in item.parts)
    if isinstance(item, VideoItem):
        return VIDEO_TOKENS
    return image_tokens(None if isinstance(item, ImageItem) and item.url is not None else MIN_PIXELS)


def _tokens(ready: Ready) -> int:
    if ready.parts:
        return sum(_tokens(part) for part in ready.parts)
    if ready.kind == "video":
        return VIDEO_TOKENS
    if ready.text is not None:
        return text_tokens(ready.text)
    if ready.image is not None:
        return image_tokens(ready.image.width * ready.image.height)
    return image_tokens(None)  # a URL: Voyage counts up to 2 M pixels of whatever it fetches


def _packed(batch: Sequence[Ready]) -> list[list[Ready]]:
    """``batch`` in consecutive requests of at most TOKEN_BUDGET estimated tokens (usually one)."""
    parts: list[list[Ready]] = [[]]
    total = 0
    for ready in batch:
        tokens = _tokens(ready)
        if parts[-1] and total + tokens > TOKEN_BUDGET:
            parts.append([])
            total = 0
        parts[-1].append(ready)
        total += tokens
    return parts

