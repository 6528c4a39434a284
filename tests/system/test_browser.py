"""The upload page and the API docs in headless Chromium against a live ``anfe serve``.

Real LFW photos go through the page at 1280 and 390 px; the tests assert the layout (no page
wider than the window, every face box on its face after a resize, uncertain faces marked) and
that nothing is fetched from anywhere but the server: every browser runs with the network
blocked (a resolver that finds no host and a proxy to nowhere) and its performance log must
show requests to 127.0.0.1 only. Screenshots are kept outside the repository, in
``$ANFE_ARTIFACTS`` or pytest's temporary folder; the run prints where.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); no
browser is ever downloaded. Without them the tests are skipped with the reason in the summary.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from anfe.centroids.storage.store import Store
from tests.helpers import LFW, running_server

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.usefixtures("real_data")]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
HEIGHT = 900
# three faces, the one on the right uncertain with g_60 (checked against the response below)
GROUP = "actors/Abdel_Nasser_Assidi/Abdel_Nasser_Assidi_0001.jpg"
API_PATHS = {"/predict", "/predict/batch", "/centroids", "/centroids/{cid}", "/health"}
BLOCK_NETWORK = (
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",  # the discard port: nothing answers there
)


def need_chromium() -> None:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(
            "Chromium not installed: apt-get install chromium chromium-driver (as .ci/run does)"
        )


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory, request) -> Iterator[Path]:
    """The folder for screenshots, outside the repository; its path is printed at the end."""
    folder = Path(os.environ.get("ANFE_ARTIFACTS") or tmp_path_factory.getbasetemp())
    folder = folder / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    shots = sorted(folder.glob("*.png"))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter and capture and shots:
        with capture.global_and_fixture_disabled():  # past pytest's output capture
            reporter.write_line(f"\nbrowser screenshots ({len(shots)}) in {folder}")


def start_browser(profile: Path, width: int, *flags: str):
    need_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--window-size={width},{HEIGHT}",
        f"--user-data-dir={profile}",
        *BLOCK_NETWORK,
        *flags,
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    set_viewport(driver, width)
    return driver


def set_viewport(driver, width: int, height: int = HEIGHT) -> None:
    """Resize the window so the page itself is ``width`` CSS pixels wide."""
    driver.set_window_size(width, height)
    inner = driver.execute_script("return window.innerWidth")
    if inner != width:  # window decorations: grow the window by the difference
        size = driver.get_window_size()
        driver.set_window_size(size["width"] + width - inner, height)
    assert driver.execute_script("return window.innerWidth") == width


@pytest.fixture
def open_browser(tmp_path) -> Iterator:
    """``open_browser(width, *flags)``: a headless Chromium with the network blocked."""
    drivers = []

    def start(width: int = 1280, *flags: str):
        driver = start_browser(tmp_path / f"profile-{len(drivers)}", width, *flags)
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.quit()
    for profile in tmp_path.glob("profile-*"):
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(open_browser):
    return open_browser(1280)


@pytest.fixture(scope="module")
def live(tmp_path_factory, small_centroids_doc):
    need_chromium()  # before starting a server for nothing
    folder = tmp_path_factory.mktemp("browser")
    db = str(folder / "db")
    with Store(db) as s:
        s.put_centroids(small_centroids_doc)
    with running_server(db, folder / "server.log", "--no-seed") as base:
        yield base


@pytest.fixture(scope="session")
def group_photo(real_data) -> Path:
    return LFW / GROUP


def wait(driver, seconds: float = 120):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds)


def css(driver, selector: str) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def open_page(driver, base: str) -> None:
    driver.get(base + "/")
    wait(driver).until(lambda d: css(d, "#centroids option[value='g_60']"))


def predict(base: str, photo: Path) -> dict:
    files = {"file": (photo.name, photo.read_bytes(), "image/jpeg")}
    resp = requests.post(base + "/predict", files=files, timeout=120)
    assert resp.status_code == 200, resp.text
    return resp.json()


def upload(driver, photo: Path, faces: int) -> None:
    driver.find_element("id", "file").send_keys(str(photo))
    wait(driver).until(lambda d: len(css(d, ".face-box")) == faces and "Done" in status(d))


def status(driver) -> str:
    return driver.find_element("id", "status").text


def page_overflow(driver) -> int:
    """How many CSS pixels the page is wider than the window (0: no horizontal scroll)."""
    return driver.execute_script(
        "const e = document.documentElement;"
        "return Math.max(e.scrollWidth, document.body.scrollWidth) - e.clientWidth;"
    )


def assert_boxes_on_faces(driver, result: dict) -> None:
    """Each drawn box covers exactly the image area the response gives for its face (±1.5 px)."""
    rects = driver.execute_script(
        "const r = (el) => el.getBoundingClientRect().toJSON();"
        "return {image: r(document.getElementById('photo')),"
        " boxes: [...document.querySelectorAll('.face-box')].map(r)};"
    )
    image, boxes = rects["image"], rects["boxes"]
    sx = image["width"] / result["image"]["width"]
    sy = image["height"] / result["image"]["height"]
    assert len(boxes) == len(result["faces"])
    for drawn, face in zip(boxes, result["faces"], strict=True):
        b = face["box"]
        expected = {
            "left": image["left"] + b["left"] * sx,
            "right": image["left"] + b["right"] * sx,
            "top": image["top"] + b["top"] * sy,
            "bottom": image["top"] + b["bottom"] * sy,
        }
        for side, value in expected.items():
            assert drawn[side] == pytest.approx(value, abs=1.5), (side, drawn, expected)
        assert image["left"] - 0.5 <= drawn["left"] and drawn["right"] <= image["right"] + 0.5
        assert image["top"] - 0.5 <= drawn["top"] and drawn["bottom"] <= image["bottom"] + 0.5


def outside_requests(driver, base: str) -> list[str]:
    """URLs the browser tried to fetch from anywhere but the test server (performance log).

    A request the page's Content-Security-Policy stopped never left the browser: not counted.
    """
    urls, stopped = {}, set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message["params"]
        if message["method"] == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
        elif message["method"] == "Network.loadingFailed" and params.get("blockedReason"):
            stopped.add(params["requestId"])
    network = {
        rid: u for rid, u in urls.items() if u.split(":", 1)[0] in ("http", "https", "ws", "wss")
    }
    assert any(u.startswith(base + "/") for u in network.values()), "no request was logged"
    return [u for rid, u in network.items() if rid not in stopped and not u.startswith(base + "/")]


def screenshot(driver, path: Path) -> None:
    """The whole page, not only the window, as a PNG."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))


@pytest.mark.parametrize("width, resized", [(1280, 700), (390, 340)])
def test_page_layout_follows_the_window(open_browser, live, group_photo, artifacts, width, resized):
    result = predict(live, group_photo)
    uncertain = [f["uncertain"] for f in result["faces"]]
    assert True in uncertain and False in uncertain, f"{GROUP} no longer mixes certain and not"
    driver = open_browser(width)
    open_page(driver, live)
    assert page_overflow(driver) <= 0
    screenshot(driver, artifacts / f"page-{width}-empty.png")

    upload(driver, group_photo, len(result["faces"]))
    assert page_overflow(driver) <= 0
    assert_boxes_on_faces(driver, result)
    screenshot(driver, artifacts / f"page-{width}-result.png")

    set_viewport(driver, resized)
    wait(driver, 10).until(lambda d: d.execute_script("return window.innerWidth") == resized)
    assert page_overflow(driver) <= 0
    assert_boxes_on_faces(driver, result)
    screenshot(driver, artifacts / f"page-{width}-resized-{resized}.png")

    boxes = css(driver, ".face-box")
    rows = css(driver, "#table tbody tr")
    for face, box, row in zip(result["faces"], boxes, rows, strict=True):
        classes = box.get_attribute("class").split()
        assert face["gender"] in classes
        assert ("uncertain" in classes) == face["uncertain"]
        assert ("uncertain" in box.text) == face["uncertain"]
        assert ("uncertain" in row.text) == face["uncertain"]
        style = driver.execute_script("return getComputedStyle(arguments[0]).borderStyle", box)
        assert style == ("dashed" if face["uncertain"] else "solid")
    # the table scrolls inside its own box: it never widens the page
    wrap = driver.find_element("id", "table-wrap")
    assert driver.execute_script("return getComputedStyle(arguments[0]).overflowX", wrap) == "auto"
    assert outside_requests(driver, live) == []


# -- a crowded photo: real LFW faces pasted side by side ----------------------------------------

CROWD = 9  # photos pasted; the test needs at least 7 faces found


@pytest.fixture(scope="module")
def crowded_photo(tmp_path_factory, real_data) -> Path:
    """A 3 x 3 grid of LFW photos cut close around their faces (180 px each), as one JPEG: a
    crowded group photo of real faces, made in the test (no image is committed)."""
    from PIL import Image

    from tests.helpers import read_labels

    rows = read_labels(LFW)
    women = [r for r in rows if r["gender"] == "female"][:5]
    men = [r for r in rows if r["gender"] == "male"][:4]
    side, cut = 180, 35  # each 250 px photo cut to its centre 180 px
    canvas = Image.new("RGB", (3 * side, 3 * side), "white")
    for k, row in enumerate(women + men):
        with Image.open(LFW / row["path"]) as im:
            face = im.convert("RGB").crop((cut, cut, cut + side, cut + side))
        canvas.paste(face, ((k % 3) * side, (k // 3) * side))
    path = tmp_path_factory.mktemp("crowd") / "crowded.jpg"
    canvas.save(path, "JPEG", quality=92)
    return path


def label_rects(driver) -> list[dict]:
    return driver.execute_script(
        "return [...document.querySelectorAll('.face-label')]"
        ".map((el) => el.getBoundingClientRect().toJSON());"
    )


def overlapping(rects: list[dict]) -> list[tuple[int, int]]:
    """Pairs of face numbers whose labels' bounding rectangles overlap (more than 0.5 px)."""
    return [
        (i + 1, j + 1)
        for i, a in enumerate(rects)
        for j, b in enumerate(rects[i + 1 :], i + 1)
        if min(a["right"], b["right"]) - max(a["left"], b["left"]) > 0.5
        and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > 0.5
    ]


@pytest.mark.parametrize("width, resized", [(1280, 800), (390, 340)])
def test_crowded_photo_labels_never_overlap_and_the_table_fits(
    open_browser, live, crowded_photo, artifacts, width, resized
):
    result = predict(live, crowded_photo)
    n = len(result["faces"])
    assert n >= 7, f"only {n} faces found in the crowded photo"
    driver = open_browser(width)
    open_page(driver, live)
    upload(driver, crowded_photo, n)
    screenshot(driver, artifacts / f"page-{width}-crowded.png")
    assert overlapping(label_rects(driver)) == []
    assert page_overflow(driver) <= 0
    assert_boxes_on_faces(driver, result)
    for face, box in zip(result["faces"], css(driver, ".face-box"), strict=True):
        # every uncertain face shows its mark ("uncertain", or "?" on a compact label)
        warn = box.find_elements("css selector", ".chip.warn")
        assert bool(warn) == face["uncertain"]
        if warn:
            assert warn[0].is_displayed() and warn[0].size["width"] > 0
    if width >= 1280:  # the table shows every column without scrolling sideways
        wrap = driver.find_element("id", "table-wrap")
        scroll = driver.execute_script(
            "return arguments[0].scrollWidth - arguments[0].clientWidth", wrap
        )
        assert scroll <= 0, f"the table scrolls {scroll} px sideways at {width} px"
    set_viewport(driver, resized)  # the labels are placed again for the new size
    wait(driver, 10).until(lambda d: not overlapping(label_rects(d)))
    assert_boxes_on_faces(driver, result)
    screenshot(driver, artifacts / f"page-{width}-crowded-resized-{resized}.png")


def test_confidence_below_one_never_shows_as_100_percent(browser, live):
    open_page(browser, live)
    shown = browser.execute_script("return [0.995, 0.9999, 1, 0.5, 0.874].map(pct)")
    assert shown == ["99.5%", "99.9%", "100%", "50%", "87%"]


def test_uploaded_photo_gets_a_labelled_box(browser, live, lfw_female, lfw_male):
    open_page(browser, live)
    for photo, gender in ((lfw_female, "female"), (lfw_male, "male")):
        upload(browser, photo, 1)
        [box] = css(browser, ".face-box")  # the previous photo's box is gone
        assert box.get_attribute("data-gender") == gender
        label = box.find_element("class name", "face-label").text
        assert gender in label and "%" in label
        size = box.size
        image = browser.find_element("id", "photo").size
        assert 0 < size["width"] < image["width"] and 0 < size["height"] < image["height"]
        rows = css(browser, "#table tbody tr")
        assert len(rows) == 1 and gender in rows[0].text
    assert "1 face" in browser.find_element("id", "photo").get_attribute("alt")


def send_file_event(driver, photo: Path, script: str) -> None:
    """Run ``script`` with ``dt``, a DataTransfer holding ``photo`` as a File, as a user would."""
    data = base64.b64encode(photo.read_bytes()).decode()
    driver.execute_script(
        "const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));"
        "const dt = new DataTransfer();"
        "dt.items.add(new File([bytes], arguments[1], {type: 'image/jpeg'}));" + script,
        data,
        photo.name,
    )


def test_drop_and_paste_classify_a_photo(browser, live, lfw_female, lfw_male):
    open_page(browser, live)
    send_file_event(
        browser,
        lfw_female,
        "const drop = document.getElementById('drop');"
        "drop.dispatchEvent(new DragEvent('dragenter', {dataTransfer: dt, bubbles: true}));"
        "drop.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true}));",
    )
    wait(browser).until(lambda d: css(d, ".face-box[data-gender='female']"))
    assert "over" not in browser.find_element("id", "drop").get_attribute("class")
    send_file_event(
        browser,
        lfw_male,
        "document.body.dispatchEvent("
        "new ClipboardEvent('paste', {clipboardData: dt, bubbles: true}));",
    )
    wait(browser).until(lambda d: css(d, ".face-box[data-gender='male']"))
    assert len(css(browser, ".face-box")) == 1


def test_bad_file_shows_the_error_message(browser, live, tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("this is a text file with a photo's name")
    open_page(browser, live)
    browser.find_element("id", "file").send_keys(str(notes))
    wait(browser, 60).until(lambda d: "not a JPEG" in status(d))
    assert "error" in browser.find_element("id", "status").get_attribute("class")
    assert not css(browser, ".face-box")
    assert not browser.find_element("id", "result").is_displayed()  # no empty photo card


def test_failed_upload_after_a_result_leaves_no_photo_card(browser, live, tmp_path, lfw_female):
    open_page(browser, live)
    upload(browser, lfw_female, 1)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(lfw_female.read_bytes()[:5000])
    browser.find_element("id", "file").send_keys(str(truncated))
    wait(browser, 60).until(lambda d: "cannot decode" in status(d))
    assert not browser.find_element("id", "result").is_displayed()
    assert not css(browser, ".face-box")


def test_camera_button_is_hidden_without_a_camera(browser, live):
    open_page(browser, live)
    has_media = browser.execute_script("return !!(navigator.mediaDevices && isSecureContext)")
    cameras = browser.execute_async_script(
        "const done = arguments[0];"
        "navigator.mediaDevices.enumerateDevices()"
        ".then((ds) => done(ds.filter((d) => d.kind === 'videoinput').length));"
    )
    assert has_media and cameras == 0  # headless Chromium without a fake device has no camera
    assert not browser.find_element("id", "camera").is_displayed()


def test_camera_button_takes_a_photo(open_browser, live, artifacts):
    driver = open_browser(
        1280, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"
    )
    open_page(driver, live)
    camera = wait(driver, 30).until(lambda d: d.find_element("id", "camera"))
    wait(driver, 30).until(lambda d: camera.is_displayed())
    camera.click()
    wait(driver, 30).until(
        lambda d: d.execute_script("return document.getElementById('video').videoWidth > 0")
    )
    assert driver.execute_script("return document.getElementById('camdialog').open")
    screenshot(driver, artifacts / "page-1280-camera.png")
    driver.find_element("id", "camshoot").click()
    # Chromium's fake camera shows a test pattern: the frame reaches the service, which finds
    # no face in it
    wait(driver).until(lambda d: "No face found" in status(d))
    assert not driver.execute_script("return document.getElementById('camdialog').open")
    assert driver.find_element("id", "photo").get_attribute("src").startswith("blob:")


@pytest.mark.parametrize("width", [1280, 390])
def test_docs_list_the_operations_offline(open_browser, live, artifacts, width):
    driver = open_browser(width)
    driver.get(live + "/docs")
    wait(driver, 60).until(lambda d: len(css(d, ".opblock-summary-path")) >= len(API_PATHS))
    paths = {el.get_attribute("data-path") for el in css(driver, ".opblock-summary-path")}
    assert paths == API_PATHS
    assert css(driver, "button.authorize")  # the X-API-Key security scheme
    screenshot(driver, artifacts / f"docs-{width}.png")

    driver.get(live + "/redoc")
    wait(driver, 60).until(lambda d: "Gender of every face in one image" in d.page_source)
    wait(driver, 60).until(lambda d: "X-API-Key" in d.find_element("tag name", "body").text)
    screenshot(driver, artifacts / f"redoc-{width}.png")
    assert outside_requests(driver, live) == []


def test_age_is_shown_only_when_the_response_has_it(browser, live, lfw_female):
    result = predict(live, lfw_female)
    assert result["faces"][0]["age"]["model"] == "g_5000-mahalanobis"  # g_60 borrows it
    open_page(browser, live)
    upload(browser, lfw_female, 1)
    age_header = browser.find_element("css selector", "th.age-col")
    assert age_header.is_displayed()
    assert " · age " in css(browser, ".face-box")[0].text
    # the same real response, as an older service without ages answered it
    result["faces"][0]["age"] = None
    browser.execute_script("clearResult(); draw(arguments[0]);", result)
    assert not age_header.is_displayed()
    assert "age" not in css(browser, ".face-box")[0].text
    result["faces"][0]["age"] = {"value": 31.6, "low": 25.2, "high": 38.4, "model": "g_60"}
    browser.execute_script("clearResult(); draw(arguments[0]);", result)
    assert age_header.is_displayed()
    assert "age 32 (25–38)" in css(browser, ".face-box")[0].text
    assert "32 (25–38)" in css(browser, "#table tbody tr")[0].text


def test_a_face_found_on_the_second_pass_says_so_in_the_table(browser, live, lfw_female):
    result = predict(live, lfw_female)
    assert result["faces"][0]["detection"] == "first_pass"
    open_page(browser, live)
    upload(browser, lfw_female, 1)
    assert "second pass" not in css(browser, "#table tbody tr")[0].text
    # the same real response, as the service answers a tight crop (tests/centroids/test_ages.py)
    result["faces"][0]["detection"] = "second_pass"
    browser.execute_script("clearResult(); draw(arguments[0]);", result)
    assert "found on second pass" in css(browser, "#table tbody tr")[0].text


KEY = "browser-test-key"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, small_centroids_doc):
    """A live server that needs ``X-API-Key: KEY``."""
    need_chromium()
    folder = tmp_path_factory.mktemp("browser-keyed")
    db = str(folder / "db")
    with Store(db) as s:
        s.put_centroids(small_centroids_doc)
    env = {"ANFE_API_KEYS": KEY}
    with running_server(db, folder / "server.log", "--no-seed", env=env) as base:
        yield base


def test_page_asks_for_the_key_and_sends_it(browser, keyed, lfw_female):
    browser.get(keyed + "/")
    key = wait(browser, 60).until(lambda d: d.find_element("id", "apikey"))
    wait(browser, 60).until(lambda d: key.is_displayed() and "API key" in status(d))
    key.send_keys(KEY + "\t")  # leaving the field applies it
    wait(browser, 60).until(lambda d: css(d, "#centroids option[value='g_60']"))
    upload(browser, lfw_female, 1)


def test_docs_authorize_sends_the_key(open_browser, keyed, artifacts):
    driver = open_browser(1280)
    driver.get(keyed + "/docs")  # the page and the schema open without a key
    operation = wait(driver, 60).until(
        lambda d: d.find_element("id", "operations-default-list_centroids_centroids_get")
    )

    def execute(expected: str) -> None:
        operation.find_element("css selector", "button.execute").click()
        cell = "#operations-default-list_centroids_centroids_get .live-responses-table tbody td"
        wait(driver, 60).until(
            lambda d: any(
                c.text.startswith(expected) for c in css(d, cell + ".response-col_status")
            )
        )

    operation.find_element("css selector", ".opblock-summary").click()
    execute("401")  # no key yet
    driver.find_element("css selector", ".scheme-container button.authorize").click()
    dialog = wait(driver, 10).until(lambda d: d.find_element("css selector", ".auth-container"))
    dialog.find_element("css selector", "input").send_keys(KEY)
    dialog.find_element("css selector", "button.authorize").click()
    driver.find_element("css selector", "button.btn-done").click()
    execute("200")
    screenshot(driver, artifacts / "docs-1280-authorized.png")
    assert outside_requests(driver, keyed) == []
