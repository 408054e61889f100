"""The mmembed command against the emulator: ingest a folder, report bad files, search fairly, rerun free."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ChromaServer
from mmembed.cli import main, split_passages
from mmembed.testing import Emulator, colour_photo

PHOTO_COLOURS = ("red", "orange", "yellow", "green", "blue", "purple")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    (root / "photos").mkdir(parents=True)
    for i, colour in enumerate(PHOTO_COLOURS):
        colour_photo(colour, size=(900, 600), seed=i).save(root / "photos" / f"{colour}.jpg", quality=88)
    (root / "banana.txt").write_text("A banana is a long curved fruit with soft sweet flesh.\n")
    (root / "notes.md").write_text("# Sailing\n\nNotes about sailing across the wide sea at dawn.\n")
    good = (root / "photos" / "red.jpg").read_bytes()
    (root / "photos" / "broken.jpg").write_bytes(good[: len(good) // 3])  # a truncated JPEG
    (root / ".hidden.txt").write_text("never ingested")
    (root / "ignored.csv").write_text("a,b\n")
    return root


def store_args(tmp_path: Path, emulator: Emulator) -> list[str]:
    return ["--collection", "media", "--db", str(tmp_path / "db"), "--base-url", emulator.url]


def clean_ingest(
    folder: Path, tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch, provider: str = "jina"
) -> list[str]:
    """The ingest arguments for the folder without its corrupt file, with the provider's key set."""
    monkeypatch.setenv(f"{provider.upper()}_API_KEY", "test-key")
    (folder / "photos" / "broken.jpg").unlink()
    return ["ingest", str(folder), "--provider", provider, "-q", *store_args(tmp_path, emulator)]


def test_ingest_stores_everything_but_the_corrupt_file_and_says_so(
    folder: Path, tmp_path: Path, mmembed_emulator: Emulator, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("JINA_API_KEY", "test-key")
    status = main(["ingest", str(folder), "--provider", "jina", "-q", *store_args(tmp_path, mmembed_emulator)])
    out, err = capsys.readouterr()
    assert status == 1
    assert "broken.jpg" in err and "failed" in err
    assert "8 records added" in out and "1 files failed" in out
    assert "holds 8 records" in out
    sent = [inp for r in mmembed_emulator.requests for inp in r.json["input"]]
    assert sum("text" in i for i in sent) == 2 and sum("image" in i for i in sent) == 6

    # search: the purple photo in the top two; for "banana", the banana text and the yellow photo
    assert main(["search", "purple", "-n", "4", *store_args(tmp_path, mmembed_emulator)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("purple.jpg" in line for line in lines[1:3]), lines
    assert main(["search", "banana", "-n", "4", *store_args(tmp_path, mmembed_emulator)]) == 0
    out = capsys.readouterr().out
    top = out.splitlines()[1:3]  # the banana text and the yellow photo, each standing out in its modality
    assert any("banana.txt" in line for line in top) and any("yellow.jpg" in line for line in top), out
    assert out.splitlines()[0].split()[2] == "relevance" and all(float(line.split()[2]) > 2 for line in top)

    # a second ingest of the unchanged folder sends nothing to the provider
    before = len(mmembed_emulator.requests)
    status = main(["ingest", str(folder), "--provider", "jina", "-q", *store_args(tmp_path, mmembed_emulator)])
    out, _ = capsys.readouterr()
    assert status == 1  # the corrupt file is still reported
    assert len(mmembed_emulator.requests) == before
    assert "0 records added, 8 unchanged" in out


def test_changed_file_is_re_embedded(
    folder: Path, tmp_path: Path, mmembed_emulator: Emulator, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = clean_ingest(folder, tmp_path, mmembed_emulator, monkeypatch)
    assert main(args) == 0
    (folder / "banana.txt").write_text("Bananas are yellow.\n")
    mmembed_emulator.clear()
    assert main(args) == 0
    assert "1 records added, 7 unchanged" in capsys.readouterr().out
    (request,) = mmembed_emulator.requests
    assert request.json["input"] == [{"text": "Bananas are yellow."}]


def test_a_rerun_does_not_read_unchanged_photos_but_sees_a_changed_one(
    folder: Path, tmp_path: Path, mmembed_emulator: Emulator, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import mmembed.cache
    import mmembed.cli

    monkeypatch.setattr(mmembed.cache, "RACY_SECONDS", 0.0)  # the photos were written a moment ago
    read: list[str] = []
    real = mmembed.cli.file_sha256
    monkeypatch.setattr(mmembed.cli, "file_sha256", lambda path: read.append(path.name) or real(path))
    args = clean_ingest(folder, tmp_path, mmembed_emulator, monkeypatch)
    assert main(args) == 0
    assert sorted(read) == sorted(f"{c}.jpg" for c in PHOTO_COLOURS)

    read.clear()
    mmembed_emulator.clear()
    colour_photo("blue", size=(900, 600)).save(folder / "photos" / "red.jpg", quality=88)  # red.jpg changes
    assert main(args) == 0
    assert read == ["red.jpg"]  # the five unchanged photos were not read at all
    assert "1 records added, 7 unchanged" in capsys.readouterr().out.splitlines()[-1]
    (request,) = mmembed_emulator.requests
    assert len(request.json["input"]) == 1


def test_an_unreadable_photo_is_named_and_the_rest_stored(
    folder: Path, tmp_path: Path, mmembed_emulator: Emulator, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import mmembed.cli

    real = mmembed.cli.file_sha256

    def digest(path: Path) -> str:
        if path.name == "green.jpg":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(mmembed.cli, "file_sha256", digest)
    status = main(clean_ingest(folder, tmp_path, mmembed_emulator, monkeypatch))
    out, err = capsys.readouterr()
    assert status == 1
    assert "green.jpg: cannot read image: Permission denied" in err
    assert "7 records added" in out and "1 files failed" in out


def test_html_page_has_thumbnails(
    folder: Path, tmp_path: Path, mmembed_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(clean_ingest(folder, tmp_path, mmembed_emulator, monkeypatch, "nomic")) == 0
    base = store_args(tmp_path, mmembed_emulator)
    page = tmp_path / "hits.html"
    assert main(["search", "red", "-n", "3", "--html", str(page), *base]) == 0
    text = page.read_text()
    assert "<img src=\"data:image/jpeg;base64," in text
    assert "red.jpg" in text


def test_image_query(
    folder: Path, tmp_path: Path, mmembed_emulator: Emulator, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(clean_ingest(folder, tmp_path, mmembed_emulator, monkeypatch)) == 0
    base = store_args(tmp_path, mmembed_emulator)
    query = tmp_path / "query.png"
    colour_photo("green", size=(300, 200), seed=42).save(query)
    capsys.readouterr()
    assert main(["search", "--image", str(query), "-n", "2", *base]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("green.jpg" in line for line in lines[1:3]), lines


def test_missing_key_is_a_clear_error(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["ingest", str(folder), "--provider", "nomic", "--collection", "c", "--db", str(tmp_path / "d")])
    assert status == 2
    assert "NOMIC_API_KEY" in capsys.readouterr().err


def test_chroma_url_against_a_real_server(
    folder: Path, chroma_server: ChromaServer, mmembed_emulator: Emulator, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("JINA_API_KEY", "test-key")
    (folder / "photos" / "broken.jpg").unlink()
    base = ["--collection", "cli-media", "--chroma-url", chroma_server.url, "--base-url", mmembed_emulator.url]
    assert main(["ingest", str(folder), "--provider", "jina", "-q", *base]) == 0
    assert main(["search", "purple", "-n", "2", *base]) == 0
    assert "purple.jpg" in capsys.readouterr().out
    # A second process finds the collection and its stored function (key from the environment).
    env = {"JINA_API_KEY": "test-key", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "mmembed.cli", "search", "banana", "-n", "2", *base],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "banana.txt" in proc.stdout


def test_search_shows_calibrated_relevance_or_rrf_scores(
    folder: Path, tmp_path: Path, mmembed_emulator: Emulator, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(clean_ingest(folder, tmp_path, mmembed_emulator, monkeypatch)) == 0
    capsys.readouterr()
    assert main(["search", "purple", "-n", "3", *store_args(tmp_path, mmembed_emulator)]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split()[:4] == ["rank", "modality", "relevance", "similarity"]
    assert "purple.jpg" in rows[0] and float(rows[0].split()[2]) > 2 > float(rows[1].split()[2])  # one stands out
    assert main(["search", "purple", "-n", "3", "--fusion", "rrf", *store_args(tmp_path, mmembed_emulator)]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split()[2] == "rrf" and rows[0].split()[2] == f"{1 / 61:.4f}"  # 1/(60 + rank 1)
    assert {row.split()[1] for row in rows[:2]} == {"text", "image"}  # RRF: the best of each modality first
    with pytest.raises(SystemExit) as exit_:
        main(["search", "purple", "--fusion", "zscore", *store_args(tmp_path, mmembed_emulator)])
    assert exit_.value.code == 2 and "invalid choice: 'zscore'" in capsys.readouterr().err


def test_console_script_help() -> None:
    script = Path(sys.executable).with_name("mmembed")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0
    assert "ingest" in proc.stdout and "search" in proc.stdout and "emulator" in proc.stdout


def test_split_passages() -> None:
    text = "\n\n".join(["word " * 100] * 5)
    passages = split_passages(text, limit=1200)
    assert all(len(p) <= 1200 for p in passages)
    assert " ".join(" ".join(passages).split()) == " ".join(text.split())
    assert split_passages("short") == ["short"]
    assert split_passages("   \n\n  ") == []


def test_a_bad_file_does_not_make_the_rest_go_out_twice(
    folder: Path, tmp_path: Path, mmembed_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The corrupt image is reported on its own: its batch goes without it, and nothing is sent twice.
    monkeypatch.setenv("NOMIC_API_KEY", "test-key")
    base = store_args(tmp_path, mmembed_emulator)
    assert main(["ingest", str(folder), "--provider", "nomic", "-q", *base]) == 1
    text_requests = [r for r in mmembed_emulator.requests if r.path == "/v1/embedding/text"]
    assert sum(len(r.json["texts"]) for r in text_requests) == 2
    (image_request,) = [r for r in mmembed_emulator.requests if r.path == "/v1/embedding/image"]
    assert sum(f[0] == "images" for f in image_request.files) == len(PHOTO_COLOURS)
    assert (tmp_path / "db" / "embedding-cache.sqlite").exists()


def test_a_bad_file_leaves_none_of_its_records_whenever_its_failure_comes(tmp_path: Path) -> None:
    """Records of a file already written when one of its records fails (or left by a killed run) are removed."""
    import chromadb

    from mmembed.cli import IngestReport, Record, _Progress, _Writer

    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    collection = client.create_collection("writer-test", embedding_function=None)
    report = IngestReport()
    writer = _Writer(collection, report, _Progress())
    pages = [Record(f"doc:{i}", f"page {i}", "/data/doc.pdf", "text", f"h{i}", i) for i in range(3)]
    note = Record("note:0", "a note", "/data/note.txt", "text", "hn")
    for record in (*pages[:2], note):
        writer.add(record, [1.0, 0.0, 0.0])
    writer.flush()  # two pages of the PDF are stored before its third fails
    writer.drop("/data/doc.pdf")
    writer.add(pages[2], [0.0, 1.0, 0.0])  # answered after the failure: not stored either
    writer.flush()
    assert collection.get()["ids"] == ["note:0"]
    assert report.added == 1
