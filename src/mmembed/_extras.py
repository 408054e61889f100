"""The optional media libraries' install hint, and the one process-wide lock PDFium needs.

PDFium (under pypdfium2) is not thread-safe: every caller in a process — the client's PDF fallback and the
emulator's PDF reader alike — must hold :data:`PDFIUM_LOCK` while it touches any pypdfium2 object. Import
pypdfium2 and PyAV lazily, inside the function that needs them, and turn an ImportError into
:func:`missing_extra`'s message.
"""

from __future__ import annotations

import threading

__all__ = ["PDFIUM_LOCK", "missing_extra"]

PDFIUM_LOCK = threading.RLock()


def missing_extra(what: str, package: str, extra: str = "media") -> ImportError:
    """The ImportError to raise when ``package`` is missing: it names the extra that installs it.

    >>> str(missing_extra("reading PDFs", "pypdfium2"))
    "reading PDFs needs pypdfium2; install it with: pip install 'mmembed[media]'"
    """
    return ImportError(f"{what} needs {package}; install it with: pip install 'mmembed[{extra}]'")
