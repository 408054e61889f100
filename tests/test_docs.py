"""Every Python block of the docs and the README runs, against the offline emulator, so no example rots.

Each page's ```python blocks run in order in one namespace (as a reader would type them), in a folder that holds
the sample files the examples name (``photos/``, ``notes/``, ``bike.jpg``, ``camera.jpg``, ``report.pdf``, ``talk.mp4``,
``call.wav``...). Every provider is pointed at the emulator, with a test key in its variable and its test options
(a project id, say): what the reader's environment would provide. Console and TOML blocks are not Python.
"""

from __future__ import annotations

import os
import re
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from conftest import jpeg_bytes
from mmembed import Embedder
from mmembed.providers import PROVIDERS
from mmembed.testing import Emulator, colour_photo

ROOT = Path(__file__).resolve().parents[1]
EMULATOR_HOSTS = ("127.0.0.1", "::1")  # where an example's own Emulator() listens; other hosts are the reader's
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)


def pages() -> list[Path]:
    found = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [page for page in found if "hooks" not in page.parts and FENCE.search(page.read_text("utf-8"))]


def blocks(page: Path) -> list[tuple[int, str]]:
    """(line number, code) of each ```python block of ``page``."""
    text = page.read_text("utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in FENCE.finditer(text)]


def make_samples(folder: Path) -> None:
    """The files the examples name, made in code (no downloads)."""
    from mmembed.testing.media import make_audio, make_pdf, make_video

    photos = folder / "photos"
    photos.mkdir()
    for colour in ("red", "yellow", "blue"):
        (photos / f"{colour}.jpg").write_bytes(jpeg_bytes(colour_photo(colour, size=(640, 480))))
    for name, colour in (("bike.jpg", "red"), ("red.jpg", "red"), ("photo.jpg", "green"), ("page.png", "blue")):
        (folder / name).write_bytes(jpeg_bytes(colour_photo(colour, size=(640, 480))))
    (folder / "camera.jpg").write_bytes(jpeg_bytes(colour_photo("green", size=(2400, 1800))))  # a camera's size
    notes = folder / "notes"
    notes.mkdir()
    (notes / "banana.txt").write_text("A ripe banana is yellow and sweet.")
    (notes / "sea.md").write_text("# The sea\n\nThe open sea is deep blue under a clear sky.")
    (folder / "report.pdf").write_bytes(make_pdf(["Quarterly report\nRevenue grew.", "Outlook\nSteady."]))
    (folder / "talk.mp4").write_bytes(make_video(6, audio=True))
    (folder / "call.wav").write_bytes(make_audio(3))


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for every page (a Ray session started for one page keeps pointing at it)."""
    with Emulator() as emu:
        yield emu


def configure_embedders(urls: dict[str, str]) -> Callable[..., None]:
    """An ``Embedder.__init__`` that fills in what a reader's environment would: their host (played by the
    emulator) and a provider's test options (a project id, say). Adapters pass None for "unset"."""
    original = Embedder.__init__

    def configured(self: Embedder, provider: str, **options: Any) -> None:
        cls = PROVIDERS[provider.lower().strip()]
        if options.get("base_url") and urlsplit(options["base_url"]).hostname not in EMULATOR_HOSTS:
            options["base_url"] = None  # the reader's own server ("http://gpu-box:8000"), played by the emulator
        for key, value in {"base_url": urls[cls.name], **cls.test_options}.items():
            if options.get(key) is None:
                options[key] = value
        original(self, provider, **options)

    return configured


def urls_of(emu: Emulator) -> dict[str, str]:
    """Each provider's base URL on the emulator (servers whose routes collide are served under a prefix)."""
    url_for = getattr(emu, "url_for", None)
    return {name: str(url_for(name)) if callable(url_for) else emu.url for name in PROVIDERS}


def reader_variables(emu: Emulator, folder: Path) -> dict[str, str]:
    variables = {cls.env_var: "docs-test-key" for cls in PROVIDERS.values()}
    return {**variables, "MMEMBED_TRUSTED_HOSTS": urlsplit(emu.url).netloc, "MMEMBED_DB": str(folder / "store")}


@pytest.fixture(scope="module")
def ray_session(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A local Ray session whose workers see the reader's environment too (started only for pages using Ray)."""
    ray = pytest.importorskip("ray")
    urls = urls_of(emulator)

    def setup_worker() -> None:
        """configure_embedders in each worker process, before any task (self-contained: pickled by value)."""
        from urllib.parse import urlsplit

        from mmembed import Embedder as WorkerEmbedder
        from mmembed.providers import PROVIDERS as REGISTRY

        original = WorkerEmbedder.__init__

        def configured(self: Any, provider: str, **options: Any) -> None:
            cls = REGISTRY[provider.lower().strip()]
            if options.get("base_url") and urlsplit(options["base_url"]).hostname not in ("127.0.0.1", "::1"):
                options["base_url"] = None
            for key, value in {"base_url": urls[cls.name], **cls.test_options}.items():
                if options.get(key) is None:
                    options[key] = value
            original(self, provider, **options)

        WorkerEmbedder.__init__ = configured  # type: ignore[method-assign]

    variables = reader_variables(emulator, tmp_path_factory.mktemp("ray"))
    previous = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # else Ray may bind to eth0, not loopback
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": variables, "worker_process_setup_hook": setup_worker})
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield
    finally:
        ray.shutdown()
        if previous is None:
            os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        else:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = previous


@pytest.fixture
def reader_environment(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Emulator]:
    """A working folder with the samples, and every provider configured as a reader's would be, on the emulator."""
    make_samples(tmp_path)
    monkeypatch.chdir(tmp_path)
    for name, value in reader_variables(emulator, tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(Embedder, "__init__", configure_embedders(urls_of(emulator)))
    if "import ray" in request.node.callspec.params["page"].read_text("utf-8"):
        request.getfixturevalue("ray_session")
    try:
        yield emulator
    finally:
        _forget_ray_actors()
        from chromadb.api.client import SharedSystemClient

        SharedSystemClient.clear_system_cache()  # Chroma caches a system per path: the next page's "db" is another


def _forget_ray_actors() -> None:
    """Each page is a new reader: the named actors (shared rate limits) an earlier page started are gone."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    for actor in ray.util.list_named_actors(all_namespaces=True):
        ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]))


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page: Path, reader_environment: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("__docs__")  # a real module, so type hints of classes a page defines resolve
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for line, code in blocks(page):
        try:
            exec(compile(code, f"{page.relative_to(ROOT)}:{line}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"{page.relative_to(ROOT)}, the block at line {line} failed: {exc!r}") from exc
    for value in list(namespace.values()):  # close what the examples opened (embedders, adapters)
        close = getattr(value, "close", None)
        if callable(close) and type(value).__module__.startswith("mmembed"):
            close()


def test_every_page_with_python_is_collected() -> None:
    collected = pages()
    assert ROOT / "README.md" in collected
    assert all(blocks(page) for page in collected)


def test_readme_keeps_the_provider_table_of_the_registry() -> None:
    """The README's provider x kind table is the one the docs hook generates (paste its output when it changes)."""
    sys.path.insert(0, str(ROOT / "docs" / "hooks"))
    try:
        import providers as hook
    finally:
        sys.path.remove(str(ROOT / "docs" / "hooks"))
    readme = (ROOT / "README.md").read_text("utf-8")
    assert len(readme.splitlines()) <= 150, "the README is the five-minute read; the rest belongs in docs/"
    table = hook.kind_table(readme=True)
    assert table in readme, f"README.md's provider table should read:\n{table}"
