"""Twelve Labs Marengo's request shape, served by Twelve Labs' own Embed API v2 and by Amazon Bedrock.

One item per request: ``{"input_type": t, t: {...}}`` where ``t`` is ``text`` (``input_text``), ``image``
(``media_source``), ``text_image`` (one text and one image, fused into one vector), ``audio`` or ``video``
(``media_source`` and, for a clip, ``start_sec``/``end_sec``; one ``asset``-scope vector asked for). A media
source is ``{"base64_string": ...}``. The logical request is the same on both hosts; what differs is declared in
``Hosting(..., wire={...})``:

* ``case``: ``"snake"`` (Twelve Labs: ``input_text``, ``media_source``) or ``"camel"`` (Bedrock: ``inputText``,
  ``mediaSource``); the object named after the input type keeps its name (``text_image``) on both;
* ``model_name``: the body names the model in ``model_name`` (Twelve Labs: ``marengo3.0``);
* ``path``: the endpoint (Twelve Labs ``/v1.3/embed-v2``; Bedrock routes by model in the URL);
* ``media``: whether the host takes audio and video synchronously (Bedrock's InvokeModel does not);
* ``tasks``: the asynchronous tasks endpoint for media over ``sync_media_bytes`` (Twelve Labs ``/v1.3/embed-v2/tasks``).

Marengo 2.7 (Bedrock, by inference profile) has a flat layout (``{"inputType": "text", "inputText": ...}``) and
takes text and images only. Replies are read leniently: ``data`` as an object or a list, or a top-level
``embedding``; of several vectors (a video's clips and asset), the asset's (fused when there is one).
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, TypedDict

import numpy as np
import requests

from ..errors import InputError, InvalidResponseError
from ..images import prepare_image
from ..inputs import InterleavedItem, Item
from ..options import Doc
from ._family import ModelFamily
from ._types import ModelInfo, Ready, Task, json_body

__all__ = ["Marengo", "MarengoSettings"]

_M30, _M27, _NATIVE = "twelvelabs.marengo-embed-3-0-v1:0", "twelvelabs.marengo-embed-2-7-v1:0", "marengo3.0"
_TEXT_IMAGE = frozenset({"text", "image", "interleaved"})
FLAT = frozenset({_M27})  # the 2.7 layout: fields beside inputType, no object per input type
MIN_SIDE = 128  # the smallest image side the native API takes


class MarengoSettings(TypedDict, total=False):
    """Marengo's own options (media over the synchronous limits go through the tasks API where the host has it)."""

    sync_media_bytes: Annotated[
        int | None,
        Doc("Largest audio/video file sent to the synchronous endpoint; larger files go as an asynchronous task.",
            default=27_000_000, local=True),
    ]
    task_poll_seconds: Annotated[
        float | None, Doc("Seconds between polls of an asynchronous embedding task.", default=5.0, local=True)
    ]
    task_timeout: Annotated[
        float | None, Doc("Seconds an asynchronous embedding task may take before giving up.", default=3600.0,
                          local=True)
    ]


class Marengo(ModelFamily):
    """Marengo: text, image, text+image (fused), and audio/video where the host takes them; one item a call."""

    models: ClassVar[dict[str, ModelInfo]] = {
        _M30: ModelInfo(_M30, 512, image_side=512, matryoshka=False, max_batch=1, kinds=_TEXT_IMAGE),
        _M27: ModelInfo(_M27, 1024, image_side=512, matryoshka=False, max_batch=1, kinds=frozenset({"text", "image"})),
        _NATIVE: ModelInfo(_NATIVE, 512, image_side=512, matryoshka=False, max_batch=1,
                           kinds=frozenset({*_TEXT_IMAGE, "audio", "video"})),
    }
    cloud_ids: ClassVar[tuple[str, ...]] = (_M30, _M27)  # Amazon Bedrock's
    native_ids: ClassVar[tuple[str, ...]] = (_NATIVE,)  # Twelve Labs' own API
    settings: ClassVar[type | None] = MarengoSettings
    image_formats: ClassVar[frozenset[str]] = frozenset({"JPEG", "PNG"})
    video_clips: ClassVar[bool] = True  # start_sec/end_sec of a video
    audio_clips: ClassVar[bool] = True  # and of an audio file
    sync_media_bytes: int
    task_poll_seconds: float
    task_timeout: float

    def takes_interleaved(self, item: InterleavedItem) -> bool:
        """text_image: one text and one image, fused by the model."""
        kinds = sorted(part.kind for part in item.parts)
        equal = item.weights is None or len(set(item.weights)) == 1
        return "interleaved" in self.native_kinds() and kinds == ["image", "text"] and equal

    def prepare(self, item: Item) -> Ready:
        ready = super().prepare(item)
        image = ready.image
        if image is None or min(image.width, image.height) >= MIN_SIDE:
            return ready
        # The API refuses images under 128 px a side: a thumbnail is enlarged to that (it carries no more detail).
        from PIL import Image

        with Image.open(io.BytesIO(image.data)) as picture:
            scale = MIN_SIDE / min(picture.size)
            size = (max(MIN_SIDE, round(picture.width * scale)), max(MIN_SIDE, round(picture.height * scale)))
            bigger = picture.convert("RGB").resize(size, Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        bigger.save(buffer, "PNG")
        return Ready(image=prepare_image(buffer.getvalue(), self.image_spec()))

    def send(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        (ready,) = batch
        body = self.request(ready)
        path = self.provider.model_path(self.model, self.wire.get("path", "/embed-v2"))
        tasks = self.wire.get("tasks")
        if tasks and ready.media is not None and len(ready.media) > self.sync_media_bytes:
            return self._run_task(tasks, body)
        return self.one_item(lambda: self.provider.post(path, self._parse, json=body))

    # -- the request ----------------------------------------------------------------------------------
    def request(self, ready: Ready) -> dict[str, Any]:
        """The body for one item, in the host's key naming."""
        kind, content = self._content(ready)
        camel = self.wire.get("case") == "camel"
        if self.provider.base_model(self.model) in FLAT:
            return _keys({"input_type": kind, **content}, camel)
        body: dict[str, Any] = {"input_type": kind}
        if self.wire.get("model_name"):
            body["model_name"] = self.model
        out = _keys(body, camel)
        out[kind] = _keys(content, camel)
        return out

    def _content(self, ready: Ready) -> tuple[str, dict[str, Any]]:
        if ready.parts:
            text = next(p.text for p in ready.parts if p.text is not None)
            image = next(p for p in ready.parts if p.image is not None)
            return "text_image", {"input_text": text, **self._content(image)[1]}
        if ready.text is not None:
            return "text", {"input_text": ready.text}
        if ready.image is not None:
            return "image", {"media_source": {"base64_string": _b64(ready.image.data)}}
        if ready.media is None or ready.kind not in ("audio", "video") or not self.wire.get("media"):
            raise InputError(f"{self.name}: {self.model} takes {', '.join(sorted(self.native_kinds()))} only")
        content: dict[str, Any] = {"media_source": {"base64_string": _b64(ready.media)}}
        if ready.start is not None:
            content["start_sec"] = ready.start
        if ready.end is not None:
            content["end_sec"] = ready.end
        if ready.kind == "video":  # one vector for the whole clip: visual and audio fused, asset scope
            content.update(embedding_option=["visual", "audio"], embedding_scope=["asset"],
                           embedding_type=["fused_embedding"])
        else:
            content.update(embedding_option=["audio"], embedding_scope=["asset"])
        return ready.kind, content

    # -- the answer -------------------------------------------------------------------------------------
    def _parse(self, response: requests.Response) -> list[np.ndarray]:
        return self._vector_of(json_body(response, self.name), response.text)

    def _vector_of(self, body: Any, text: str) -> list[np.ndarray]:
        data = body.get("data") if isinstance(body, dict) else None
        entries = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
        if not entries and isinstance(body, dict) and "embedding" in body:
            entries = [body]
        entries = [e for e in entries if isinstance(e, dict) and isinstance(e.get("embedding"), list)]
        if not entries:
            raise InvalidResponseError("response has no embedding", provider=self.name, body=text)
        best = min(entries, key=_rank)
        return self.finish([best["embedding"]], 1)

    # -- the asynchronous tasks API (long media) ------------------------------------------------------------
    def _run_task(self, path: str, body: dict[str, Any]) -> list[np.ndarray]:
        created = self.provider.post(path, lambda r: json_body(r, self.name), json=body)
        task_id = created.get("_id") or created.get("id") if isinstance(created, dict) else None
        if not task_id:
            raise InvalidResponseError("the task answer has no _id", provider=self.name)
        deadline = time.monotonic() + self.task_timeout
        while True:
            state = self.provider.get(f"{path}/{task_id}", lambda r: json_body(r, self.name))
            status = state.get("status") if isinstance(state, dict) else None
            if status == "ready":
                return self._vector_of(state, str(state)[:200])
            if status == "failed":
                error = state.get("error") or {}
                raise InputError(f"{self.name} task {task_id} failed: {error.get('message', 'no reason given')}")
            if time.monotonic() > deadline:
                raise InvalidResponseError(f"task {task_id} not ready after {self.task_timeout:g} s",
                                           provider=self.name)
            time.sleep(self.task_poll_seconds)


def _rank(entry: dict[str, Any]) -> tuple[int, int]:
    """Asset scope first, then a fused vector, then the visual one."""
    scope = 0 if entry.get("embedding_scope", entry.get("embeddingScope")) in ("asset", None) else 1
    option = entry.get("embedding_option", entry.get("embeddingOption"))
    return scope, {"fused": 0, None: 0, "visual": 1}.get(option, 2)


def _keys(content: dict[str, Any], camel: bool) -> dict[str, Any]:
    """``content`` with its keys (recursively) in camelCase when the host says so."""
    if not camel:
        return content
    return {_camel(k): _keys(v, camel) if isinstance(v, dict) else v for k, v in content.items()}


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
