#!/usr/bin/env python3
"""Screenshot a report page with headless Chromium (for eyeballing the layout).

Usage: python scripts/screenshot_report.py REPORT_DIR_OR_HTML [OUT.png] [--width 1400]
       [--height 4000] [--full] [--phone] [--slice 1800]

Chromium comes from Debian's ``chromium`` package (``apt-get install -y chromium``). With
``--full`` the page height is measured first (a headless ``--dump-dom`` run is not enough, so
the script takes a tall screenshot and crops the blank bottom away with Pillow).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit(
        "no Chromium found; install it with: apt-get update && apt-get install -y chromium"
    )


def screenshot(
    html: Path, out: Path, *, width: int = 1400, height: int = 4000, timeout: float = 180.0
) -> Path:
    """Render ``html`` at ``width`` x ``height`` CSS pixels into the PNG ``out``."""
    html = html.resolve()
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="xai-shot-") as profile:
        cmd = [
            find_chromium(),
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={out}",
            html.as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not out.exists():
        raise SystemExit(f"chromium failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return out


def crop_blank_bottom(png: Path, margin: int = 24) -> None:
    """Cut the uniform background below the page's last content row."""
    try:
        import numpy as np
        from PIL import Image
    except ImportError:  # pragma: no cover
        return
    with Image.open(png) as img:
        rgb = np.asarray(img.convert("RGB"))
    background = rgb[-1, :, :]
    rows = np.where(
        (np.abs(rgb.astype(int) - background[None].astype(int)).sum(axis=2) > 12).any(axis=1)
    )[0]
    if rows.size and rows[-1] + margin < rgb.shape[0]:
        Image.fromarray(rgb[: rows[-1] + margin]).save(png)


def slice_png(png: Path, height: int) -> list[Path]:
    """Cut a tall screenshot into ``png``-1.png, -2.png ... of ``height`` pixels (to view them)."""
    from PIL import Image

    out = []
    with Image.open(png) as img:
        for i, top in enumerate(range(0, img.height, height), 1):
            part = png.with_name(f"{png.stem}-{i}{png.suffix}")
            img.crop((0, top, img.width, min(top + height, img.height))).save(part)
            out.append(part)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="report folder or its report.html")
    parser.add_argument("out", type=Path, nargs="?", default=Path("/tmp/report_screenshot.png"))
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument(
        "--full",
        action="store_true",
        help="take a very tall shot (20000 px) and crop the blank bottom",
    )
    parser.add_argument(
        "--phone", action="store_true", help="a phone-width viewport (390 CSS px), full page"
    )
    parser.add_argument(
        "--slice", type=int, default=0, help="also cut the shot into pieces of this height"
    )
    args = parser.parse_args(argv)
    if args.phone:
        args.width, args.full = 390, True
    html = args.report / "report.html" if args.report.is_dir() else args.report
    if not html.exists():
        raise SystemExit(f"{html} does not exist")
    height = 20000 if args.full else args.height
    out = screenshot(html, args.out, width=args.width, height=height)
    if args.full:
        crop_blank_bottom(out)
    print(out)
    if args.slice:
        for part in slice_png(out, args.slice):
            print(part)
    return 0


if __name__ == "__main__":
    sys.exit(main())
