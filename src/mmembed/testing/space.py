"""The emulator's vector space: deterministic fake embeddings with the geometry of a real multimodal model.

These are NOT the real models' vectors. They are built from fixed pseudo-random unit vectors (a numpy generator
seeded from the sha256 of a name) so that tests can rely on the *shape* of real results:

* text:  ``2.0·M_text + 0.8·G + 1.0·C + 0.6·W (+ 0.15·Q for a query task)``, normalised, where ``C`` is the
  normalised sum of the colour concepts the text names (colour words, and a few things of a known colour such as
  "banana") and ``W`` the normalised sum of its other (non-stopword) words;
* image: ``2.0·M_image + 0.8·G + 1.0·C_mix + 0.3·N``, normalised, where ``C_mix`` softly assigns the picture's dominant
  colour to the colour prototypes of :data:`~mmembed.testing.samples.COLOURS` and ``N`` projects an 8x8
  thumbnail onto fixed random directions (continuous, so one picture re-encoded or resized lands very near
  itself; a hash of the thumbnail would jump on any pixel change).

The large modality vectors make a *modality gap* like real CLIP-style models, and the direction ``G`` that every
vector shares (its weight 0.4 times the modality weight) the *cone effect* of Liang et al. (2022, "Mind the Gap"):
unrelated embeddings are not orthogonal. With CLIP-style weights (2.0): text↔text cosines are ≈0.77 (unrelated) to
1, a text and a picture of the colour it names ≈0.27, a text and other pictures ≈0.11 — the magnitudes reported for
CLIP ViT-B/32 (matching image-text ≈0.3, unrelated ≈0.1-0.15). So in one mixed collection any text outranks every
image, yet ranking images alone by a colour query puts that colour first.

The structural vectors (modalities, query, colours) are exactly orthogonal inside each block of dimensions
ending at 64, 128, 256, 512, 768, 1024, 1408 and 2048, so Matryoshka truncation to any of those sizes keeps the
geometry; word and thumbnail directions are made orthogonal to them too. Each model family has its own space
(seeded by its name): vectors from different providers are unrelated, as in reality.

>>> spec = ModelSpec("acme", "acme-embed", "acme-embed", 1024, frozenset({"text"}), dimensions=range(1, 1025))
>>> v = np.array(embed(spec, text="a red car", dimensions=64))
>>> v.shape, round(float(v @ v), 6)
((64,), 1.0)
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from .imagedata import decode_image, to_rgb
from .models import ModelSpec, find_model
from .samples import COLOURS

__all__ = [
    "COLOUR_SYNONYMS",
    "Space",
    "count_tokens",
    "embed",
    "emulator_vector",
    "get_space",
    "multivector",
    "to_wire",
    "truncate",
]

Vector = NDArray[np.float64]

BLOCK_EDGES = (64, 128, 256, 512, 768, 1024, 1408, 2048)
TEXT_WEIGHTS = {"modality": 2.0, "colour": 1.0, "words": 0.6, "query": 0.15}
IMAGE_WEIGHTS = {"modality": 2.0, "colour": 1.0, "thumbnail": 0.3}
# The weight of the direction every vector shares, as a fraction of the modality weight: 0.8 for CLIP-style models,
# which puts unrelated text↔image cosines at ≈0.11 and matching ones at ≈0.27, as reported for CLIP.
SHARED_FRACTION = 0.4
OPAQUE_IMAGE_WEIGHT = 1.0  # an image the emulator cannot see (gs://): a hashed direction instead of a colour
COLOUR_TEMPERATURE = 6.0  # Lab units: the nearest prototype clearly dominates the soft assignment
THUMBNAIL_CONTRAST = 0.25  # below this thumbnail contrast, N shrinks instead of amplifying noise

COLOUR_SYNONYMS: dict[str, str] = {
    "grey": "gray", "silver": "gray", "violet": "purple", "lilac": "purple", "lavender": "purple",
    "magenta": "pink", "rose": "pink", "crimson": "red", "scarlet": "red", "maroon": "red",
    "azure": "blue", "navy": "blue", "indigo": "blue", "teal": "cyan", "turquoise": "cyan", "aqua": "cyan",
    "gold": "yellow", "golden": "yellow", "lemon": "yellow", "amber": "orange", "tan": "brown",
    "chocolate": "brown", "olive": "green", "lime": "green", "emerald": "green", "ivory": "white",
    "snow": "white", "ebony": "black", "charcoal": "black",
    # things whose colour a real model has learnt, so "banana" finds the yellow photo as it would live
    "banana": "yellow", "bananas": "yellow", "sunflower": "yellow", "tomato": "red", "tomatoes": "red",
    "strawberry": "red", "cherry": "red", "sea": "blue", "ocean": "blue", "sky": "blue", "grass": "green",
    "forest": "green", "leaf": "green", "leaves": "green", "moss": "green", "plum": "purple", "grape": "purple",
}
STOPWORDS = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the this to was were with "
    "what which who how show me find some any".split()
)
_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORD = re.compile(r"[^\W_]+")


def _generator(name: str) -> np.random.Generator:
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def _unit(v: Vector) -> Vector:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def _blocks(dim: int) -> tuple[tuple[int, int], ...]:
    edges = [e for e in BLOCK_EDGES if e < dim] + [dim]
    return tuple(zip([0, *edges[:-1]], edges, strict=True))


def _lab(rgb: NDArray[np.float64]) -> NDArray[np.float64]:
    """CIE L*a*b* (D65) of sRGB values in 0-255, shape (..., 3): distances there match what people see."""
    c = rgb / 255.0
    linear = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = linear @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


_PROTOTYPES_LAB = _lab(np.array(list(COLOURS.values()), dtype=np.float64))


class Space:
    """One model family's space in its full dimension ``dim``: structural vectors plus text and image maps."""

    # "shared" comes last, so adding it left the earlier vectors (orthonormalised in this order) as they were.
    STRUCTURE = ("modality:text", "modality:image", "query", *(f"colour:{c}" for c in COLOURS), "shared")

    def __init__(self, name: str, dim: int) -> None:
        self.name, self.dim = name, dim
        self._blocks = _blocks(dim)
        raw = np.stack([_generator(f"{name}:{dim}:{s}").standard_normal(dim) for s in self.STRUCTURE])
        self._units: list[Vector] = []  # per block: orthonormal rows of the structure inside that block
        structure = np.zeros_like(raw)
        for start, end in self._blocks:
            units = self._gram_schmidt(raw[:, start:end])
            self._units.append(units)
            structure[:, start:end] = units * np.sqrt((end - start) / dim)
        self.m_text, self.m_image, self.query = structure[0], structure[1], structure[2]
        self.colours = dict(zip(COLOURS, structure[3:-1], strict=True))
        self.shared = structure[-1]
        thumb = np.stack([self.direction(f"thumbnail:{i}") for i in range(8 * 8 * 3)])
        self._thumbnail_basis: Vector = thumb
        self._words: dict[str, Vector] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _gram_schmidt(rows: Vector) -> Vector:
        out: list[Vector] = []
        for row in rows:
            v = row.copy()
            for u in out:
                v -= (u @ v) * u
            out.append(_unit(v))
        return np.stack(out)

    def direction(self, name: str) -> Vector:
        """A unit vector seeded by ``name``, orthogonal to the structural vectors in every block."""
        v = _generator(f"{self.name}:{self.dim}:{name}").standard_normal(self.dim)
        for (start, end), units in zip(self._blocks, self._units, strict=True):
            v[start:end] -= units.T @ (units @ v[start:end])
        return _unit(v)

    def word(self, word: str) -> Vector:
        with self._lock:
            cached = self._words.get(word)
        if cached is None:
            cached = self.direction(f"word:{word}")
            with self._lock:
                if len(self._words) < 100_000:
                    self._words[word] = cached
        return cached

    def text(self, text: str, *, query: bool = False, modality: float = TEXT_WEIGHTS["modality"]) -> Vector:
        """The text vector (full dimension, unit norm); ``modality`` sets how far it sits from images."""
        colours: list[str] = []
        words: list[str] = []
        for token in _WORD.findall(text.lower()):
            token = COLOUR_SYNONYMS.get(token, token)
            if token in COLOURS:
                colours.append(token)
            elif token not in STOPWORDS:
                words.append(token)
        v = modality * (self.m_text + SHARED_FRACTION * self.shared)
        v = v + TEXT_WEIGHTS["colour"] * _unit(self._sum(self.colours[c] for c in colours))
        v = v + TEXT_WEIGHTS["words"] * _unit(self._sum(self.word(w) for w in words))
        if query:
            v = v + TEXT_WEIGHTS["query"] * self.query
        return _unit(v)

    def image(self, image: Image.Image, *, modality: float = IMAGE_WEIGHTS["modality"]) -> Vector:
        """The image vector (full dimension, unit norm) of a decoded picture."""
        small = np.asarray(to_rgb(image).resize((32, 32), Image.Resampling.BOX), dtype=np.float64)
        weights = colour_weights(small.reshape(-1, 3))
        colour = _unit(self._sum(w * c for w, c in zip(weights, self.colours.values(), strict=True)))
        thumbnail = small.reshape(8, 4, 8, 4, 3).mean(axis=(1, 3)) / 255.0
        z = (thumbnail - thumbnail.mean(axis=(0, 1))).ravel()  # structure, not the colour itself
        n = z @ self._thumbnail_basis
        n = n / max(float(np.linalg.norm(n)), THUMBNAIL_CONTRAST)
        v = modality * (self.m_image + SHARED_FRACTION * self.shared) + IMAGE_WEIGHTS["colour"] * colour
        return _unit(v + IMAGE_WEIGHTS["thumbnail"] * n)

    def opaque_image(self, key: str, *, modality: float = IMAGE_WEIGHTS["modality"]) -> Vector:
        """An image the emulator cannot look at (a ``gs://`` URI): the image modality plus a hashed direction."""
        v = modality * (self.m_image + SHARED_FRACTION * self.shared)
        return _unit(v + OPAQUE_IMAGE_WEIGHT * self.direction(f"uri:{key}"))

    def _sum(self, vectors: Iterable[Vector]) -> Vector:
        total = np.zeros(self.dim)
        for v in vectors:
            total = total + v
        return total


def colour_weights(pixels: NDArray[np.float64]) -> NDArray[np.float64]:
    """Soft assignment of a picture's dominant colour to the prototypes (one weight per colour, sum 1).

    The dominant colour is the mean of the pixels nearest the most common prototype, so a red car on a grey
    road counts as whichever covers more of the picture; a softmax over minus the distance then makes the nearest
    prototype dominate clearly while keeping close calls (orange-ish red) partly mixed.
    """
    lab = _lab(pixels)
    distances = np.linalg.norm(lab[:, None, :] - _PROTOTYPES_LAB[None, :, :], axis=-1)
    nearest = distances.argmin(axis=1)
    mode = int(np.bincount(nearest, minlength=len(COLOURS)).argmax())
    dominant = lab[nearest == mode].mean(axis=0)
    logits = -np.linalg.norm(_PROTOTYPES_LAB - dominant, axis=-1) / COLOUR_TEMPERATURE
    weights = np.exp(logits - logits.max())
    result: NDArray[np.float64] = weights / weights.sum()
    return result


@lru_cache(maxsize=32)
def get_space(name: str, dim: int) -> Space:
    """The (cached) space of one model family."""
    return Space(name, dim)


def count_tokens(text: str) -> int:
    """A rough token count (words and punctuation), used for ``usage`` and a model's text cut."""
    return len(_TOKEN.findall(text))


def cut_text(text: str, limit: int) -> str:
    """What a model that keeps only the first ``limit`` tokens of a text embeds of ``text`` (the server cuts)."""
    tokens = list(_TOKEN.finditer(text))
    return text if len(tokens) <= limit else text[: tokens[limit - 1].end()]


_QUERY_PROMPT = re.compile(r"^\s*task:\s*([^|]*?)\s*\|\s*query:\s?(.*)$", re.DOTALL | re.IGNORECASE)
_DOCUMENT_PROMPT = re.compile(r"^\s*title:\s*([^|]*?)\s*\|\s*text:\s?(.*)$", re.DOTALL | re.IGNORECASE)
QUERY_PROMPT_TASKS = frozenset({"search result", "question answering", "fact checking", "code retrieval"})


def strip_prompt(text: str) -> tuple[str, bool]:
    """What a prompt-prefixed text is about, and whether it is a query (prompt-prefix tasks, ``task: … | query: …``).

    ``task: search result | query: red`` is the query "red"; ``title: none | text: red`` the document "red" (a
    real title's words count too). The model reads the prefix, not its words: they would make every prefixed
    text alike. Unprefixed texts are documents.

    >>> strip_prompt("task: search result | query: a red car"), strip_prompt("title: none | text: the sea")
    (('a red car', True), ('the sea', False))
    """
    match = _QUERY_PROMPT.match(text)
    if match:
        return match.group(2), match.group(1).strip().lower() in QUERY_PROMPT_TASKS
    match = _DOCUMENT_PROMPT.match(text)
    if match:
        title = match.group(1).strip()
        return (match.group(2) if title.lower() in ("", "none") else f"{title} {match.group(2)}"), False
    return text, False


def embed_parts(spec: ModelSpec, parts: list[Vector], dimensions: int | None) -> list[float]:
    """One Content's vector: the normalised mean of its parts' (full-size) vectors, then truncated."""
    v = _unit(np.mean(np.stack(parts), axis=0))
    if dimensions is not None and dimensions != spec.dim:
        v = truncate(v, dimensions)
    return to_wire(v)


def part_vector(
    spec: ModelSpec,
    *,
    text: str | None = None,
    image: Image.Image | None = None,
    uri: str | None = None,
    query: bool = False,
) -> Vector:
    """The full-size vector of one part of a Content (text with its prompt prefix, a picture, or a file URI)."""
    space = get_space(spec.space, spec.dim)
    weight = spec.modality_weight
    if text is not None:
        words, prompted = strip_prompt(text) if spec.prompt_tasks else (text, False)
        return space.text(words, query=query or prompted, modality=weight)
    if image is not None:
        return space.image(image, modality=weight)
    if uri is not None:
        return space.opaque_image(uri, modality=weight)
    raise ValueError("give text, image or uri")


def truncate(v: Vector, dimensions: int) -> Vector:
    """Matryoshka-style: keep the first ``dimensions`` values and re-normalise."""
    return _unit(np.asarray(v[:dimensions], dtype=np.float64))


def unnormalize(v: Vector) -> Vector:
    """Scale ``v`` by a deterministic factor in [10, 20), like non-normalised answers some APIs give."""
    digest = hashlib.sha256(np.ascontiguousarray(v, dtype="<f8").tobytes()).digest()
    return v * (10.0 + 10.0 * int.from_bytes(digest[:4], "little") / 2**32)


def to_wire(v: Vector) -> list[float]:
    """The JSON floats the emulator sends: rounded to 8 digits (Python's correctly rounded ``round``)."""
    return [round(float(x), 8) for x in v]


def embed(
    spec: ModelSpec,
    *,
    text: str | None = None,
    image: Image.Image | None = None,
    gcs_uri: str | None = None,
    task: str | None = None,
    dimensions: int | None = None,
    normalized: bool = True,
) -> list[float]:
    """One already-validated input's answer, as the JSON floats the endpoint sends."""
    space = get_space(spec.space, spec.dim)
    dimensions = dimensions or spec.default_dim
    weight = spec.modality_weight
    if text is not None:
        if spec.text_tokens is not None:
            text = cut_text(text, spec.text_tokens)
        query = spec.is_query(task)
        if spec.prompt_tasks:
            text, query = strip_prompt(text)
        v = space.text(text, query=query, modality=weight)
    elif image is not None:
        v = space.image(image, modality=weight)
    elif gcs_uri is not None:
        v = space.opaque_image(gcs_uri, modality=weight)
    else:
        raise ValueError("give text, image or gcs_uri")
    if dimensions is not None and dimensions != spec.dim:
        v = truncate(v, dimensions)
    if not normalized:
        v = unnormalize(v)
    return to_wire(v)


MULTIVECTOR_MODALITY = 0.5  # a small modality gap, so that a query's words find the patches of their colour
PATCH_GRID = 4  # an image answers PATCH_GRID x PATCH_GRID patch rows, row by row


def multivector(
    spec: ModelSpec, *, text: str | None = None, image: Image.Image | None = None, query: bool = False
) -> list[list[float]]:
    """A multi-vector answer: one unit row per token of ``text`` or per patch of ``image``, as JSON floats.

    Rows live in a ``spec.multivector_dim``-wide space of their own: a token's row is the text vector of that
    token alone (so the word "red" in a query matches "red" in a document, and red patches), a patch's row
    the image vector of that crop of the picture.

    >>> from mmembed.testing.models import registered_models
    >>> spec = next(s for s in registered_models() if s.multivector_dim)
    >>> rows = multivector(spec, text="a red car")
    >>> len(rows), len(rows[0])
    (3, 128)
    """
    if spec.multivector_dim is None:
        raise ValueError(f"{spec.name} has no multi-vector output")
    space = get_space(f"{spec.space}:multivector", spec.multivector_dim)
    if text is not None:
        tokens = _TOKEN.findall(text) or [""]
        rows = [space.text(token, query=query, modality=MULTIVECTOR_MODALITY) for token in tokens]
    elif image is not None:
        rows = [space.image(patch, modality=MULTIVECTOR_MODALITY) for patch in _patches(image)]
    else:
        raise ValueError("give text or image")
    return [to_wire(row) for row in rows]


def _patches(image: Image.Image) -> list[Image.Image]:
    width, height = image.size
    xs = [round(i * width / PATCH_GRID) for i in range(PATCH_GRID + 1)]
    ys = [round(j * height / PATCH_GRID) for j in range(PATCH_GRID + 1)]
    return [
        image.crop((xs[i], ys[j], max(xs[i + 1], xs[i] + 1), max(ys[j + 1], ys[j] + 1)))
        for j in range(PATCH_GRID)
        for i in range(PATCH_GRID)
    ]


def emulator_vector(
    provider: str,
    model: str,
    *,
    text: str | None = None,
    image: Image.Image | bytes | None = None,
    task: str | None = None,
    dimensions: int | None = None,
    normalized: bool = True,
) -> NDArray[np.float64]:
    """The vector the emulator answers for one text or one image (exactly, as parsed from its JSON).

    ``image`` may be a PIL image or encoded bytes (decoded as the server decodes uploads). ``normalized=False``
    gives the scaled vectors of an endpoint that answers non-unit vectors.
    Raises ValueError for what the real API would refuse (unknown model, wrong modality, task or size).
    """
    spec = find_model(provider, model)
    if spec is None:
        raise ValueError(f"the emulator does not know {provider} model {model!r}")
    if (text is None) == (image is None):
        raise ValueError("give exactly one of text= or image=")
    modality = "text" if text is not None else "image"
    if modality not in spec.modalities:
        raise ValueError(f"{spec.name} does not embed {modality}")
    if task is not None and task not in spec.tasks:
        raise ValueError(f"{spec.name} does not accept task {task!r}")
    if dimensions is not None and (spec.dimensions is None or dimensions not in spec.dimensions):
        raise ValueError(f"{spec.name} cannot return {dimensions} dimensions")
    picture = decode_image(image) if isinstance(image, bytes) else image
    return np.array(embed(spec, text=text, image=picture, task=task, dimensions=dimensions, normalized=normalized))
