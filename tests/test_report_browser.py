"""report.html in a real browser (headless Chromium): every figure renders, the page asks
for nothing over the network, and it reads on a phone-sized screen without sideways
scrolling. Oracle: the browser's own DOM after load (image sizes, the resource timing
list, the page's scroll width), read back with --dump-dom."""
import json
import re
import shutil
import subprocess

import pytest

from minih.app.reproduce import reproduce

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
BROWSER = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    BROWSER is None, reason="no headless Chromium on this machine (Debian: apt-get install "
                            "chromium-headless-shell; .ci/run installs it)")]

# appended to a copy of the page: after load, write what the browser saw into the DOM
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const seen = {
    images: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().width > 0)).length,
    resources: performance.getEntriesByType("resource").map(e => e.name),
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    widestImage: Math.max(0, ...imgs.map(i => i.getBoundingClientRect().right)),
  };
  const out = document.createElement("pre");
  out.id = "minih-probe";
  out.textContent = JSON.stringify(seen);
  document.body.appendChild(out);
});
</script>"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser")
    reproduce(out, size="tiny", backend="numpy", progress=False)
    return out / "report.html"


def seen_by_browser(html_path, tmp_path, width: int) -> dict:
    page = tmp_path / f"probe_{width}.html"
    page.write_text(html_path.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                    encoding="utf-8")
    res = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu",
                          "--host-resolver-rules=MAP * ~NOTFOUND",     # nothing may leave anyway
                          f"--window-size={width},900", "--virtual-time-budget=10000",
                          "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="minih-probe">(.*?)</pre>', res.stdout, re.S)
    assert found, f"the probe did not run; browser stderr: {res.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def test_every_figure_renders_and_nothing_is_fetched(report, tmp_path):
    seen = seen_by_browser(report, tmp_path, 1200)
    n_figures = report.read_text(encoding="utf-8").count("<img ")
    assert seen["images"] == n_figures >= 12
    assert seen["broken"] == 0
    assert seen["resources"] == []          # every image is embedded; no script, font or style fetched


def test_reads_on_a_narrow_screen(report, tmp_path):
    seen = seen_by_browser(report, tmp_path, 360)
    assert seen["broken"] == 0
    # no sideways scrolling: the page is no wider than the screen, nor is any figure
    assert seen["scrollWidth"] <= seen["innerWidth"], seen
    assert seen["widestImage"] <= seen["innerWidth"], seen
