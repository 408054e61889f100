"""The fake vectors of audio and video files (or spans of them), for the endpoints that take media.

A video's vector is the image vector of its mean colour over the span; audio, which the fake space cannot hear,
a direction hashed from its bytes and the span. Each checks the file's length against the endpoint's limit.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .models import ModelSpec
from .space import get_space
from .wire import ApiError

__all__ = ["media_vector"]


def media_vector(spec: ModelSpec, kind: str, data: bytes, where: str, max_seconds: float,
                 start: float = 0.0, end: float | None = None) -> np.ndarray:
    """A video's vector is its mean colour's image vector; audio a direction hashed from its bytes."""
    from PIL import Image

    from .media import MediaError, audio_info, video_colour, video_info

    space = get_space(spec.space, spec.dim)
    try:
        if kind == "video":
            duration = video_info(data).duration
            if min(duration, end or duration) - start > max_seconds:
                raise ApiError(400, f"{where}: the video is {duration:.1f} s; at most {max_seconds:g} s")
            colour = video_colour(data, start, end)
            return np.asarray(space.image(Image.new("RGB", (32, 32), colour), modality=spec.modality_weight))
        duration = audio_info(data).duration
    except MediaError as exc:
        raise ApiError(400, f"{where}: unable to process the {kind}: {exc}") from None
    if min(duration, end or duration) - start > max_seconds:
        raise ApiError(400, f"{where}: the audio is {duration:.1f} s; at most {max_seconds:g} s")
    key = f"audio:{hashlib.sha256(data).hexdigest()}:{start:g}-{end}"  # a span of the file sounds different
    return np.asarray(space.opaque_image(key, modality=spec.modality_weight))
