"""Chroma's own conventions, as Chroma 1.5.9's test suite checks them, for every registered provider's function.

Chroma ships its tests in the wheel (``chromadb/test/``), but importing them needs Chroma's development
dependencies, which are not chromadb's install requirements: ``chromadb/test/conftest.py`` imports
``hypothesis``, ``fastapi`` and ``uvicorn``, ``ef/test_multimodal_ef.py`` imports ``hypothesis`` through
``test/property/strategies.py``, and the configuration tests take Chroma's ``client`` / ``client_factories``
fixtures from that conftest. When they can be imported (``pip install hypothesis fastapi uvicorn``),
:func:`test_chromas_own_multimodal_test` runs Chroma's ``test_multimodal`` itself with our function in place of
its hashing one. Everywhere else the assertions of these Chroma tests are reproduced, one test each, with our
functions in place of Chroma's ``CustomEmbeddingFunction`` / ``CustomEmbeddingFunction2``:

- ``ef/test_multimodal_ef.py::test_multimodal`` (documents and images in one collection, queries of each);
- ``ef/test_custom_ef.py::test_custom_ef_registration`` and ``ef/test_ef.py`` (registered, not a built-in);
- ``configurations/test_collection_configuration.py``: ``test_ef_with_config_exists_with_ef_valid``,
  ``test_create_ef_with_config_exists_with_ef_invalid``, ``test_get_or_create_ef_with_config_exists_with_ef_invalid``,
  ``test_get_collection_ef_with_config_exists_with_ef_invalid``, ``test_get_or_create_after_create_with_ef``,
  ``test_configuration_persistence``, ``test_get_collection_with_invalid_configuration``;
- the refusals Chroma's own functions make as ``ValueError``: ``validate_config_update`` on a model or size change
  (``collection.modify(configuration=...)``), and a reopened collection whose key variable is unset.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from chromadb.api.shared_system_client import SharedSystemClient
from chromadb.config import Settings
from chromadb.utils.embedding_functions import get_builtins, known_embedding_functions

from conftest import CANARY_KEY, IMAGE_PROVIDERS, gives
from mmembed.chroma import MultimodalEmbeddingFunction, function_class
from mmembed.providers import PROVIDERS
from mmembed.testing import Emulator

NAMES = sorted(PROVIDERS)  # every registered provider, so a new one is checked by existing
SETTINGS = Settings(anonymized_telemetry=False, allow_reset=True)
# Chroma's documents are long strings of numbers: over Vertex's 32 tokens, which it says once.
pytestmark = pytest.mark.filterwarnings("ignore::mmembed.TextTooLongWarning")
SMALLER = 256  # dimensions every provider's default model can give


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for cls in PROVIDERS.values():
        monkeypatch.setenv(cls.env_var, CANARY_KEY)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test-project")


def make(name: str, emulator: Emulator, **options: Any) -> MultimodalEmbeddingFunction:
    options.setdefault("requests_per_minute", 60_000)
    for key, value in PROVIDERS[name].test_options.items():
        options.setdefault(key, value)
    return function_class(name)(base_url=emulator.url_for(name), **options)


@pytest.fixture
def client() -> Iterator[chromadb.ClientAPI]:
    client = chromadb.EphemeralClient(settings=SETTINGS)
    client.reset()
    yield client
    client.reset()
    client.clear_system_cache()  # other tests' ephemeral clients have other settings


def random_image() -> np.ndarray:
    return np.random.randint(0, 255, size=(10, 10, 3), dtype=np.int64)


# -- registration (ef/test_custom_ef.py, ef/test_ef.py) ----------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_registered_under_its_own_name(name: str) -> None:
    cls = function_class(name)
    assert known_embedding_functions[f"mmembed_{name}"] is cls
    assert cls.__name__ not in get_builtins() and cls.name() == f"mmembed_{name}"


# -- ef/test_multimodal_ef.py::test_multimodal ----------------------------------------------------------------


@pytest.mark.parametrize("name", IMAGE_PROVIDERS)
def test_multimodal_as_chroma_tests_it(
    name: str, env: None, mmembed_emulator: Emulator, client: chromadb.ClientAPI
) -> None:
    ef = make(name, mmembed_emulator)
    collection = client.create_collection("multimodal_collection", embedding_function=ef)  # type: ignore[arg-type]
    state = np.random.get_state()
    np.random.seed(0)
    n = 10
    image_ids, images = [str(i) for i in range(n)], [random_image() for _ in range(n)]
    document_ids = [str(i) for i in range(n, 2 * n)]
    documents = [str(random_image()) for _ in range(n)]
    everything = list(ef(images)) + list(ef(documents))
    with pytest.raises(ValueError, match=r"Exactly one of .* must be provided in add\."):
        collection.add(ids=image_ids[0], documents=documents[0], images=images[0])
    collection.add(ids=document_ids, documents=documents)
    collection.add(ids=image_ids, images=images)
    got = collection.get(include=["documents"])
    assert len(got["ids"]) == 2 * n and got["documents"] is not None
    for i, id_ in enumerate(got["ids"]):
        assert got["documents"][i] == (documents[document_ids.index(id_)] if id_ in document_ids else None)
    with pytest.raises(ValueError):
        collection.query(query_images=[random_image()], query_texts=["x"])
    for query in ({"query_images": [random_image()]}, {"query_texts": [str(random_image())]}):
        (item,) = next(iter(query.values()))
        vector = np.asarray(ef.embed_query([item])[0])
        distances = 1 - np.asarray(everything) @ vector  # cosine, the functions' default space
        nearest = [(image_ids + document_ids)[i] for i in np.argsort(distances, kind="stable")[:3]]
        result = collection.query(**query, n_results=3, include=["documents"])  # type: ignore[arg-type]
        assert result["ids"][0] == nearest
    np.random.set_state(state)


@pytest.mark.parametrize("name", NAMES)
def test_chromas_own_multimodal_test(
    name: str, env: None, mmembed_emulator: Emulator, client: chromadb.ClientAPI
) -> None:
    try:
        chroma_tests = importlib.import_module("chromadb.test.ef.test_multimodal_ef")
    except ImportError as exc:
        pytest.skip(f"Chroma's own tests need its dev dependencies ({exc.name} is not installed)")
    ef = make(name, mmembed_emulator)
    collection = client.create_collection("multimodal_collection", embedding_function=ef)  # type: ignore[arg-type]
    chroma_tests.test_multimodal(collection, default_ef=ef)


# -- configurations/test_collection_configuration.py ------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_ef_with_config_exists_with_ef_valid(
    name: str, env: None, mmembed_emulator: Emulator, client: chromadb.ClientAPI
) -> None:
    ef = make(name, mmembed_emulator)
    config = ef.get_config()
    assert CANARY_KEY not in str(config)
    for open_ in (client.create_collection, client.get_or_create_collection):
        coll = open_(
            "coll", embedding_function=ef,  # type: ignore[arg-type]
            configuration={"hnsw": {"space": "cosine"}, "embedding_function": make(name, mmembed_emulator)},
        )
        stored = coll.configuration.get("embedding_function")
        assert stored is not None and stored.name() == f"mmembed_{name}" and stored.get_config() == config
    stored = client.get_collection("coll").configuration.get("embedding_function")
    assert stored is not None and stored.get_config() == config


@pytest.mark.parametrize("name", NAMES)
def test_a_different_function_is_refused_with_value_error(
    name: str, env: None, mmembed_emulator: Emulator, client: chromadb.ClientAPI
) -> None:
    ours = make(name, mmembed_emulator)
    # Another size, or (a model with one size) the same function pointed at another model name.
    if gives(name, SMALLER):
        other_space: dict[str, Any] = {"dimensions": SMALLER}
    elif name == "twelvelabs":
        other_space = {"model": "marengo3.5"}
    else:
        pytest.skip(f"the default model of {name} cannot give {SMALLER} dimensions")
    smaller = make(name, mmembed_emulator, **other_space)
    other = function_class("jina" if name != "jina" else "nomic")(base_url=mmembed_emulator.url)
    with pytest.raises(ValueError):  # test_create_ef_with_config_exists_with_ef_invalid
        client.create_collection(
            "coll", embedding_function=ours, configuration={"embedding_function": other}  # type: ignore[arg-type]
        )
    with pytest.raises(ValueError):  # test_get_or_create_ef_with_config_exists_with_ef_invalid
        client.get_or_create_collection(
            "coll", embedding_function=ours, configuration={"embedding_function": other}  # type: ignore[arg-type]
        )
    client.create_collection("coll", configuration={"embedding_function": ours})
    with pytest.raises(ValueError):  # test_get_collection_ef_with_config_exists_with_ef_invalid
        client.get_collection("coll", embedding_function=other)  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # test_get_or_create_after_create_with_ef
        client.get_or_create_collection("coll", embedding_function=other)  # type: ignore[arg-type]
    # validate_config_update: the same function with another size would put new vectors in the old space.
    with pytest.raises(ValueError, match="cannot change"):
        ours.validate_config_update(ours.get_config(), smaller.get_config())
    with pytest.raises(ValueError, match="cannot change"):
        client.get_collection("coll").modify(configuration={"embedding_function": smaller})


@pytest.mark.parametrize("name", NAMES)
def test_configuration_persistence_and_a_missing_key(
    name: str, env: None, mmembed_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ef = make(name, mmembed_emulator)
    first = chromadb.PersistentClient(path=str(tmp_path), settings=SETTINGS)
    first.create_collection(
        "persisted", configuration={"hnsw": {"space": "cosine", "ef_construction": 100}, "embedding_function": ef}
    ).add(ids=["a", "b"], documents=["a red square", "the blue sea"])
    first.clear_system_cache()
    again = chromadb.PersistentClient(path=str(tmp_path), settings=SETTINGS).get_collection("persisted")
    stored = again.configuration.get("embedding_function")
    assert stored is not None and stored.name() == f"mmembed_{name}" and stored.get_config() == ef.get_config()
    assert again.query(query_texts=["red"], n_results=1)["ids"] == [["a"]]
    # Reopened where the key's variable is unset: a ValueError (ConfigurationError) naming it, at the first embed.
    for cls in PROVIDERS.values():
        monkeypatch.delenv(cls.env_var, raising=False)
        for var in cls.fallback_env_vars:
            monkeypatch.delenv(var, raising=False)
    chromadb.PersistentClient(path=str(tmp_path), settings=SETTINGS).clear_system_cache()
    reopened = chromadb.PersistentClient(path=str(tmp_path), settings=SETTINGS).get_collection("persisted")
    if name == "vertex":  # no key is fine for Vertex (ADC); its refusal is the missing credentials
        pytest.skip("vertex falls back to Application Default Credentials")
    if not PROVIDERS[name].key_required:  # a server of the user's own: no key needed, none refused
        return
    with pytest.raises(ValueError, match=PROVIDERS[name].env_var):
        reopened.query(query_texts=["red"], n_results=1)
    SharedSystemClient.clear_system_cache()


@pytest.mark.parametrize("name", NAMES)
def test_get_collection_with_invalid_configuration(
    name: str, env: None, mmembed_emulator: Emulator, client: chromadb.ClientAPI
) -> None:
    coll = client.create_collection("coll", configuration={"embedding_function": make(name, mmembed_emulator)})
    broken = {"embedding_function": {"name": f"mmembed_{name}", "type": "known", "config": {"dimensions": "x"}}}
    coll._model.configuration_json = broken
    assert coll.name == "coll" and coll.configuration_json == broken
    with pytest.raises(ValueError):
        coll.add(ids=["t"], documents=["test doc"])
    with pytest.raises(ValueError):
        coll.query(query_texts=["test"], n_results=1)
    with pytest.raises(ValueError):
        _ = coll.configuration


# -- the CLI and LlamaIndex, from the same registry -------------------------------------------------------


@pytest.mark.parametrize("name", ["voyage", "cohere"])
def test_cli_ingests_a_folder(
    name: str, env: None, mmembed_emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mmembed.cli import main
    from mmembed.testing import colour_photo

    folder = tmp_path / "media"
    folder.mkdir()
    for colour in ("red", "blue"):
        colour_photo(colour, size=(900, 600)).save(folder / f"{colour}.jpg", quality=88)
    (folder / "sea.txt").write_text("Notes about sailing across the wide blue sea at dawn.\n")
    store = ["--collection", "media", "--db", str(tmp_path / "db"), "--base-url", mmembed_emulator.url]
    assert main(["ingest", str(folder), "--provider", name, "-q", *store]) == 0
    assert "3 records added" in capsys.readouterr().out
    assert all(r.status == 200 and r.provider == name for r in mmembed_emulator.requests)
    assert main(["search", "red", "-n", "3", *store]) == 0
    assert "red.jpg" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["voyage", "cohere"])
def test_llama_index_embeds_text_and_image(name: str, env: None, mmembed_emulator: Emulator, tmp_path: Path) -> None:
    from mmembed.llama_index import embedding_class
    from mmembed.testing import colour_photo

    path = tmp_path / "red.jpg"
    colour_photo("red", size=(640, 480)).save(path)
    embed = embedding_class(name)(base_url=mmembed_emulator.url)
    text, image = embed.get_text_embedding("something red"), embed.get_image_embedding(str(path))
    assert len(text) == len(image) == {"voyage": 1024, "cohere": 1536}[name]
    assert CANARY_KEY not in repr(embed) and CANARY_KEY not in embed.to_json()
