"""A generated background pool: frames that show none of a model's concepts.

Real footage is full of frames no photo set has: black and near-black frames, title cards,
text slides, charts, logos, maps. Detectors that never saw one claim *some* concept on it (a
black title card scored as ``sea``). :func:`write_background` draws such frames, honestly
negative for every concept of a photo model (text and graphics over plain, gradient or
blurred-noise backgrounds; no photographic content), and writes them as a ``csv:`` data set
whose every cell is 0, ready for ``vidconcept refit-detectors --dataset csv:DIR/labels.csv``.
Example::

    spec = write_background(Path("/tmp/bg"), model.concepts, count=300)
"""
from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

log = logging.getLogger(__name__)

SIZE = (480, 270)  # 16:9, as video frames
WORDS = ("news", "report", "chapter", "the", "end", "climate", "2024", "live", "breaking", "credits", "directed by",
         "episode", "part", "weather", "market", "index", "sport", "results", "archive", "interview", "music",
         "produced", "studio", "presents", "film", "data", "source", "www", "subscribe", "coming soon")


def _font(rng: np.random.Generator, lo: int = 14, hi: int = 48):
    size = int(rng.integers(lo, hi))
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def _colour(rng: np.random.Generator, dark: bool | None = None) -> tuple[int, int, int]:
    if dark is None:
        return tuple(int(v) for v in rng.integers(0, 256, 3))
    base = rng.integers(0, 50, 3) if dark else rng.integers(170, 256, 3)
    return tuple(int(v) for v in base)


def _text(rng: np.random.Generator, words: int) -> str:
    return " ".join(rng.choice(WORDS, words)).upper() if rng.random() < 0.5 else " ".join(rng.choice(WORDS, words)).title()


def _background(rng: np.random.Generator) -> Image.Image:
    kind = rng.integers(0, 3)
    w, h = SIZE
    if kind == 0:  # plain
        return Image.new("RGB", SIZE, _colour(rng, bool(rng.random() < 0.6)))
    if kind == 1:  # vertical or horizontal gradient
        a, b = np.array(_colour(rng)), np.array(_colour(rng))
        t = np.linspace(0, 1, h if rng.random() < 0.5 else w)
        ramp = (a[None] * (1 - t[:, None]) + b[None] * t[:, None]).astype(np.uint8)
        arr = np.broadcast_to(ramp[:, None, :], (h, w, 3)) if len(t) == h else np.broadcast_to(ramp[None], (h, w, 3))
        return Image.fromarray(np.ascontiguousarray(arr))
    noise = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)  # blurred colour noise (bokeh-like, no content)
    return Image.fromarray(noise).resize(SIZE, Image.BICUBIC).filter(ImageFilter.GaussianBlur(int(rng.integers(6, 20))))


def _canvas(rng: np.random.Generator) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A random background to draw on."""
    image = _background(rng)
    return image, ImageDraw.Draw(image)


def black(rng: np.random.Generator) -> Image.Image:
    """Black or near-black, sometimes with faint noise or a small caption (fades, gaps between shots)."""
    level = int(rng.integers(0, 25))
    arr = np.clip(level + rng.normal(0, rng.uniform(0, 4), (SIZE[1], SIZE[0], 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(arr)
    if rng.random() < 0.3:
        ImageDraw.Draw(image).text((10, SIZE[1] - 24), _text(rng, 3), fill=_colour(rng, False), font=_font(rng, 10, 16))
    return image


def title_card(rng: np.random.Generator) -> Image.Image:
    image, draw = _canvas(rng)
    font = _font(rng, 24, 56)
    text = _text(rng, int(rng.integers(1, 4)))
    box = draw.textbbox((0, 0), text, font=font)
    x = max(5, (SIZE[0] - (box[2] - box[0])) // 2 + int(rng.integers(-40, 40)))
    y = max(5, (SIZE[1] - (box[3] - box[1])) // 2 + int(rng.integers(-60, 60)))
    draw.text((x, y), text, fill=_colour(rng), font=font)
    return image


def text_slide(rng: np.random.Generator) -> Image.Image:
    image, draw = _canvas(rng)
    font, y = _font(rng, 12, 24), int(rng.integers(8, 40))
    colour = _colour(rng)
    for _ in range(int(rng.integers(3, 9))):
        draw.text((int(rng.integers(10, 60)), y), ("- " if rng.random() < 0.4 else "") + _text(rng, int(rng.integers(2, 7))),
                  fill=colour, font=font)
        y += int(rng.integers(18, 34))
    return image


def chart(rng: np.random.Generator) -> Image.Image:
    image, draw = _canvas(rng)
    w, h = SIZE
    if rng.random() < 0.5:  # bars
        n = int(rng.integers(3, 10))
        for i in range(n):
            top = int(rng.integers(40, h - 30))
            x0 = 40 + i * (w - 80) // n
            draw.rectangle([x0, top, x0 + (w - 80) // n - 6, h - 30], fill=_colour(rng))
        draw.line([35, h - 30, w - 30, h - 30], fill=_colour(rng), width=2)
    else:  # pie or line
        if rng.random() < 0.5:
            start = 0.0
            for frac in rng.dirichlet(np.ones(int(rng.integers(2, 6)))):
                draw.pieslice([w // 2 - 100, h // 2 - 100, w // 2 + 100, h // 2 + 100], start, start + 360 * frac,
                              fill=_colour(rng))
                start += 360 * frac
        else:
            ys = np.cumsum(rng.normal(0, 15, 20)) + h / 2
            draw.line([(30 + i * (w - 60) / 19, float(np.clip(y, 20, h - 20))) for i, y in enumerate(ys)],
                      fill=_colour(rng), width=3)
    draw.text((20, 8), _text(rng, 3), fill=_colour(rng), font=_font(rng, 12, 22))
    return image


def logo(rng: np.random.Generator) -> Image.Image:
    image, draw = _canvas(rng)
    cx, cy, r = SIZE[0] // 2 + int(rng.integers(-60, 60)), SIZE[1] // 2 + int(rng.integers(-40, 40)), int(rng.integers(25, 70))
    shape = rng.integers(0, 3)
    box = [cx - r, cy - r, cx + r, cy + r]
    (draw.ellipse if shape == 0 else draw.rectangle if shape == 1 else draw.regular_polygon)(
        *( [box] if shape < 2 else [(cx, cy, r), int(rng.integers(3, 8))]), fill=_colour(rng))
    letters = "".join(rng.choice(list("ABCDEFGHKLMNPRSTVWXZ"), int(rng.integers(1, 4))))
    draw.text((cx - r // 2, cy - r // 3), letters, fill=_colour(rng), font=_font(rng, 20, 40))
    return image


def map_graphic(rng: np.random.Generator) -> Image.Image:
    """A schematic map: flat 'sea' colour, random polygons for land, borders, dots and labels."""
    w, h = SIZE
    image = Image.new("RGB", SIZE, _colour(rng, False))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 6))):
        cx, cy = rng.integers(0, w), rng.integers(0, h)
        angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(6, 14))))
        radius = rng.uniform(30, 120, len(angles))
        draw.polygon([(float(cx + r * np.cos(a)), float(cy + r * np.sin(a))) for a, r in zip(angles, radius)],
                     fill=_colour(rng), outline=_colour(rng, True))
    for _ in range(int(rng.integers(2, 8))):
        x, y = int(rng.integers(10, w - 60)), int(rng.integers(10, h - 20))
        draw.ellipse([x, y, x + 6, y + 6], fill=(200, 0, 0))
        draw.text((x + 9, y - 4), _text(rng, 1), fill=(20, 20, 20), font=_font(rng, 10, 16))
    return image


KINDS: dict[str, Callable[[np.random.Generator], Image.Image]] = {
    "black": black, "title_card": title_card, "text_slide": text_slide, "chart": chart, "logo": logo,
    "map": map_graphic}


def write_background(out: Path, concepts: list[str], count: int = 300, seed: int = 0) -> str:
    """Draw ``count`` frames (the kinds of :data:`KINDS` in turn) into ``out`` with ``labels.csv`` (all 0).

    Returns the data set spec ``csv:out/labels.csv``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    kinds = list(KINDS.items())
    for i in range(count):
        name, draw = kinds[i % len(kinds)]
        path = out / f"{name}-{i:04d}.png"
        draw(rng).save(path)
        rows.append([path.name] + ["0"] * len(concepts))
    with (out / "labels.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["path", *concepts], *rows])
    log.info("wrote %d background frames to %s", count, out)
    return f"csv:{out / 'labels.csv'}"
