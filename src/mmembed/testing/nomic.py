"""The emulated Nomic Atlas endpoints: ``POST /v1/embedding/text`` and ``POST /v1/embedding/image``."""

from __future__ import annotations

from typing import Any, ClassVar

from .imagedata import ImageDataError, fetch_url, load_image
from .models import ModelSpec, find_model
from .space import count_tokens, embed
from .wire import ApiError, Endpoint, Incoming, Reply, Settings, bearer

__all__ = ["NomicImage", "NomicText"]

IMAGE_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})
TOKENS_PER_IMAGE = 196
LONG_TEXT_MODES = ("truncate", "mean")
_TASKS = frozenset({"search_document", "search_query", "classification", "clustering"})
_TEXT, _IMAGE = frozenset({"text"}), frozenset({"image"})
# A text model and the vision model trained into its space share one space name.
MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("nomic", "nomic-embed-text-v1.5", "nomic-v1.5", 768, _TEXT, _TASKS,
              frozenset({"search_query"}), range(64, 769), max_inputs=10),
    ModelSpec("nomic", "nomic-embed-text-v1", "nomic-v1", 768, _TEXT, _TASKS,
              frozenset({"search_query"}), None, max_inputs=10),
    ModelSpec("nomic", "nomic-embed-vision-v1.5", "nomic-v1.5", 768, _IMAGE, max_inputs=512),
    ModelSpec("nomic", "nomic-embed-vision-v1", "nomic-v1", 768, _IMAGE, max_inputs=512),
)


def _invalid(loc: tuple[str | int, ...], message: str, kind: str = "value_error") -> ApiError:
    """A 422 in FastAPI's shape: ``{"detail": [{"loc", "msg", "type"}]}``."""
    return ApiError(422, message, code=kind, loc=loc)


class _Nomic(Endpoint):
    provider: ClassVar[str] = "nomic"
    models: ClassVar[tuple[ModelSpec, ...]] = MODELS
    route: ClassVar[str]
    modality: ClassVar[str]

    def matches(self, path: str) -> bool:
        return path == self.route

    def error(self, err: ApiError, request_id: str) -> Reply:
        if err.loc is not None:
            detail: Any = [{"loc": list(err.loc), "msg": err.message, "type": err.code or "value_error"}]
        else:
            detail = err.message
        return Reply.json(err.status, {"detail": detail})

    def authenticate(self, req: Incoming, settings: Settings) -> None:
        token = bearer(req.headers)
        if not token:
            raise ApiError(401, "Not authenticated: send the header 'Authorization: Bearer <api key>'")
        if not settings.accepts(token):
            raise ApiError(401, "Invalid API key")

    def model(self, name: object) -> ModelSpec:
        if not isinstance(name, str):
            raise _invalid(("body", "model"), "Field required", "missing")
        spec = find_model("nomic", name)
        if spec is None:
            raise ApiError(400, f"Unknown model {name!r}")
        if self.modality not in spec.modalities:
            raise ApiError(400, f"Model {name!r} cannot embed {self.modality}s at {self.route}")
        return spec

    def drop_one(self, payload: Any) -> Any:
        return {**payload, "embeddings": payload["embeddings"][:-1]}

    @staticmethod
    def answer(model: str, embeddings: list[list[float]], tokens: int) -> Reply:
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return Reply.json(200, {"embeddings": embeddings, "model": model, "usage": usage})


class NomicText(_Nomic):
    """``{texts, model, task_type?, dimensionality?, long_text_mode?}`` → ``{embeddings, model, usage}``."""

    route = "/v1/embedding/text"
    modality = "text"

    def handle(self, req: Incoming, settings: Settings) -> Reply:
        self.authenticate(req, settings)
        if req.body_error is not None:
            raise _invalid(("body", 0), req.body_error, "json_invalid")
        body = req.json
        if not isinstance(body, dict):
            raise _invalid(("body",), "Input should be a valid dictionary", "dict_type")
        if "texts" not in body:
            raise _invalid(("body", "texts"), "Field required", "missing")
        texts = body["texts"]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise _invalid(("body", "texts"), "Input should be a valid list of strings", "list_type")
        if not texts:
            raise _invalid(("body", "texts"), "List should have at least 1 item after validation, not 0",
                           "too_short")
        spec = self.model(body.get("model"))
        task = body.get("task_type", "search_document")
        if task not in spec.tasks:
            allowed = ", ".join(repr(t) for t in sorted(spec.tasks))
            raise _invalid(("body", "task_type"), f"Input should be {allowed}", "enum")
        dimensions = self._dimensions(spec, body.get("dimensionality"))
        if body.get("long_text_mode", "truncate") not in LONG_TEXT_MODES:
            raise _invalid(("body", "long_text_mode"), "Input should be 'truncate' or 'mean'", "enum")
        if len(texts) > spec.max_inputs:
            raise ApiError(400, f"Too many texts: {len(texts)}; at most {spec.max_inputs} per request")
        vectors = [embed(spec, text=t, task=task, dimensions=dimensions) for t in texts]
        return self.answer(body["model"], vectors, sum(count_tokens(t) for t in texts))

    @staticmethod
    def _dimensions(spec: ModelSpec, value: object) -> int | None:
        if value is None:
            return None
        if spec.dimensions is None:
            raise _invalid(("body", "dimensionality"), f"dimensionality is not supported by {spec.name}")
        if isinstance(value, bool) or not isinstance(value, int) or value not in spec.dimensions:
            low, high = min(spec.dimensions), max(spec.dimensions)
            raise _invalid(("body", "dimensionality"), f"dimensionality must be an integer from {low} to {high}")
        return value


class NomicImage(_Nomic):
    """multipart ``model`` + one ``images`` part per image, or urlencoded ``model`` + repeated ``urls``."""

    route = "/v1/embedding/image"
    modality = "image"

    def handle(self, req: Incoming, settings: Settings) -> Reply:
        self.authenticate(req, settings)
        if req.body_error is not None:
            raise ApiError(400, req.body_error)
        sources: list[bytes | str]
        if req.content_type == "multipart/form-data":
            sources = [data for name, _, _, data in req.files if name == "images"]
        elif req.content_type == "application/x-www-form-urlencoded":
            sources = list(req.form.get("urls", []))
        else:
            raise ApiError(400, "Send multipart/form-data (model + one 'images' part per image) "
                                "or application/x-www-form-urlencoded (model + repeated 'urls')")
        models = req.form.get("model")
        spec = self.model(models[0] if models else None)
        if not sources:
            raise ApiError(400, "No images given: send 'images' file parts or 'urls' fields")
        if len(sources) > spec.max_inputs:
            raise ApiError(400, f"Too many images: {len(sources)}; at most {spec.max_inputs} per request")
        vectors = []
        for i, source in enumerate(sources):
            try:
                data = fetch_url(source) if isinstance(source, str) else source
                image = load_image(data, IMAGE_FORMATS, f"image {i}")
            except ImageDataError as exc:
                raise ApiError(400, str(exc)) from None
            vectors.append(embed(spec, image=image))
        return self.answer(spec.name, vectors, TOKENS_PER_IMAGE * len(sources))
