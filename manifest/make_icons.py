#!/usr/bin/env python3
"""Draws Passkey's Teams icons: a key, white, on the accent colour (color.png, 192x192) and on
transparent (outline.png, 32x32). Standard library only; the PNGs it writes are committed, so this
runs only when the icons change: `python3 manifest/make_icons.py`."""

import math
import os
import struct
import zlib

ACCENT = (0x2B, 0x57, 0x9A)  # keep in step with accentColor in manifest.json
WHITE = (0xFF, 0xFF, 0xFF)
SUPERSAMPLE = 6  # samples per pixel side, for smooth edges


def in_key(x, y):
    """The key, lying along the x axis from 0 to 1, centred on y = 0: a ring (the bow), a shaft and
    two teeth."""
    bx, outer, hole = 0.21, 0.21, 0.09
    d = math.hypot(x - bx, y)
    if d <= outer:
        return d > hole
    if 0.38 <= x <= 0.97 and abs(y) <= 0.05:
        return True
    if 0.74 <= x <= 0.81 and 0.05 <= y <= 0.17:
        return True
    if 0.87 <= x <= 0.97 and 0.05 <= y <= 0.14:
        return True
    return False


def key_coverage(size, glyph_px):
    """Fraction of each pixel covered by the key, turned 45 degrees (bow top left) and centred."""
    scale = glyph_px / 1.0  # key length in pixels along its own axis
    c, s = math.cos(math.radians(45)), math.sin(math.radians(45))
    # Centre of the key's bounding shape in key coordinates, so the turned glyph sits in the middle.
    cx, cy = 0.49, 0.0
    cover = []
    n = SUPERSAMPLE
    for py in range(size):
        row = []
        for px in range(size):
            hits = 0
            for sy in range(n):
                for sx in range(n):
                    # pixel sample relative to the image centre, in key units
                    ux = (px + (sx + 0.5) / n - size / 2) / scale
                    uy = (py + (sy + 0.5) / n - size / 2) / scale
                    # undo the 45-degree turn
                    kx = ux * c + uy * s + cx
                    ky = -ux * s + uy * c + cy
                    hits += in_key(kx, ky)
            row.append(hits / (n * n))
        cover.append(row)
    return cover


def rounded_square_coverage(size, radius):
    n = SUPERSAMPLE
    cover = []
    for py in range(size):
        row = []
        for px in range(size):
            hits = 0
            for sy in range(n):
                for sx in range(n):
                    x = px + (sx + 0.5) / n
                    y = py + (sy + 0.5) / n
                    dx = max(radius - x, 0, x - (size - radius))
                    dy = max(radius - y, 0, y - (size - radius))
                    hits += dx * dx + dy * dy <= radius * radius
            row.append(hits / (n * n))
        cover.append(row)
    return cover


def png(size, pixels):
    """RGBA rows -> PNG bytes (8-bit RGBA, no filtering, zlib level 9)."""
    raw = b"".join(b"\x00" + bytes(v for px in row for v in px) for row in pixels)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def color_icon():
    size = 192
    bg = rounded_square_coverage(size, 36)
    key = key_coverage(size, 150)
    pixels = []
    for y in range(size):
        row = []
        for x in range(size):
            a_bg, a_key = bg[y][x], key[y][x]
            rgb = tuple(round(w * a_key + b * (1 - a_key)) for w, b in zip(WHITE, ACCENT))
            row.append(rgb + (round(255 * a_bg),))
        pixels.append(row)
    return png(size, pixels)


def outline_icon():
    size = 32
    key = key_coverage(size, 27)
    return png(size, [[WHITE + (round(255 * a),) for a in row] for row in key])


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    for name, data in (("color.png", color_icon()), ("outline.png", outline_icon())):
        with open(os.path.join(here, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")
