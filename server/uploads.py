"""Paintings uploaded to the server: checked from their headers before any pixel is decoded.

An upload is untrusted bytes. Only JPEG, PNG and WebP are taken (not SVG, not animated
PNG or WebP), and the size the header declares is checked against a pixel limit first, so
a small file that would inflate to 100,000 x 100,000 pixels (a decompression bomb) is
refused without decoding it. Greyscale and CMYK pictures are decoded to RGB.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000  # a 40 MP painting scan; the style loss reads it at 512 px


class UploadError(ValueError):
    """An upload refused; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _png_size(data: bytes) -> tuple[int, int]:
    if data[12:16] != b"IHDR":
        raise UploadError(400, "not a valid PNG (no IHDR header)")
    width, height = struct.unpack(">II", data[16:24])
    position = 8
    while position + 8 <= len(data):  # chunks before the image data: an acTL one makes it animated
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        if kind == b"acTL":
            raise UploadError(415, "animated PNGs are not taken; upload one still picture")
        if kind == b"IDAT":
            break
        position += 12 + length
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int]:
    position = 2
    while position + 9 < len(data):
        if data[position] != 0xFF:
            raise UploadError(400, "not a valid JPEG (broken marker)")
        marker = data[position + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            position += 2
            continue
        length = struct.unpack(">H", data[position + 2:position + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            height, width = struct.unpack(">HH", data[position + 5:position + 9])
            return width, height
        position += 2 + length
    raise UploadError(400, "not a valid JPEG (no frame header)")


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X":
        if data[20] & 0x02:
            raise UploadError(415, "animated WebP pictures are not taken; upload one still picture")
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        return width, height
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    raise UploadError(400, "not a valid WebP (unknown chunk)")


def picture_size(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) from the header alone; UploadError for anything else."""
    if len(data) < 32:
        raise UploadError(400, "the upload is empty or too short to be a picture")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ("png", *_png_size(data))
    if data.startswith(b"\xff\xd8\xff"):
        return ("jpeg", *_jpeg_size(data))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ("webp", *_webp_size(data))
    raise UploadError(415, "only JPEG, PNG and WebP paintings are taken (not SVG, GIF or other files)")


def decode_painting(data: bytes) -> np.ndarray:
    """The upload as RGB uint8, after the header checks; UploadError (one line) otherwise."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(413, f"the painting is {len(data) / 2**20:.1f} MB; at most {MAX_UPLOAD_BYTES // 2**20} MB is taken")
    kind, width, height = picture_size(data)
    if width < 16 or height < 16:
        raise UploadError(400, f"the {kind.upper()} is {width}x{height} pixels; a painting needs at least 16x16")
    if width * height > MAX_PIXELS:
        raise UploadError(413, f"the {kind.upper()} declares {width}x{height} pixels; at most {MAX_PIXELS // 1_000_000} million are taken")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # greyscale and CMYK come out as 3 channels
    if bgr is None or bgr.shape[:2] != (height, width):
        raise UploadError(400, f"the {kind.upper()} could not be decoded (truncated or corrupt)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
