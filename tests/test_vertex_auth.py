"""Vertex credentials: an API key goes in a header; without one, google-auth credentials (ADC) are refreshed."""

from __future__ import annotations

from typing import Any

import pytest

from mmembed import ConfigurationError, Embedder
from mmembed.testing import Emulator


class FakeCredentials:
    """Stands in for google.auth credentials: invalid until refreshed, then carries a token."""

    def __init__(self) -> None:
        self.refreshes = 0
        self.token: str | None = None

    @property
    def valid(self) -> bool:
        return self.token is not None

    def refresh(self, request: Any) -> None:
        self.refreshes += 1
        self.token = f"ya29.test-token-{self.refreshes}"

    def expire(self) -> None:
        self.token = None


def test_explicit_credentials_are_refreshed_and_sent_as_bearer(mmembed_emulator: Emulator) -> None:
    creds = FakeCredentials()
    embedder = Embedder("vertex", base_url=mmembed_emulator.url, credentials=creds, project_id="p")
    embedder.embed(["one"])
    embedder.embed(["two"])
    assert creds.refreshes == 1  # a valid token is reused
    creds.expire()
    embedder.embed(["three"])
    assert creds.refreshes == 2  # an expired one is refreshed before the request
    auth = [r.headers.get("authorization") for r in mmembed_emulator.requests]
    assert auth == ["Bearer ya29.test-token-1", "Bearer ya29.test-token-1", "Bearer ya29.test-token-2"]
    assert all("x-goog-api-key" not in r.headers for r in mmembed_emulator.requests)


def test_application_default_credentials_and_their_project(
    mmembed_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import google.auth

    creds = FakeCredentials()
    seen: dict[str, Any] = {}

    def fake_default(scopes: list[str] | None = None, **_: Any) -> tuple[FakeCredentials, str]:
        seen["scopes"] = scopes
        return creds, "adc-project"

    monkeypatch.setattr(google.auth, "default", fake_default)
    embedder = Embedder("vertex", base_url=mmembed_emulator.url, location="europe-west4")
    embedder.embed(["hello"])
    assert seen["scopes"] == ["https://www.googleapis.com/auth/cloud-platform"]
    (request,) = mmembed_emulator.requests
    assert "/projects/adc-project/locations/europe-west4/" in request.path
    assert request.headers["authorization"] == "Bearer ya29.test-token-1"


def test_no_credentials_at_all_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    def no_adc(**_: Any) -> None:
        raise DefaultCredentialsError("none")

    monkeypatch.setattr(google.auth, "default", no_adc)
    with pytest.raises(ConfigurationError) as info:
        Embedder("vertex", project_id="p")
    assert "GOOGLE_API_KEY" in str(info.value) and "api_key=" in str(info.value)


def test_default_host_follows_location() -> None:
    assert Embedder("vertex", api_key="k", project_id="p").provider.base_url == (
        "https://us-central1-aiplatform.googleapis.com"
    )
    assert Embedder("vertex", api_key="k", project_id="p", location="global").provider.base_url == (
        "https://aiplatform.googleapis.com"
    )
