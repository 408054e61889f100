"""The provider contract: who and where. A provider owns identity, auth, host(s), HTTP client and rate windows.

What its models take and what a request looks like belongs to model families (:class:`ModelFamily`, in
:mod:`mmembed.providers._family`, exported here); a provider lists the families it hosts (``families``), and the
pipeline talks to the provider, which hands each call to the family of the model in use. A provider module declares::

    class AcmeProvider(Provider):
        name = "acme"                      # the registry key, Chroma's mmembed_acme, the CLI's --provider acme
        title = "Acme"                     # AcmeMultimodalEmbeddingFunction, AcmeMultiModalEmbedding, ...
        env_var = "ACME_API_KEY"
        default_base_url = "https://api.acme.example"
        official_hosts = ("api.acme.example",)
        families = (AcmeFamily,)           # or Hosting(AcmeFamily, concurrency=8, wire={...})
        default_model = "acme-embed-1"
        emulator = ("mmembed.testing.acme:Acme",)  # its offline emulator endpoint(s)

and overrides :meth:`Provider.headers` when its auth is not a Bearer key, :meth:`Provider.error_message` and
:meth:`Provider.request_id` for its error body. Its own options are a ``TypedDict`` (``settings``); its
families' options come with them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import requests

from ..download import DownloadPolicy, download_session
from ..errors import ConfigurationError
from ..images import ImageSpec
from ..inputs import InterleavedItem, Item, MediaItem
from ..options import ModelOptions, OptionSpec, specs_of
from ..transport import RateLimiter, RetryPolicy, Transport, default_retry_after
from ._family import Hosting, ModelFamily
from ._types import ALL_KINDS, TEXT_IMAGE, ModelInfo, ProviderOptions, Ready, Task, indexed_data, json_body, normalise

__all__ = [
    "ALL_KINDS",
    "TEXT_IMAGE",
    "Hosting",
    "ModelFamily",
    "ModelInfo",
    "Provider",
    "ProviderOptions",
    "Ready",
    "Task",
    "error_body",
    "indexed_data",
    "json_body",
    "normalise",
]

T = TypeVar("T")


class Provider:
    """Base class of providers: identity, auth, hosts, client and rate windows; requests are its families'."""

    name: ClassVar[str]
    title: ClassVar[str]  # names the adapter classes: f"{title}MultimodalEmbeddingFunction", ...
    env_var: ClassVar[str]  # default environment variable holding the key
    fallback_env_vars: ClassVar[tuple[str, ...]] = ()  # read, in order, when env_var is unset
    key_required: ClassVar[bool] = True
    #: Request headers that carry credentials (scrubbed from recordings; never logged).
    secret_headers: ClassVar[tuple[str, ...]] = ("Authorization",)
    #: Other environment variables it reads (a cloud project or region), so tests can keep a developer's out.
    config_env_vars: ClassVar[tuple[str, ...]] = ()
    default_base_url: ClassVar[str]
    #: Hosts the provider serves its API from (``*`` is one DNS label): a function rebuilt from a stored config
    #: may send the key there (over https), besides the host of a literal default_base_url (see mmembed._trust).
    official_hosts: ClassVar[tuple[str, ...]] = ()
    default_concurrency: ClassVar[int] = 4
    default_requests_per_minute: ClassVar[float | None] = None
    # The span the provider counts requests over: its quota is ``requests_per_minute * rate_window / 60``
    # in any such span. Bursts of ``max_concurrency`` go out at once; longer runs keep the average rate.
    rate_window: ClassVar[float] = 60.0
    #: The provider's own options (a ``TypedDict``); ``model`` by default.
    settings: ClassVar[type] = ModelOptions
    #: The model families it hosts; a model no family lists goes to the first one.
    families: ClassVar[tuple[type[ModelFamily] | Hosting, ...]] = ()
    default_model: ClassVar[str]
    #: The offline emulator's endpoints for this provider ("module:Class" paths under mmembed.testing), which the
    #: Emulator serves; their ``models`` rows say what the emulated API accepts.
    emulator: ClassVar[tuple[str, ...]] = ()
    #: Options a test against the emulator passes besides ``api_key`` and ``base_url`` (e.g. a project id).
    test_options: ClassVar[Mapping[str, Any]] = {}
    # Derived from the declarations (see __init_subclass__): what adapters and the Chroma config read.
    option_names: ClassVar[tuple[str, ...]] = ()
    model_keys: ClassVar[tuple[str, ...]] = ()  # persisted, frozen once a collection holds vectors
    extra_keys: ClassVar[tuple[str, ...]] = ()  # other persisted options

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        specs = cls.own_option_specs()
        cls.option_names = tuple(spec.name for spec in specs)
        cls.model_keys = tuple(spec.name for spec in specs if spec.model)
        cls.extra_keys = tuple(spec.name for spec in specs if spec.persisted and not spec.model)

    @classmethod
    def own_option_specs(cls) -> list[OptionSpec]:
        """The provider's own options, then its families' (each once)."""
        seen: dict[str, OptionSpec] = {}
        for spec in (*specs_of(cls.settings), *(s for h in cls.hostings() for s in h.family.option_specs())):
            seen.setdefault(spec.name, spec)
        return list(seen.values())

    @classmethod
    def hostings(cls) -> tuple[Hosting, ...]:
        return tuple(entry if isinstance(entry, Hosting) else Hosting(entry) for entry in cls.families)

    @classmethod
    def hosting_for(cls, model: str) -> Hosting:
        """How the family that serves ``model`` is hosted here (unknown models: the first family)."""
        hostings, base = cls.hostings(), cls.base_model(model)
        return next((h for h in hostings if h.family.serves(base)), hostings[0])

    @classmethod
    def base_model(cls, model: str) -> str:
        """The id a family lists for ``model``: the model itself, or what a host's alias of it stands for (a
        cloud's cross-region profile id, say). The model is still sent exactly as given."""
        return model

    @classmethod
    def multivector_models(cls) -> list[str]:
        """The models hosted here that give multi-vector output (one row per token or image patch)."""
        return [model for h in cls.hostings() for model in h.family.multivector_models() if h.lists(model)]

    @classmethod
    def models_taking(cls, kind: str) -> list[str]:
        """The known models of this provider that take ``kind`` natively (for error messages)."""
        return [model for h in cls.hostings() for model in h.family.models_taking(kind) if h.lists(model)]

    def __init__(self, options: ProviderOptions, **settings: Any) -> None:
        self.options = options
        model, rest = self.choose_model(dict(settings))
        own = {spec.name for spec in specs_of(self.settings)}
        mine = {key: rest.pop(key) for key in list(rest) if key in own}
        self.hosting = self.hosting_for(model)
        self.configure(**mine)
        self.api_key_env_var, self._api_key = self._resolve_key()
        self.base_url = (options.base_url or self.default_url()).rstrip("/")
        self.concurrency = options.max_concurrency or self.hosting.concurrency or self.default_concurrency
        if self.concurrency < 1:
            raise ConfigurationError(f"{self.name}: max_concurrency must be at least 1")
        self.transport = self._transport()
        # The caller's timeout bounds client-side downloads too (never above the policy's own default).
        self.download_policy = DownloadPolicy(
            allow_private=options.allow_private_urls, timeout=min(options.timeout, DownloadPolicy.timeout)
        )
        self._downloads: requests.Session | None = None  # made on the first download, on a worker thread
        self._download_lock = threading.Lock()
        # An adapter passes every declared option: another family's, left at its default, is not this one's
        # (given a value, it reaches the family, which refuses it).
        own = {spec.name for spec in self.hosting.family.option_specs()}
        defaults = {s.name: s.default for h in self.hostings() for s in h.family.option_specs() if s.name not in own}
        rest = {k: v for k, v in rest.items() if k not in defaults or v not in (None, defaults[k])}
        self.family = self.hosting.family(self, model, self.hosting.wire, **rest)

    # -- hooks a provider may override ----------------------------------------------------------------
    def choose_model(self, settings: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The model asked for (or the default) and the settings left for the provider and its family."""
        return settings.pop("model", None) or self.default_model, settings

    def configure(self, **settings: Any) -> None:
        """Take the provider's own options (declared in ``settings``); the default stores them as attributes."""
        for spec in specs_of(self.settings):
            if not spec.model:
                value = settings.get(spec.name)
                setattr(self, spec.name, value if value is not None else spec.default)

    def default_url(self) -> str:
        """Scheme and host when the user gives no ``base_url``."""
        return self.default_base_url

    def headers(self) -> Mapping[str, str]:
        """The auth headers of one attempt (called per attempt, so credentials may refresh)."""
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def model_path(self, model: str, path: str) -> str:
        """Where a request of ``model`` goes: the family's own ``path``, unless the host routes by model in the
        URL (then it says how)."""
        return path

    def request_cap(self, what: str) -> int | None:
        """A cap the host puts on how many of ``what`` (e.g. ``"images"``) one request carries (None: none)."""
        return None

    def post(self, path: str, parse: Callable[[requests.Response], T], **body: Any) -> T:
        """POST ``body`` (``json=``, ``data=`` or ``files=``) to ``path`` with this provider's auth and retries."""
        return self.transport.post(self.url(path), parse, headers=self.headers, **body)

    def get(self, path: str, parse: Callable[[requests.Response], T]) -> T:
        """GET ``path`` (an asynchronous job's state) with this provider's auth and retries."""
        return self.transport.post(self.url(path), parse, headers=self.headers, method="GET")

    def describe_error(self, response: requests.Response) -> tuple[str, str | None]:
        """Message and request id of an error response: :meth:`error_message` and :meth:`request_id` of its JSON
        object (the status line when it has none, or no message)."""
        body = error_body(response)
        message = self.error_message(body, response) if body is not None else None
        return message or f"HTTP {response.status_code} {response.reason or ''}".strip(), self.request_id(
            response, body or {})

    def error_message(self, body: dict[str, Any], response: requests.Response) -> str | None:
        """The message of an error's JSON object in this provider's format (default: ``detail``)."""
        detail = body.get("detail")
        return str(detail) if detail else None

    def request_id(self, response: requests.Response, body: dict[str, Any]) -> str | None:
        """The id the provider gave the failed request (default: the ``x-request-id`` header)."""
        return response.headers.get("x-request-id")

    def is_auth_error(self, response: requests.Response) -> bool:
        """Whether an error response means the credentials were refused (401/403; never retried)."""
        return response.status_code in (401, 403)

    def retry_after(self, response: requests.Response) -> float | None:
        """Seconds an error response asks the client to wait before retrying (default: ``Retry-After``)."""
        return default_retry_after(response)

    # -- setup ------------------------------------------------------------------------------------------
    def _resolve_key(self) -> tuple[str, str | None]:
        options = self.options
        names = (options.api_key_env_var,) if options.api_key_env_var else (self.env_var, *self.fallback_env_vars)
        found = next((name for name in names if os.environ.get(name)), None)
        key = options.api_key or (os.environ.get(found) if found else None)
        if key is None and self.key_required:
            raise ConfigurationError(
                f"{self.name}: no API key; set the {' or '.join(names)} environment variable "
                "or pass api_key=... (or api_key_env_var=... to read another variable)"
            )
        return found or names[0], key

    def _transport(self) -> Transport:
        options = self.options
        rpm = options.requests_per_minute or self.hosting.requests_per_minute or self.default_requests_per_minute
        return Transport(
            self.name,
            timeout=options.timeout,
            retry=RetryPolicy(max_retries=max(0, options.max_retries)),
            limiter=options.rate_limiter or RateLimiter(rpm, window=self.rate_window, burst=self.concurrency),
            pool_size=self.concurrency,
            describe_error=self.describe_error,
            is_auth_error=self.is_auth_error,
            retry_after=self.retry_after,
        )

    def download_session(self) -> requests.Session:
        with self._download_lock:
            if self._downloads is None:
                self._downloads = download_session(self.download_policy)
            return self._downloads

    def close(self) -> None:
        self.transport.close()
        with self._download_lock:
            if self._downloads is not None:
                self._downloads.close()
                self._downloads = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(models={self.model_names()!r}, dimensions={self.dimensions!r}, "
            f"base_url={self.base_url!r}, api_key_env_var={self.api_key_env_var!r})"
        )

    def persisted_settings(self) -> dict[str, Any]:
        """The resolved values of the options a Chroma config keeps (models in use, project, templates...)."""
        models = self.model_names()
        values: dict[str, Any] = {key: models[key] for key in self.model_keys}
        for key in self.extra_keys:
            values[key] = getattr(self, key) if hasattr(self, key) else getattr(self.family, key, None)
        return values

    # -- the pipeline's view: the family of the model in use -------------------------------------------
    @property
    def dimensions(self) -> int | None:
        return self.family.dimensions

    def model_names(self) -> dict[str, str]:
        return self.family.model_names()

    def image_model(self) -> ModelInfo:
        return self.family.image_model()

    def route(self, item: Item) -> str:
        return self.family.route(item)

    def cap(self, route: str) -> int:
        return self.family.cap(route)

    def fits(self, batch: Sequence[Item], item: Item, route: str) -> bool:
        return self.family.fits(batch, item, route)

    def prepare(self, item: Item) -> Ready:
        return self.family.prepare(item)

    def prepare_media(self, item: MediaItem) -> Ready:
        return self.family.prepare_media(item)

    def send(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        return self.family.send(route, batch, task)

    def send_multi(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        return self.family.send_multi(route, batch, task)

    def multivector_width(self) -> int | None:
        return self.family.multivector_width()

    def multivector_only(self) -> bool:
        return self.family.multivector_only()

    def model_for(self, item: Item) -> str:
        return self.family.model_for(item)

    def task_key(self, item: Item, task: Task) -> str:
        return self.family.task_key(item, task)

    def output_dimensions(self) -> int | None:
        return self.family.output_dimensions()

    def native_kinds(self) -> frozenset[str]:
        return self.family.native_kinds()

    def takes_interleaved(self, item: InterleavedItem) -> bool:
        return self.family.takes_interleaved(item)

    def clips_video(self) -> bool:
        return self.family.clips_video()

    def clips_audio(self) -> bool:
        return self.family.clips_audio()

    def media_seconds(self) -> float | None:
        return self.family.media_seconds

    def reads_page_text(self) -> bool:
        return self.family.reads_page_text()

    def image_spec(self) -> ImageSpec:
        return self.family.image_spec()

    def finish(self, vectors: Sequence[Any], expected: int) -> list[np.ndarray]:
        return self.family.finish(vectors, expected)

    def indexed_parser(self, expected: int) -> Callable[[requests.Response], list[np.ndarray]]:
        return self.family.indexed_parser(expected)


def error_body(response: requests.Response) -> dict[str, Any] | None:
    """An error response's JSON object, or None when its body is not one."""
    try:
        body: Any = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
