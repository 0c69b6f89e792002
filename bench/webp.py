"""WebP encoder effort (`method` in Pillow, 0 fastest .. 6 smallest) measured on
photo-like JPEGs of three sizes: output bytes and encode time per method, so the default
in server/c2c/images.py (WEBP_METHOD) is a measured choice, not a guess."""

from __future__ import annotations

import io
import time

from PIL import Image

from bench.photos import SIZES, jpeg
from bench.stats import Spread, interleave
from server.c2c.images import WEBP_METHOD, WEBP_QUALITY

METHODS = range(7)


def table(image: Image.Image) -> tuple[dict[int, int], dict[str, Spread]]:
    """Bytes per method, and milliseconds per method over interleaved rounds."""
    sizes: dict[int, int] = {}

    def encode(method: int) -> float:
        out = io.BytesIO()
        started = time.perf_counter()
        image.save(out, "WEBP", quality=WEBP_QUALITY, method=method)
        sizes[method] = out.tell()
        return (time.perf_counter() - started) * 1000

    return sizes, interleave({str(m): lambda m=m: encode(m) for m in METHODS})


def main() -> None:
    print(
        f"WebP encoder effort at quality {WEBP_QUALITY}: bytes (of the JPEG) and ms as median"
        f" (min-max) over interleaved rounds; * marks the default (method {WEBP_METHOD})"
    )
    for name, width, height in SIZES:
        source = jpeg(width, height, seed=width)
        image = Image.open(io.BytesIO(source)).convert("RGB")
        sizes, times = table(image)
        print(f"  {name} JPEG, {len(source) / 1024:.0f} KiB:")
        for method in METHODS:
            mark = "*" if method == WEBP_METHOD else " "
            print(
                f"   {mark}method {method}: {sizes[method] / 1024:7.0f} KiB"
                f" ({sizes[method] / len(source):4.0%})  {times[str(method)].show('.0f')} ms"
                f"  x{times[str(method)].median / times[str(WEBP_METHOD)].median:4.1f} time,"
                f" x{sizes[method] / sizes[WEBP_METHOD]:5.3f} bytes of the default"
            )


if __name__ == "__main__":
    main()
