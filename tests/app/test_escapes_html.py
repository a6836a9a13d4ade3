"""Model and program text cannot make the user's browser fetch a remote URL (the usual exfiltration channel
of a prompt-injected model), while the app's own plots still show inline. Checked in a real Chromium page:
its DOM, its request log, and a tracking server that counts every contact."""

from __future__ import annotations

import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.app.conftest import screenshot
from tests.app.scripted_model import FINAL, start_scripted_app

pytestmark = [pytest.mark.slow, pytest.mark.local_sandbox, pytest.mark.browser]


class Tracker:
    """An HTTP server on 127.0.0.2 (another origin than the app's 127.0.0.1) recording every path asked."""

    def __init__(self):
        hits = self.hits = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
        self.base = f"http://127.0.0.2:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tracker():
    server = Tracker()
    yield server
    server.close()


def send(page, message: str) -> None:
    page.locator("#prompt textarea").fill(message)
    page.locator("#send-stop").click()


def test_model_and_program_html_never_fetches_a_remote_url_but_plots_still_show(
    start_app, openai_server, monkeypatch, page, tracker
):
    app = start_scripted_app(start_app, openai_server, monkeypatch)
    base = tracker.base
    premise = urllib.request.urlopen(f"{base}/premise", timeout=5)
    assert premise.status == 200 and tracker.hits == ["/premise"]
    tracker.hits.clear()

    page.goto(app.url)
    model_text = (
        f'Look: <img src="{base}/model-img"> ![pic]({base}/model-md.png) '
        f'<script>fetch("{base}/model-script")</script><iframe src="{base}/model-frame"></iframe> '
        f"<svg><image href='{base}/model-svg'/></svg> MODEL-TEXT-END"
    )
    send(page, "say: " + model_text)
    chat = page.locator("#chatbot")
    page.wait_for_function(  # the user's message and the model's answer both say it
        "() => document.querySelector('#chatbot').innerText.split('MODEL-TEXT-END').length > 2",
        timeout=60_000,
    )

    program = (
        "import matplotlib.pyplot as plt\n"
        f"print('<img src={base}/program-img> ![x]({base}/program-md.png)')\n"
        "from IPython.display import HTML, Markdown, display\n"
        f"display(HTML('<img src={base}/program-html>'))\n"
        f"display(Markdown('![y]({base}/program-markdown.png)'))\n"
        "plt.plot([1, 4, 9]); plt.show()"
    )
    send(page, "run: " + program)
    chat.get_by_text(FINAL).last.wait_for(timeout=120_000)
    time.sleep(1.5)  # anything lazy would have been fetched by now
    screenshot(page, "escapes-html")

    sources = chat.locator("img").evaluate_all("els => els.map(e => [e.src, e.complete && e.naturalWidth])")
    assert all(not src.startswith("http://127.0.0.2") for src, _ in sources), sources
    plots = [width for src, width in sources if src.startswith(app.url) and "autocoder-images" in src]
    assert plots and all(plots), sources  # the local plot is inline and loaded
    for tag in ("script", "iframe", "svg image", "object", "embed"):
        assert chat.locator(tag).count() == 0, tag
    shown = chat.inner_text()
    assert f'<img src="{base}/model-img">' in shown  # shown as text, not made an element
    assert f"<img src={base}/program-img>" in shown
    assert tracker.hits == [] and page.external_requests == [], (tracker.hits, page.external_requests)
