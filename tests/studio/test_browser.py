"""The studio end to end: `nanosora studio` in a subprocess, driven by headless chromium.

A prompt typed and generated plays as a video with its verdict, and the file the page serves
is read back by the probe as the prompt says; an oversized and a corrupt upload get their
messages; with two job slots, three jobs at once: one waits with its place shown, the tab of
one is closed (its job stops and leaves nothing), and the other two both finish.
"""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest

from nanosora.shapes.probe import probe_video
from nanosora.studio.browser import chromium, serve

pytestmark = pytest.mark.shipped_model
TIMEOUT = 120_000  # ms: the CPU is shared with other jobs


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio-e2e")
    out, log = root / "out", root / "server.log"
    t0 = time.time()
    with serve(out, log, "--jobs", "2", "--max-upload-mb", "1") as url:
        print(f"studio served its page {time.time() - t0:.1f} s after start")
        yield url, out, log


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def open_page(browser, url: str, outside: list[str] | None = None, wait: bool = True):
    """A new tab (its own session) on the studio; ``wait``: until the page is built."""
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    if outside is not None:  # every request that leaves the machine's loopback
        page.on("request", lambda r: None if r.url.startswith(
            ("http://127.0.0.1", "data:", "blob:")) else outside.append(r.url))  # fmt: skip
    page.goto(url, wait_until="commit")
    if wait:
        page.wait_for_selector("#gen-button", timeout=TIMEOUT)
    return page


def set_prompt(page, prompt: str, steps: int = 25) -> None:
    page.fill("#prompt textarea", prompt)
    page.fill("#steps input[type=number]", str(steps))
    page.press("#steps input[type=number]", "Enter")


def wait_text(page, selector: str, text: str) -> str:
    page.wait_for_function(
        "([s, t]) => { const e = document.querySelector(s); return e && e.innerText.includes(t); }",
        arg=[selector, text], timeout=TIMEOUT,
    )  # fmt: skip
    return page.inner_text(selector)


def test_generate_plays_a_graded_video_and_serves_the_file(server, browser, tmp_path):
    url, out, _ = server
    outside: list[str] = []
    page = open_page(browser, url, outside)
    set_prompt(page, "a red circle moving left")
    t0 = time.time()
    page.click("#gen-button")
    verdict = wait_text(page, "#gen-verdict", "prompt")
    print(f"generate round trip in the browser: {time.time() - t0:.2f} s")
    assert "matches the prompt" in verdict
    assert "read back by the probe: red circle moving left" in verdict
    video = page.locator("#gen-video video")
    video.wait_for(timeout=TIMEOUT)
    page.wait_for_function("document.querySelector('#gen-video video').readyState >= 2")
    t1 = video.evaluate("v => v.currentTime")
    page.wait_for_timeout(700)
    state = video.evaluate("v => [v.currentTime, v.paused, v.error, v.videoWidth, v.src]")
    assert state[0] != t1 and not state[1] and state[2] is None and state[3] == 64  # playing
    # the served file: downloaded from the page's own URL, from inside the output folder
    src = state[4]
    assert str(out / ".gradio") in src
    body = page.request.get(src).body()
    (tmp_path / "served.mp4").write_bytes(body)
    p = probe_video(tmp_path / "served.mp4")
    assert (p.color, p.shape, p.direction) == ("red", "circle", "left")
    assert outside == []  # the page needs nothing from the internet


def test_oversized_and_corrupt_uploads_get_their_messages(server, browser, tmp_path):
    url, _, _ = server
    big, corrupt = tmp_path / "big.png", tmp_path / "broken.png"
    noise = np.random.default_rng(0).integers(0, 256, (800, 800, 3), dtype=np.uint8)
    cv2.imwrite(str(big), noise)  # ~1.9 MB of noise: over the server's 1 MB
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + noise.tobytes()[:5000])
    page = open_page(browser, url)
    page.click("button[role=tab]:has-text('Image / clip')")
    page.set_input_files("#up-file input[type=file]", str(big))
    toast = page.locator(".toast-body").first
    toast.wait_for(timeout=TIMEOUT)
    assert 'exceed the maximum allowed size of 1.0 Mb: "big.png"' in toast.inner_text()
    page.set_input_files("#up-file input[type=file]", str(corrupt))
    message = wait_text(page, "#up-message", "Refused")
    assert "'broken.png' is not a readable image (corrupt or not an image)" in message
    # the page still works after both: animate a good image
    good = tmp_path / "first.png"
    frame = np.zeros((64, 64, 3), np.uint8)
    cv2.circle(frame, (40, 32), 8, (255, 0, 0), -1)  # BGR: a blue disc
    cv2.imwrite(str(good), frame)
    page.set_input_files("#up-file input[type=file]", str(good))
    assert "Accepted: an image to animate" in wait_text(page, "#up-message", "Accepted")
    set_prompt(page, "a blue circle moving left")
    page.click("#up-button")
    assert "matches the prompt" in wait_text(page, "#up-verdict", "prompt")


def test_queue_places_a_closed_tab_stops_its_job_and_two_jobs_finish(server, browser):
    url, out, log = server
    jobs = [("a white square moving down", 100), ("a blue square moving up", 30),
            ("a green triangle moving right", 30)]  # fmt: skip
    pages = [open_page(browser, url, wait=False) for _ in jobs]  # the three load at once
    for page, (prompt, steps) in zip(pages, jobs):
        page.wait_for_selector("#gen-button", timeout=TIMEOUT)
        set_prompt(page, prompt, steps)
    for page in pages:
        page.click("#gen-button")
    # two slots: whichever job comes third waits, and its page shows its place in the queue
    seen_queue, t0 = False, time.time()
    while not seen_queue and time.time() - t0 < 20:
        seen_queue = any("queue:" in p.inner_text("#gen-video") for p in pages[1:])
    assert seen_queue
    wait_text(pages[0], "#gen-video", "steps")  # the first job is sampling
    pages[0].context.close()
    deadline = time.time() + 60
    while "job stopped: its tab was closed" not in log.read_text() and time.time() < deadline:
        time.sleep(0.1)
    assert "a generate job stopped: its tab was closed" in log.read_text()
    for page, (prompt, _) in zip(pages[1:], jobs[1:]):
        assert "matches the prompt" in wait_text(page, "#gen-verdict", "prompt"), prompt
    done = [json.loads(x)["settings"]["prompt"] for x in (out / "gallery.jsonl").open()]
    assert jobs[1][0] in done and jobs[2][0] in done and jobs[0][0] not in done
