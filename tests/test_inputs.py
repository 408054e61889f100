"""mmembed.inputs: what each caller object becomes, ImageSource kinds, data URIs, content keys."""

from __future__ import annotations

import base64
import io
import pathlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import png_bytes
from mmembed import ImageSource, InputError, UnsafeURLError
from mmembed.inputs import ImageItem, TextItem, to_item
from mmembed.testing import colour_photo

PNG = png_bytes(colour_photo("red", size=(8, 6)))


# -- to_item, one caller type at a time ------------------------------------------------------------------


def test_str_is_always_text_even_when_it_looks_like_a_path_or_url() -> None:
    for text in ("a red square", "photo.jpg", "https://example.com/red.jpg", ""):
        item = to_item(text)
        assert item == TextItem(text)


def test_internal_items_pass_through_unchanged() -> None:
    text = TextItem("x")
    image = ImageItem(source="bytes", raw=PNG)
    assert to_item(text) is text
    assert to_item(image) is image


@pytest.mark.parametrize("make", [bytes, bytearray, memoryview])
def test_bytes_like_become_image_bytes(make: type) -> None:
    item = to_item(make(PNG))
    assert isinstance(item, ImageItem)
    assert item.raw == PNG and isinstance(item.raw, bytes)
    assert item.url is None and item.gcs_uri is None
    assert item.source == f"bytes ({len(PNG)} B)"


@pytest.mark.parametrize("empty", [b"", bytearray(), memoryview(b"")])
def test_empty_bytes_are_refused(empty: object) -> None:
    with pytest.raises(InputError, match="empty bytes") as info:
        to_item(empty)
    assert info.value.index is None  # the Embedder places it


def test_paths_are_images_read_lazily(tmp_path: Path) -> None:
    missing = tmp_path / "not-yet.png"
    item = to_item(missing)  # nothing is read at this stage
    assert isinstance(item, ImageItem) and item.raw == missing and isinstance(item.raw, pathlib.Path)
    assert item.source == f"path {missing}"
    pure = to_item(pathlib.PurePosixPath("/x/y.png"))
    assert isinstance(pure, ImageItem) and pure.raw == pathlib.Path("/x/y.png")


def test_pil_image_and_array() -> None:
    img = Image.new("RGBA", (5, 4))
    item = to_item(img)
    assert isinstance(item, ImageItem) and item.raw is img and item.source == "PIL image RGBA 5x4"
    array = np.zeros((4, 5, 3), np.float32)
    item = to_item(array)
    assert isinstance(item, ImageItem) and item.raw is array and item.source == "array float32 4x5x3"


def test_file_objects_are_read_once() -> None:
    item = to_item(io.BytesIO(PNG))
    assert isinstance(item, ImageItem) and item.raw == PNG and item.source == f"BytesIO ({len(PNG)} B)"
    with pytest.raises(InputError, match="file object gave no bytes"):
        to_item(io.BytesIO(b""))
    with pytest.raises(InputError, match="file object gave no bytes"):
        to_item(io.StringIO("text, not bytes"))


@pytest.mark.parametrize("obj", [None, 42, 3.5, {"text": "x"}, ["x"], object()])
def test_unsupported_types_are_refused_with_advice(obj: object) -> None:
    with pytest.raises(InputError, match="cannot embed an object of type") as info:
        to_item(obj)
    assert "ImageSource" in str(info.value)
    assert info.value.source == type(obj).__name__


# -- ImageSource -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("https://example.com/a.jpg", "url"),
        ("HTTP://EXAMPLE.com/a.jpg", "url"),
        ("data:image/png;base64,AAAA", "data"),
        ("gs://bucket/a.jpg", "gcs"),
        ("photos/a.jpg", "path"),
        ("/abs/a.jpg", "path"),
        ("file:///abs/a.jpg", "path"),
        (r"C:\photos\a.jpg", "path"),
    ],
)
def test_image_source_kinds(uri: str, kind: str) -> None:
    assert ImageSource(uri).kind == kind


def test_image_source_strips_and_accepts_paths() -> None:
    assert ImageSource("  a.jpg \n").uri == "a.jpg"
    assert ImageSource(Path("dir/a.jpg")).uri == str(Path("dir/a.jpg"))  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "   ", None, 5])
def test_image_source_needs_a_non_empty_string(bad: object) -> None:
    with pytest.raises(InputError, match="non-empty"):
        ImageSource(bad)  # type: ignore[arg-type]


def test_image_source_url_and_gcs_are_references_not_content() -> None:
    url = to_item(ImageSource("https://example.com/a.jpg"))
    assert isinstance(url, ImageItem) and url.url == "https://example.com/a.jpg" and url.raw is None
    assert url.source == "URL https://example.com/a.jpg"
    gcs = to_item(ImageSource("gs://bucket/a.jpg"))
    assert isinstance(gcs, ImageItem) and gcs.gcs_uri == "gs://bucket/a.jpg" and gcs.raw is None


def test_image_source_long_url_is_shortened_in_its_description() -> None:
    long = "https://example.com/" + "a" * 200 + ".jpg"
    item = to_item(ImageSource(long))
    assert isinstance(item, ImageItem) and item.url == long
    assert len(item.source) <= len("URL ") + 80 and item.source.endswith("…")


def test_image_source_paths_and_file_uris(tmp_path: Path) -> None:
    target = tmp_path / "a.png"
    by_path = to_item(ImageSource(str(target)))
    by_uri = to_item(ImageSource(f"file://{target}"))
    assert isinstance(by_path, ImageItem) and isinstance(by_uri, ImageItem)
    assert by_path.raw == by_uri.raw == target
    home = to_item(ImageSource("~/a.png"))
    assert isinstance(home, ImageItem) and home.raw == Path("~/a.png").expanduser()


@pytest.mark.parametrize("uri", ["ftp://example.com/a.jpg", "gopher://example.com/a.jpg", "s3://bucket/a.jpg"])
def test_image_source_other_url_schemes_are_refused(uri: str) -> None:
    """Not silently read as an odd relative path ("ftp:/example.com/a.jpg")."""
    with pytest.raises(UnsafeURLError, match="scheme"):
        to_item(ImageSource(uri))


# -- data URIs -------------------------------------------------------------------------------------------


def test_data_uri_is_decoded_to_bytes() -> None:
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    item = to_item(ImageSource(uri))
    assert isinstance(item, ImageItem) and item.raw == PNG and item.source == "data URI"
    upper = to_item(ImageSource("DATA:image/png;BASE64," + base64.b64encode(PNG).decode()))
    assert isinstance(upper, ImageItem) and upper.raw == PNG


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("data:image/png,rawtext", "must be base64"),
        ("data:image/png;base64", "must be base64"),  # no comma
        ("data:image/png;base64,not*base64!", "not valid base64"),
        ("data:image/png;base64,", "holds no bytes"),
    ],
)
def test_bad_data_uris_are_refused(uri: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        to_item(ImageSource(uri))
    assert info.value.source == "data URI"


# -- content keys ----------------------------------------------------------------------------------------


def key(obj: object) -> str:
    return to_item(obj).content_key()


def test_text_keys_depend_on_the_text_only() -> None:
    assert key("a") == key("a") == TextItem("a").content_key()
    assert key("a") != key("a ")
    assert key("a").startswith("text:")


def test_image_keys_follow_the_content_not_the_container(tmp_path: Path) -> None:
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    one.write_bytes(PNG)
    two.write_bytes(PNG)
    assert key(PNG) == key(bytearray(PNG)) == key(one) == key(two) == key(io.BytesIO(PNG))
    data_uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert key(ImageSource(data_uri)) == key(PNG)
    two.write_bytes(PNG + b"\0")
    assert key(two) != key(one)


def test_a_text_never_shares_a_key_with_an_image() -> None:
    assert key("x") != key(b"x")


def test_pil_and_array_keys_cover_mode_shape_and_dtype() -> None:
    pixels = np.zeros((4, 6, 3), np.uint8)
    assert key(pixels) == key(pixels.copy())
    assert key(pixels) != key(pixels.astype(np.float32))  # same values, other dtype
    assert key(pixels) != key(pixels.reshape(6, 4, 3))  # same bytes, other shape
    assert key(pixels[:, ::2]) == key(np.ascontiguousarray(pixels[:, ::2]))  # views hash their content
    changed = pixels.copy()
    changed[0, 0, 0] = 1
    assert key(changed) != key(pixels)
    rgb = Image.fromarray(pixels)
    assert key(rgb) == key(Image.fromarray(pixels.copy()))
    assert key(rgb) != key(rgb.convert("RGBA"))


def test_remote_images_are_keyed_by_reference() -> None:
    assert key(ImageSource("https://example.com/a.jpg")) == "url:https://example.com/a.jpg"
    assert key(ImageSource("gs://b/a.jpg")) == "gcs:gs://b/a.jpg"


def test_unreadable_path_fails_when_keyed(tmp_path: Path) -> None:
    item = to_item(tmp_path / "missing.png")
    with pytest.raises(InputError, match="cannot read file"):
        item.content_key()
