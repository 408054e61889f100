"""The emulator's endpoints come from the provider registry: a provider declares its endpoint(s) beside it.

A plugin with its own endpoint is served, searched and configured like a built-in one (``<provider>_<option>``);
a plugin that subclasses a built-in provider is served by that provider's endpoint, once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import requests

from mmembed import Embedder
from mmembed.providers import BUILTINS, PROVIDERS, JinaProvider
from mmembed.testing import Emulator, ModelSpec
from mmembed.testing.models import endpoint_classes, endpoint_providers, find_model
from mmembed.testing.wire import ApiError, Endpoint, Incoming, Reply, Settings

ACME_ROW = ModelSpec("acme", "acme-embed-1", "acme-embed-1", 64, frozenset({"text"}), max_inputs=4)


class AcmeEndpoint(Endpoint):
    """A plugin's endpoint: ``POST /acme/embed`` ``{"texts": [...]}`` -> ``{"vectors": [...]}``."""

    provider: ClassVar[str] = "acme"
    models: ClassVar[tuple[ModelSpec, ...]] = (ACME_ROW,)

    def __init__(self, *, greeting: str = "hello") -> None:
        self.greeting = greeting

    def matches(self, path: str) -> bool:
        return path == "/acme/embed"

    def error(self, err: ApiError, request_id: str) -> Reply:
        return Reply.json(err.status, {"error": err.message})

    def handle(self, req: Incoming, settings: Settings) -> Reply:
        return Reply.json(200, {"greeting": self.greeting, "model": ACME_ROW.name})

    def drop_one(self, payload: Any) -> Any:
        return payload


class AcmeProvider(JinaProvider):
    """A plugin provider with an endpoint of its own (its wire is Jina's; only the registration matters here)."""

    name: ClassVar[str] = "acme"
    title: ClassVar[str] = "Acme"
    env_var: ClassVar[str] = "ACME_API_KEY"
    emulator: ClassVar[tuple[str, ...]] = ("test_emulator_registry:AcmeEndpoint",)


class JinaResellerProvider(JinaProvider):
    """A plugin that subclasses a built-in provider and sets only its identity: served by Jina's endpoint."""

    name: ClassVar[str] = "jinaresell"
    title: ClassVar[str] = "JinaResell"
    env_var: ClassVar[str] = "JINARESELL_API_KEY"


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The registry with the two plugins above besides the built-ins (as entry points would add them)."""
    monkeypatch.setattr(PROVIDERS, "_builtins", {
        **BUILTINS,
        "acme": "test_emulator_registry:AcmeProvider",
        "jinaresell": "test_emulator_registry:JinaResellerProvider",
    })
    PROVIDERS.reload()
    yield
    monkeypatch.undo()
    PROVIDERS.reload()


def test_endpoints_are_the_registered_providers_declarations() -> None:
    declared = {path for cls in PROVIDERS.values() for path in cls.emulator}
    classes = endpoint_classes()
    assert {f"{cls.__module__}:{cls.__name__}" for cls in classes} == declared
    assert set(endpoint_providers()) == set(PROVIDERS)  # every built-in brings its endpoint(s)
    for cls in classes:  # every row is its endpoint's provider's
        assert all(spec.provider == cls.provider for spec in cls.models)


def test_a_plugin_endpoint_is_served_configured_and_searched(plugins: None) -> None:
    assert find_model("acme", "acme-embed-1") == ACME_ROW
    assert "acme" in endpoint_providers()
    with Emulator(acme_greeting="hi", jina_unnormalized=True) as emu:
        answer = requests.post(f"{emu.url}/acme/embed", json={"texts": ["x"]}, timeout=10)
        assert answer.json() == {"greeting": "hi", "model": "acme-embed-1"}
        assert emu.requests[-1].provider == "acme"
        emu.inject("500", provider="acme")  # a registered endpoint provider
        assert requests.post(f"{emu.url}/acme/embed", json={}, timeout=10).status_code == 500
    with pytest.raises(TypeError, match="acme_colour"):
        Emulator(acme_colour="red")  # the endpoint takes no colour=


def test_a_subclass_of_a_builtin_is_served_by_its_endpoint_once(plugins: None) -> None:
    paths = [f"{cls.__module__}:{cls.__name__}" for cls in endpoint_classes()]
    assert paths.count("mmembed.testing.jina:Jina") == 1
    assert "jinaresell" not in endpoint_providers()  # its traffic is Jina's
    with Emulator() as emu:
        with pytest.raises(ValueError, match="jinaresell"):
            emu.inject("500", provider="jinaresell")
        embedder = Embedder("jinaresell", api_key="k", base_url=emu.url, max_retries=0)
        assert embedder.embed(["a red car"]).shape == (1, 1024)
        assert [r.provider for r in emu.requests] == ["jina"]
        embedder.close()


def test_provider_options_are_routed_by_prefix() -> None:
    with pytest.raises(TypeError, match="nobody_knob"):
        Emulator(nobody_knob=1)
    with pytest.raises(TypeError, match="jina_volume"):
        Emulator(jina_volume=11)
