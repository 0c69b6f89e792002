"""WebP encoder effort (`method` in Pillow, 0 fastest .. 6 smallest) measured on
photo-like JPEGs of two sizes: output bytes and encode time per method, so the default
in server/c2c/images.py (WEBP_METHOD) is a measured choice, not a guess.

The rule: of the methods whose output is within BYTES_SLACK of libwebp's default effort
(method 4) on every photo, the one with the least encode time over all of them. Bytes
are deterministic, so only the time ordering can move between runs. Target: the
configured default is the rule's choice."""

from __future__ import annotations

import io
import time

from PIL import Image

from bench.photos import SIZES, jpeg
from bench.stats import Spread, interleave, target_missed
from server.c2c.images import WEBP_METHOD, WEBP_QUALITY

METHODS = range(7)
LIBWEBP_DEFAULT = 4
BYTES_SLACK = 0.03


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
    eligible, total_ms = set(METHODS), dict.fromkeys(METHODS, 0.0)
    for name, width, height in SIZES[:2]:  # 12 MP encodes like 3 MP, only slower
        source = jpeg(width, height, seed=width)
        image = Image.open(io.BytesIO(source)).convert("RGB")
        sizes, times = table(image)
        print(f"  {name} JPEG, {len(source) / 1024:.0f} KiB:")
        for method in METHODS:
            total_ms[method] += times[str(method)].median
            if sizes[method] > sizes[LIBWEBP_DEFAULT] * (1 + BYTES_SLACK):
                eligible.discard(method)
            mark = "*" if method == WEBP_METHOD else " "
            print(
                f"   {mark}method {method}: {sizes[method] / 1024:7.0f} KiB"
                f" ({sizes[method] / len(source):4.0%})  {times[str(method)].show('.0f')} ms"
                f"  x{times[str(method)].median / times[str(WEBP_METHOD)].median:4.1f} time,"
                f" x{sizes[method] / sizes[WEBP_METHOD]:5.3f} bytes of the default"
            )
    verdict(eligible, total_ms)


if __name__ == "__main__":
    main()


def verdict(eligible: set[int], total_ms: dict[int, float]) -> None:
    choice = min(eligible, key=total_ms.__getitem__)
    print(
        f"  The fastest method within {BYTES_SLACK:.0%} of method {LIBWEBP_DEFAULT}'s bytes on"
        f" every photo: {choice}; configured: {WEBP_METHOD}"
        f" ({'met' if choice == WEBP_METHOD else 'MISSED: set WEBP_METHOD'})"
    )
    if choice != WEBP_METHOD:
        target_missed(f"WebP default method {WEBP_METHOD}, measured choice {choice}")
