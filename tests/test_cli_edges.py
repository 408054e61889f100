"""The CLI's edges (issue 19, item 5): Chroma's errors as one line, the WAV family by its headers, what the walk
leaves out counted by type, and .rst / .html taken as text."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import chromadb
import pytest

from conftest import CANARY_KEY, png_bytes
from mmembed import Embedder, InputError, UnsupportedKindError
from mmembed.cli import main, walk
from mmembed.inputs import to_item
from mmembed.media_types import sniff
from mmembed.testing import Emulator, colour_photo

TONE = bytes(range(256)) * 8  # 2048 bytes of 16-bit PCM


def fmt_chunk(endian: str) -> bytes:
    # PCM, mono, 8 kHz, 16 bits: the WAVE "fmt " chunk, in the file's byte order.
    return b"fmt " + struct.pack(f"{endian}IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)


def rifx_wav() -> bytes:
    """A big-endian WAV: RIFX, every size and sample field big-endian."""
    body = b"WAVE" + fmt_chunk(">") + b"data" + struct.pack(">I", len(TONE)) + TONE
    return b"RIFX" + struct.pack(">I", len(body)) + body


def rf64_wav() -> bytes:
    """An RF64 WAV (EBU Tech 3306): the RIFF size is 0xFFFFFFFF, the real sizes sit in a ds64 chunk."""
    ds64 = b"ds64" + struct.pack("<IQQQI", 28, 0, len(TONE), len(TONE) // 2, 0)
    body = b"WAVE" + ds64 + fmt_chunk("<") + b"data" + struct.pack("<I", 0xFFFFFFFF) + TONE
    return b"RF64" + struct.pack("<I", 0xFFFFFFFF) + body


def test_the_wav_family_is_told_apart_by_its_headers(tmp_path: Path) -> None:
    assert sniff(rifx_wav()) == "audio/x-rifx"
    assert sniff(rf64_wav()) == "audio/x-rf64"
    (tmp_path / "big.wav").write_bytes(rf64_wav())
    item = to_item(tmp_path / "big.wav")
    assert item.kind == "audio" and getattr(item, "media_type", None) == "audio/x-rf64"


@pytest.mark.parametrize(("make", "media_type"), [(rifx_wav, "audio/x-rifx"), (rf64_wav, "audio/x-rf64")])
def test_rifx_and_rf64_are_refused_as_audio_naming_the_format(
    make: object, media_type: str, tmp_path: Path, mmembed_emulator: Emulator
) -> None:
    path = tmp_path / "tone.wav"
    path.write_bytes(make())  # type: ignore[operator]
    takes_audio = Embedder("gemini", base_url=mmembed_emulator.url, api_key=CANARY_KEY, max_retries=0)
    with pytest.raises(InputError, match=media_type) as caught:
        takes_audio.embed([path])
    assert "decodable image" not in str(caught.value)
    text_image = Embedder("jina", base_url=mmembed_emulator.url, api_key=CANARY_KEY, max_retries=0)
    with pytest.raises(UnsupportedKindError, match="audio"):
        text_image.embed([path])
    assert mmembed_emulator.requests == []  # refused while preparing: nothing sent
    takes_audio.close()
    text_image.close()


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "guide.rst").write_text("Guide\n=====\n\nHow to sail a small boat in light wind.\n")
    (root / "docs" / "index.html").write_text(
        "<html><head><title>Home</title><style>p { color: red }</style>"
        "<script>var secret = 'never embedded';</script></head>"
        "<body><h1>Welcome</h1><p>Bananas &amp; kayaks, in one page.</p></body></html>"
    )
    (root / "docs" / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (root / "docs" / "diagram.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (root / "sound.aiff").write_bytes(b"FORM\x00\x00\x00\x04AIFF")
    (root / "README").write_text("An extensionless readme.\n")
    (root / "LICENSE").write_text("MIT\n")
    (root / "big-endian.wav").write_bytes(rifx_wav())
    (root / "red.png").write_bytes(png_bytes(colour_photo("red", size=(300, 200))))
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("hidden: neither taken nor counted")
    return root


def test_walk_counts_what_it_leaves_out(mixed_folder: Path) -> None:
    from collections import Counter

    not_taken: Counter[str] = Counter()
    taken = {p.name for p in walk([str(mixed_folder)], not_taken)}
    assert taken == {"guide.rst", "index.html", "big-endian.wav", "red.png"}
    assert not_taken == Counter({"(none)": 2, ".svg": 2, ".aiff": 1})


def test_ingest_summary_names_files_not_taken_and_embeds_rst_and_html_as_text(
    mixed_folder: Path, tmp_path: Path, mmembed_emulator: Emulator, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("JINA_API_KEY", CANARY_KEY)
    db = tmp_path / "db"
    args = ["ingest", str(mixed_folder), "--provider", "jina", "-q", "--collection", "project", "--db", str(db)]
    assert main([*args, "--base-url", mmembed_emulator.url]) == 0
    out, err = capsys.readouterr()
    assert "5 files not taken ((none) 2, .svg 2, .aiff 1)" in out, out
    assert "1 skipped" in out and "big-endian.wav" in err and "audio" in err and "decodable image" not in err
    sent = [i["text"] for r in mmembed_emulator.requests for i in r.json["input"] if "text" in i]
    assert any("How to sail a small boat" in t for t in sent)
    page = next(t for t in sent if "Bananas" in t)
    assert "Bananas & kayaks, in one page." in page and "Welcome" in page
    assert "<" not in page and "never embedded" not in page and "color" not in page
    got = chromadb.PersistentClient(path=str(db)).get_collection("project").get(include=["metadatas"])
    assert {str(m["source"]).rsplit("/", 1)[-1] for m in got["metadatas"] or []} == {
        "guide.rst", "index.html", "red.png"
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["search", "q", "--collection", "c"], "[c] does not exist"),  # Chroma checks a name only on create
        (["search", "q", "--collection", "no-such-collection"], "does not exist"),
        (["ingest", "FOLDER", "--provider", "jina", "-q", "--collection", "c"], "Expected a name"),
    ],
)
def test_chroma_errors_are_one_line(
    argv: list[str], says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JINA_API_KEY", CANARY_KEY)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("a note")
    argv = [str(tmp_path / "notes") if a == "FOLDER" else a for a in argv]
    assert main([*argv, "--db", str(tmp_path / "db")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Chroma: ") and err.count("\n") == 1 and says in err, err


def test_a_server_that_is_down_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    assert main(["search", "q", "--collection", "media", "--chroma-url", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: Chroma server {url}") and err.count("\n") == 1, err
