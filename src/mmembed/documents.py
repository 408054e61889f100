"""PDF documents through pypdfium2: page count, page text, a page rendered at the model's size, page ranges.

Why pypdfium2: it is Google's PDFium (the engine in Chrome) in a wheel with no system dependencies, under
Apache-2.0/BSD-3, fast at rendering, and it extracts text and copies page ranges into a new document
(what a model with a page limit per content needs). PDFium is not thread-safe, so every call into
it holds one process-wide lock. Its exceptions never escape: each failure is an
:class:`~mmembed.errors.InputError` without an index (the caller places it).

A page is rendered so that its shortest side is the model's image side (never PDFium's 300 dpi of a poster),
within a pixel cap, so a 2 m by 1 m poster costs what a letter page does.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from PIL import Image

from ._extras import PDFIUM_LOCK, missing_extra
from .errors import InputError

__all__ = ["PDF_LOCK", "extract_pages", "page_count", "page_texts", "render_page"]

#: PDFium is not thread-safe: every use of pypdfium2 in the process (client and emulator) holds this lock.
PDF_LOCK = PDFIUM_LOCK


@contextmanager
def _open(data: bytes) -> Iterator[Any]:
    """An open ``PdfDocument`` (under the lock); corrupt or encrypted files are InputErrors."""
    try:
        import pypdfium2 as pdfium
        import pypdfium2.raw as pdfium_c
    except ImportError as exc:  # pragma: no cover - an optional extra
        raise missing_extra("reading PDFs", "pypdfium2") from exc
    with PDF_LOCK:
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            reason = str(exc)
            if "password" in reason.lower():
                raise InputError("the PDF is encrypted (password protected); decrypt it first") from None
            raise InputError(f"not a readable PDF ({reason})") from None
        except Exception as exc:  # PDFium wrapper failures of any kind: never crash deep inside it
            raise InputError(f"not a readable PDF ({type(exc).__name__})") from None
        try:
            if pdfium_c.FPDF_GetSecurityHandlerRevision(pdf.raw) != -1:
                raise InputError("the PDF is encrypted; decrypt it first (mmembed does not read encrypted PDFs)")
            yield pdf
        finally:
            pdf.close()


def page_count(data: bytes) -> int:
    """The number of pages of a PDF (raises InputError for a corrupt, encrypted or empty one)."""
    with _open(data) as pdf:
        count = len(pdf)
    if count < 1:
        raise InputError("the PDF has no pages")
    return count


def page_texts(data: bytes, first: int, last: int) -> list[str]:
    """The text layer of pages ``first``..``last`` (1-based, inclusive), one string per page ('' for scans)."""
    texts: list[str] = []
    with _open(data) as pdf:
        _check_range(len(pdf), first, last)
        for number in range(first, last + 1):
            try:
                page = pdf[number - 1]
                textpage = page.get_textpage()
                try:
                    text = textpage.get_text_bounded()
                finally:
                    textpage.close()
                    page.close()
            except Exception as exc:
                raise InputError(f"cannot read the text of page {number} ({type(exc).__name__})") from None
            texts.append(" ".join(text.replace("\x00", "").split()))
    return texts


def render_page(data: bytes, number: int, min_side: int, max_pixels: int) -> Image.Image:
    """Page ``number`` (1-based) as an RGB image whose shortest side is ``min_side``, at most ``max_pixels``."""
    with _open(data) as pdf:
        _check_range(len(pdf), number, number)
        try:
            page = pdf[number - 1]
            try:
                width, height = page.get_size()  # points (1/72 in), rotation applied
                if not (width > 0 and height > 0):
                    raise InputError(f"page {number} has no size")
                scale = min_side / min(width, height)
                if width * height * scale * scale > max_pixels:  # a long strip: cap the area instead
                    scale = (max_pixels / (width * height)) ** 0.5 * 0.99  # PDFium rounds sizes up
                bitmap = page.render(scale=scale, fill_color=(255, 255, 255, 255))
                try:
                    image: Image.Image = bitmap.to_pil().convert("RGB")
                finally:
                    bitmap.close()
            finally:
                page.close()
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"cannot render page {number} ({type(exc).__name__})") from None
    return image


def extract_pages(data: bytes, first: int, last: int) -> bytes:
    """A new PDF holding pages ``first``..``last`` (1-based, inclusive) of ``data``."""
    import pypdfium2 as pdfium

    with _open(data) as pdf:
        count = len(pdf)
        _check_range(count, first, last)
        if first == 1 and last == count:
            return data
        try:
            out = pdfium.PdfDocument.new()
            try:
                out.import_pages(pdf, list(range(first - 1, last)))
                buffer = io.BytesIO()
                out.save(buffer)
            finally:
                out.close()
        except Exception as exc:
            raise InputError(f"cannot copy pages {first}-{last} ({type(exc).__name__})") from None
    return buffer.getvalue()


def _check_range(count: int, first: int, last: int) -> None:
    if not 1 <= first <= last <= count:
        raise InputError(f"pages {first}-{last} are outside the document's {count} pages")
