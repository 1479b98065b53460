"""Thumbnail: decode an image, downscale it to fit 256x256 with a high-quality filter, sharpen,
re-encode as JPEG. Cost grows with the input's megapixels (decode + resample touch every pixel);
Pillow's resampling is single-threaded, so more than one vCPU buys nothing: a right-sizer should
learn that."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageFilter

Image.MAX_IMAGE_PIXELS = 64_000_000  # refuse decompression bombs with a clear error

THUMB = (256, 256)


def handle(body: bytes, content_type: str, ctx: Any) -> tuple[bytes, str]:
    with Image.open(io.BytesIO(body)) as img:
        img = img.convert("RGB")
        # a full-resolution pass first (as photo services do: denoise before downscaling)
        img = img.filter(ImageFilter.SMOOTH)
        img.thumbnail(THUMB, Image.Resampling.LANCZOS)
        img = img.filter(ImageFilter.SHARPEN)
        out = io.BytesIO()
        img.save(out, format="JPEG", quality=85)
    return out.getvalue(), "image/jpeg"
