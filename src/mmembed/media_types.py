"""Media types from magic bytes: what a file is by its content, never by its name.

Stdlib only and cheap (it reads at most the first few kilobytes), so the client can sniff every input and the
emulator can check every upload with the same function.

>>> sniff(b"%PDF-1.7\\n...")
'application/pdf'
>>> sniff(b"\\x00\\x00\\x00\\x18ftypqt  \\x00\\x00\\x02\\x00qt  ")
'video/quicktime'
>>> sniff(b"plain text") is None
True
"""

from __future__ import annotations

__all__ = ["AUDIO_TYPES", "DOCUMENT_TYPES", "IMAGE_TYPES", "VIDEO_TYPES", "sniff"]

DOCUMENT_TYPES = frozenset({"application/pdf"})
VIDEO_TYPES = frozenset(
    {"video/mp4", "video/quicktime", "video/webm", "video/x-matroska", "video/mpeg", "video/x-msvideo", "video/ogg"}
)
AUDIO_TYPES = frozenset(
    {"audio/wav", "audio/mpeg", "audio/ogg", "audio/flac", "audio/mp4", "audio/aac", "audio/aiff", "audio/x-rifx",
     "audio/x-rf64"}
)
IMAGE_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/tiff", "image/heic", "image/avif"}
)

# ISO base media file format (MP4, MOV, M4A, HEIF, AVIF): the major brand, then the compatible brands, decide.
_BRANDS = {
    b"qt  ": "video/quicktime",
    b"M4A ": "audio/mp4",
    b"M4B ": "audio/mp4",
    b"M4P ": "audio/mp4",
    b"F4A ": "audio/mp4",
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"heim": "image/heic",
    b"heis": "image/heic",
    b"mif1": "image/heic",
    b"msf1": "image/heic",
    b"avif": "image/avif",
    b"avis": "image/avif",
}
_MP4_BRANDS = frozenset(
    {b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"mp71", b"avc1", b"dash",
     b"M4V ", b"M4VH", b"M4VP", b"F4V ", b"MSNV", b"NDAS", b"3gp4", b"3gp5", b"3gp6", b"3g2a", b"mmp4"}
)
# A QuickTime file from before ftyp existed starts straight with one of these atoms.
_QT_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})
# WAV's other headers: big-endian RIFX, and RF64/BW64 (64-bit sizes, for files over 4 GiB). They are audio,
# but not the RIFF WAV that APIs and decoders take, so they get types of their own and are refused by name.
_WAV_VARIANTS = {b"RIFX": "audio/x-rifx", b"RF64": "audio/x-rf64", b"BW64": "audio/x-rf64"}
_MPEG_AUDIO_BITRATE_BAD = (0, 15)
_PDF_SEARCH = 1024  # readers accept junk before %PDF- in the first kilobyte; so does this


def _iso_bmff(head: bytes) -> str | None:
    size = int.from_bytes(head[:4], "big")
    if size < 8 and size not in (0, 1):
        return None
    end = len(head) if size in (0, 1) else min(size, len(head))
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, end - 3, 4)]
    for brand in brands:  # major brand first: an M4A file lists isom among its compatible brands
        if brand in _BRANDS:
            return _BRANDS[brand]
        if brand in _MP4_BRANDS:
            return "video/mp4"
    return None


def _matroska(head: bytes) -> str:
    # The EBML header carries DocType ("webm" or "matroska") in its first few dozen bytes.
    doctype = head.find(b"\x42\x82")
    if doctype != -1 and b"webm" in head[doctype : doctype + 12]:
        return "video/webm"
    return "video/x-matroska"


def _mpeg_audio(head: bytes) -> str | None:
    """MPEG audio or ADTS AAC from a frame header (11 sync bits, then version, layer, bitrate, rate)."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return None
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    if layer == 0:
        return "audio/aac" if head[1] & 0xF6 == 0xF0 and (head[2] >> 2) & 0xF < 13 else None
    if version == 1 or (head[2] >> 4) in _MPEG_AUDIO_BITRATE_BAD or (head[2] >> 2) & 3 == 3:
        return None
    return "audio/mpeg"


def _after_id3(data: bytes) -> str:
    """An ID3v2 tag precedes MP3 (usually), AAC or FLAC: look past it; a tag alone means MP3."""
    size = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(data[6:10]))
    if data[5] & 0x10:
        size += 10  # footer
    rest = data[size : size + 16]
    if rest.startswith(b"fLaC"):
        return "audio/flac"
    return _mpeg_audio(rest) or "audio/mpeg"


def sniff(data: bytes) -> str | None:
    """The media type of ``data`` from its magic bytes, or None when it is none of the known kinds.

    Knows PDF, MP4/MOV/M4A (told apart by ISO-BMFF brand), WebM/Matroska, MPEG-PS, AVI, WAV (RIFF; big-endian RIFX
    and 64-bit RF64 as types of their own), AIFF, MP3, ADTS AAC, Ogg, FLAC and the common image formats (PNG, JPEG,
    GIF, WebP, BMP, TIFF, HEIC, AVIF). Bytes only: a file that starts right and is broken later still sniffs as its
    kind.
    """
    head = bytes(data[:4096])
    if b"%PDF-" in head[:_PDF_SEARCH]:
        return "application/pdf"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return _iso_bmff(head)
    if head[:4] == b"RIFF" and len(head) >= 12:
        return {b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo", b"WEBP": "image/webp"}.get(head[8:12])
    if head[:4] in _WAV_VARIANTS and head[8:12] == b"WAVE":
        return _WAV_VARIANTS[head[:4]]
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "audio/aiff"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return _matroska(head)
    if head.startswith(b"OggS"):
        return "video/ogg" if b"\x80theora" in head[:512] else "audio/ogg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"ID3") and len(head) >= 10:
        return _after_id3(data)
    if head.startswith((b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")):
        return "video/mpeg"
    if len(head) >= 8 and head[4:8] in _QT_ATOMS and int.from_bytes(head[:4], "big") >= 8:
        return "video/quicktime"
    return _image(head) or _mpeg_audio(head)


def _image(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"BM") and len(head) >= 14 and int.from_bytes(head[10:14], "little") >= 26:
        return "image/bmp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    return None
