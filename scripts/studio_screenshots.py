"""Screenshots of each tab of `nanosora studio` for docs/: docs/studio-<tab>.png.

Starts the studio on a free port with a fresh output folder, drives it in headless chromium
(`make browser`) as a person would, one tab after another with the shipped model, and saves a
PNG of each (quantised to 256 colours, each under 300 KB).

    .venv/bin/python scripts/studio_screenshots.py [--out docs]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
from PIL import Image

from nanosora.shapes import world
from nanosora.studio.browser import chromium, serve

TIMEOUT = 180_000  # ms
LIMIT = 300_000  # bytes per picture


def wait_text(page, selector: str, text: str) -> None:
    page.wait_for_function(
        "([s, t]) => { const e = document.querySelector(s); return e && e.innerText.includes(t); }",
        arg=[selector, text], timeout=TIMEOUT,
    )  # fmt: skip


def shoot(page, path: Path, height: int = 900) -> None:
    """The page's top ``height`` px, quantised to 256 colours (the UI is flat, the clips small)."""
    page.set_viewport_size({"width": 1280, "height": height})
    page.wait_for_timeout(1200)  # let videos reach a frame with the object well inside
    page.screenshot(path=str(path))
    Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)
    size = path.stat().st_size
    print(f"{path} {size / 1000:.0f} KB")
    if size > LIMIT:
        raise SystemExit(f"{path} is {size} bytes, over {LIMIT}")


def tab(page, name: str) -> None:
    page.click(f"button[role=tab]:has-text('{name}')")


def main(out: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="studio-shots-"))
    first = work / "first.png"
    spec = world.ClipSpec("blue", "square", "up", 16, 2.0, 30.0, 44.0, "")
    cv2.imwrite(str(first), cv2.cvtColor(world.render(spec)[0], cv2.COLOR_RGB2BGR))
    with serve(work / "out", work / "server.log") as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)

        def run(name: str, prompt: str, job: str, height: int = 900) -> None:
            """Type the prompt, press the tab's button, wait for the verdict, take the picture."""
            page.fill("#prompt textarea", prompt)
            page.click(f"#{job}-button")
            wait_text(page, f"#{job}-verdict", "prompt")
            shoot(page, out / f"studio-{name}.png", height)

        run("generate", "a red circle moving left", "gen")
        tab(page, "Compare")
        run("compare", "a yellow triangle moving right", "cmp", height=1150)
        tab(page, "Denoise")
        page.fill("#dn-show textarea, #dn-show input", "1, 3, 6, 10, 25")
        run("denoise", "a green square moving down", "dn", height=1300)
        tab(page, "Image / clip")
        page.set_input_files("#up-file input[type=file]", str(first))
        wait_text(page, "#up-message", "Accepted")
        run("image", "a blue square moving up", "up")

        tab(page, "Story")
        page.fill("#premise textarea", "A red ball falls into the dark. Then it rises again.")
        page.click("#story-write")
        wait_text(page, "#story-table", "s01")
        page.click("#story-film")
        wait_text(page, "#story-verdict", "prompt")
        page.evaluate("document.querySelector('#story-write').scrollIntoView()")
        shoot(page, out / "studio-story.png", height=1150)

        tab(page, "Gallery")
        page.locator("#gallery .thumbnail-item").nth(3).click()
        wait_text(page, "#gal-info", "seed")
        shoot(page, out / "studio-gallery.png")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    main(parser.parse_args().out)
