"""The upload page in headless Chromium against a live ``anfe serve``: a real photo gets a box.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); no
browser is ever downloaded. Without them the test is skipped with the reason in the summary.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from centroids.store import Store

try:
    from tests.test_app_server import running_server
except ImportError:  # tests/ imported as a plain folder rather than a package
    from test_app_server import running_server

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def need_chromium() -> None:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(
            "Chromium not installed: apt-get install chromium chromium-driver (as .ci/run does)"
        )


@pytest.fixture
def browser(tmp_path):
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
        "--window-size=1200,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


@pytest.fixture(scope="module")
def live(tmp_path_factory, small_centroids_doc):
    need_chromium()  # before starting a server for nothing
    folder = tmp_path_factory.mktemp("browser")
    db = str(folder / "db")
    with Store(db) as s:
        s.put_centroids(small_centroids_doc)
    with running_server(db, folder / "server.log", "--no-seed") as base:
        yield base


def test_uploaded_photo_gets_a_labelled_box(browser, live, lfw_female, lfw_male):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(live + "/")
    wait = WebDriverWait(browser, 120)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#centroids option[value='g_60']")))
    for photo, gender in ((lfw_female, "female"), (lfw_male, "male")):
        browser.find_element(By.ID, "file").send_keys(str(photo))
        box = wait.until(
            ec.visibility_of_element_located(
                (By.CSS_SELECTOR, f".face-box[data-gender='{gender}']")
            )
        )
        label = box.find_element(By.CLASS_NAME, "face-label").text
        assert gender in label and "%" in label
        assert len(browser.find_elements(By.CSS_SELECTOR, ".face-box")) == 1  # old box cleared
        size = box.size
        image = browser.find_element(By.ID, "photo").size
        assert 0 < size["width"] < image["width"] and 0 < size["height"] < image["height"]
        rows = browser.find_elements(By.CSS_SELECTOR, "#table tbody tr")
        assert len(rows) == 1 and gender in rows[0].text


def test_bad_file_shows_the_error_message(browser, live, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    notes = tmp_path / "notes.jpg"
    notes.write_text("this is a text file with a photo's name")
    browser.get(live + "/")
    browser.find_element(By.ID, "file").send_keys(str(notes))
    WebDriverWait(browser, 60).until(
        ec.text_to_be_present_in_element((By.ID, "status"), "not a JPEG")
    )
    assert "error" in browser.find_element(By.ID, "status").get_attribute("class")
    assert not browser.find_elements(By.CSS_SELECTOR, ".face-box")
