"""Photo-like test images made deterministically from a seed with Pillow alone: a sky
gradient, a skyline of sharp-edged buildings with lit windows, soft out-of-focus shapes,
and sensor grain. Such images compress like photographs (smooth areas, edges, noise),
unlike flat colours or pure noise, which flatter or punish an encoder."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageChops, ImageDraw, ImageFilter

#: (name, width, height) of the photos the benchmarks use: a small web image, a
#: 3-megapixel snapshot and a 12-megapixel phone photo.
SIZES = (("800x600", 800, 600), ("2048x1536", 2048, 1536), ("4032x3024", 4032, 3024))


def photo(width: int, height: int, seed: int) -> Image.Image:
    rng = random.Random(seed)
    horizon = int(height * rng.uniform(0.45, 0.65))
    sky = Image.linear_gradient("L").resize((width, height))
    top, bottom = (rng.randint(40, 90), rng.randint(90, 150), 220), (235, 225, 210)
    image = Image.composite(
        Image.new("RGB", (width, height), bottom), Image.new("RGB", (width, height), top), sky
    )
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, horizon, width, height), fill=(70, 80 + rng.randint(0, 40), 50))
    x = 0
    while x < width:  # buildings with windows: hard edges and fine detail
        w, h = rng.randint(width // 20, width // 8), rng.randint(height // 8, height // 2)
        shade = rng.randint(60, 160)
        draw.rectangle((x, horizon - h, x + w, horizon), fill=(shade, shade - 10, shade - 20))
        step = max(4, w // 8)
        for wx in range(x + step // 2, x + w - step, step):
            for wy in range(horizon - h + step // 2, horizon - step, step * 2):
                lit = rng.random() < 0.4
                draw.rectangle(
                    (wx, wy, wx + step // 2, wy + step),
                    fill=(240, 220, 150) if lit else (40, 45, 60),
                )
        x += w + rng.randint(0, width // 40)
    soft = Image.new("RGB", (width, height))
    soft_draw = ImageDraw.Draw(soft)
    for _ in range(40):  # foreground blur: foliage, bokeh
        cx, cy, r = (
            rng.randrange(width),
            rng.randrange(horizon, height),
            rng.randint(10, width // 10),
        )
        colour = (rng.randint(20, 120), rng.randint(60, 160), rng.randint(20, 90))
        soft_draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    mask = soft.convert("L").point(lambda v: 200 if v else 0).filter(ImageFilter.GaussianBlur(8))
    image.paste(soft.filter(ImageFilter.GaussianBlur(6)), (0, 0), mask)
    for scale in (64, 8):  # clouds and ground texture: variation at two scales
        small = (width // scale + 1, height // scale + 1)
        texture = Image.frombytes("L", small, rng.randbytes(small[0] * small[1]))
        texture = texture.resize((width, height), Image.Resampling.BICUBIC)
        image = ImageChops.add(
            image,
            Image.merge("RGB", (texture.point(lambda v: 128 + (v - 128) // 5),) * 3),
            offset=-128,
        )
    grain = Image.frombytes("L", (width, height), rng.randbytes(width * height))
    grain = grain.filter(ImageFilter.GaussianBlur(0.6)).point(lambda v: 128 + (v - 128) // 6)
    return ImageChops.add(image, Image.merge("RGB", (grain,) * 3), offset=-128)


def jpeg(width: int, height: int, seed: int, quality: int = 90) -> bytes:
    """The photo as a camera would store it."""
    out = io.BytesIO()
    photo(width, height, seed).save(out, "JPEG", quality=quality)
    return out.getvalue()
