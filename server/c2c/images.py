"""Raster images: decode every pixel of every frame (so a polyglot or truncated file is
refused), and convert to WebP for storage."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, ImageSequence

#: Pixels (all frames together) we are willing to decode: Pillow's own bomb threshold.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
# open_verified refuses anything past MAX_PIXELS itself; Pillow's warning would only be noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
WEBP_QUALITY = 85
#: Encoder effort (Pillow's `method`, 0 fastest .. 6 smallest), chosen by `bench/webp.py`:
#: the fastest within 3 % of libwebp's default (4) in bytes on photos; measured 2026-11-26
#: on 3 MP photos: 2 % larger, 0.6x the time (0 and 1 were 5-7 % larger on small photos).
WEBP_METHOD = 2
#: The most pixels a WebP image has on either side (the format's 14-bit dimensions).
MAX_WEBP_SIDE = 16383


class ImageRejected(Exception):
    """Not a complete image of the declared kind; `reason` is a message key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _formats(mime_type: str) -> list[str]:
    return {
        "image/jpeg": ["JPEG"],
        "image/png": ["PNG"],
        "image/webp": ["WEBP"],
        "image/gif": ["GIF"],
    }[mime_type]


def open_verified(data: bytes, mime_type: str) -> Image.Image:
    """The decoded image; raises ImageRejected when it is not a whole image of that type
    or would decode to more than MAX_PIXELS."""
    try:
        image = Image.open(io.BytesIO(data), formats=_formats(mime_type))
        width, height = image.size
        frames = getattr(image, "n_frames", 1)
        if width * height * frames > MAX_PIXELS:
            raise ImageRejected("too_many_pixels")
        for frame in ImageSequence.Iterator(image):
            frame.load()
        image.seek(0)
        return image
    except Image.DecompressionBombError:
        raise ImageRejected("too_many_pixels") from None
    except ImageRejected:
        raise
    except Exception:
        # Corrupt input surfaces from Pillow's decoders as almost any exception type
        # (IndexError and struct.error among them); all of them mean "not a whole image".
        raise ImageRejected("undecodable") from None


def to_webp(image: Image.Image) -> bytes:
    """WebP, upright, alpha kept, metadata dropped; animations keep every frame. Raises
    ImageRejected for an image longer than WebP allows on a side."""
    if max(image.size) > MAX_WEBP_SIDE:
        raise ImageRejected("too_long_for_webp")
    frames = [_webp_ready(frame) for frame in ImageSequence.Iterator(image)]
    out = io.BytesIO()
    if len(frames) > 1:
        frames[0].save(
            out,
            "WEBP",
            quality=WEBP_QUALITY,
            method=WEBP_METHOD,
            save_all=True,
            append_images=frames[1:],
            duration=image.info.get("duration", 100),
            loop=0,
        )
    else:
        frames[0].save(out, "WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD)
    return out.getvalue()


def _webp_ready(frame: Image.Image) -> Image.Image:
    frame = ImageOps.exif_transpose(frame)
    has_alpha = frame.mode in ("RGBA", "LA", "PA") or (
        frame.mode == "P" and "transparency" in frame.info
    )
    return frame.convert("RGBA" if has_alpha else "RGB")
