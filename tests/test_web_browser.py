"""The commissioning page in a real headless browser (Debian's `chromium`, driven over the DevTools
protocol) against a real daemon replaying a real recording: the page loads, the preview's frames
change, a decision made by the daemon appears without a reload, and the page's mode switch changes
the active check of the daemon's next decision. Screenshots land in the test's temp folder; with
EDGE_LIVENESS_SCREENSHOTS=docs they also replace docs/web_*.png."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from cdp import Chromium, find_chromium
from conftest import shared_file
from web_helpers import REPO, TOKEN, WebDaemon

pytestmark = pytest.mark.slow

FRAME_HASH = """(() => {
  const img = document.getElementById('preview');
  if (!img.complete || !img.naturalWidth) return null;
  const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
  const x = c.getContext('2d'); x.drawImage(img, 0, 0);
  const d = x.getImageData(0, 0, c.width, c.height).data; let h = 0;
  for (let i = 0; i < d.length; i += 61) h = (h * 31 + d[i]) >>> 0;
  return [c.width, c.height, h];
})()"""


@pytest.fixture(scope="module")
def browser():
    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium here: scripts/test.sh installs Debian's chromium package")
    b = Chromium(binary)
    yield b
    b.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, shared_data):
    d = WebDaemon(tmp_path_factory.mktemp("webui"), shared_file("video", "tranvanluyt_real.mp4"),
                  extra={"EDGE_LIVENESS_DECISION__REARM": "cooldown", "EDGE_LIVENESS_DECISION__COOLDOWN_S": "1",
                         "EDGE_LIVENESS_DEVICE__ID": "front-door"})
    try:
        d.wait_running()
        yield d
    finally:
        d.stop()


def _keep(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    if os.environ.get("EDGE_LIVENESS_SCREENSHOTS") == "docs":
        shutil.copyfile(path, REPO / "docs" / name)
    return path


def test_page_preview_live_decisions_and_mode_switch(browser, daemon, tmp_path):
    base = f"http://127.0.0.1:{daemon.port}"
    browser.open_page(width=1280, height=900)
    browser.navigate(base + "/")
    # Loopback, not signed in: everything visible, the controls off.
    browser.wait_for("document.getElementById('h-fps').textContent !== '-'", 20)
    # Issue 27: "Now" said idle while "Health" said cooldown (status.json's attempt state, seconds old).
    # The attempt state has one place, "Now"; Health says whether the daemon runs.
    now_states = set()
    for _ in range(12):
        assert browser.eval("document.getElementById('h-state').textContent") == "running"
        now_states.add(browser.eval("document.getElementById('s-state').textContent"))
        browser.eval("new Promise(r => setTimeout(r, 250))")
    assert now_states <= {"-", "idle", "collecting", "cooldown"} and now_states - {"-"}, now_states
    assert browser.eval("document.getElementById('mode-set').disabled") is True
    assert "sign in" in browser.eval("document.getElementById('control-msg').textContent")
    assert browser.eval("document.getElementById('m-sha').textContent").startswith(daemon.get_json("/api/status")[1]["model"]["sha256"][:12])

    # The preview: decoded frames whose pixels change.
    hashes = set()
    for _ in range(60):
        h = browser.eval(FRAME_HASH)
        if h:
            assert max(h[0], h[1]) <= 480
            hashes.add(h[2])
        if len(hashes) >= 3:
            break
        browser.eval("new Promise(r => setTimeout(r, 400))")
    assert len(hashes) >= 3, f"preview frames did not change: {hashes}"
    assert daemon.get_json("/api/status")[1]["web"]["preview_viewers"] >= 1

    # A decision made by the daemon shows up without a reload.
    browser.eval("window.__noReload = 42")
    attempt = browser.wait_for("document.getElementById('verdict').dataset.attempt", 60)
    assert browser.eval("window.__noReload") == 42
    journal = daemon.get_json("/api/decisions?limit=50")[1]["decisions"]
    assert attempt in {d["attempt_id"] for d in journal}
    browser.wait_for(f"document.querySelector('#decisions tr[data-attempt=\"{attempt}\"]') !== null", 20)

    # Sign in (the token goes in once, the page comes back without it), then switch the mode.
    browser.navigate(f"{base}/?token={TOKEN}")
    assert browser.eval("location.href") == base + "/"
    browser.wait_for("!document.getElementById('mode-set').disabled", 20)
    browser.eval("window.__noReload = 43")
    browser.eval("document.getElementById('mode').value = 'turn'; document.getElementById('mode-set').click(); true")
    browser.wait_for("document.getElementById('control-msg').textContent.includes('active check turn')", 20)
    browser.eval("document.getElementById('attempt').click(); true")
    browser.wait_for("document.getElementById('verdict').dataset.mode === 'turn'", 60)
    assert browser.eval("window.__noReload") == 43
    decided = browser.eval("document.getElementById('verdict').dataset.attempt")
    journal = {d["attempt_id"]: d for d in daemon.get_json("/api/decisions?limit=50")[1]["decisions"]}
    assert journal[decided]["evidence"]["active_mode"] == "turn"
    assert daemon.get_json("/api/status")[1]["state"]["active_mode"] == "turn"
    browser.wait_for(f"document.querySelector('#decisions tr[data-attempt=\"{decided}\"]') !== null", 20)
    browser.screenshot(str(tmp_path / "web_commissioning.png"))
    _keep(tmp_path, "web_commissioning.png")


def test_usable_on_a_phone(browser, daemon, tmp_path):
    base = f"http://127.0.0.1:{daemon.port}"
    browser.open_page(mobile=True, width=390, height=844)
    browser.navigate(f"{base}/?token={TOKEN}")
    browser.wait_for("document.getElementById('preview').naturalWidth > 0", 20)
    browser.wait_for("!document.getElementById('attempt').disabled", 20)
    # One column, nothing wider than the screen, buttons big enough for a thumb.
    assert browser.eval("document.documentElement.scrollWidth") <= 390
    assert browser.eval("document.getElementById('preview').getBoundingClientRect().width") >= 300
    assert browser.eval("document.getElementById('attempt').getBoundingClientRect().height") >= 44
    browser.wait_for("document.querySelectorAll('#decisions tr[data-attempt]').length > 0", 30)
    browser.screenshot(str(tmp_path / "web_phone.png"))
    _keep(tmp_path, "web_phone.png")
