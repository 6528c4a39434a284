"""The scraper against real saved pages and lists (../shared/fixtures/scraper, never copied here).

What each file is and where it comes from: ../shared/fixtures/scraper/README.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from anfe.scraper.sources.facescrub import parse_list  # noqa: E402
from anfe.scraper.sources.listal import Listal  # noqa: E402
from tests.helpers import LFW, ROOT  # noqa: E402
from tests.scraper.site.fakesite import FakeSite

FIXTURES = (
    Path(os.environ.get("ANFE_TEST_FIXTURES", ROOT.parent / "shared" / "fixtures")).resolve()
    / "scraper"
)
ANFE = str(Path(sys.executable).with_name("anfe"))
PAGE1 = "listal/marilyn-monroe_pictures_page1.html"
LAST = "listal/marilyn-monroe_pictures_page371_last.html"
MOVIE = "listal/movie-batman_pictures_page1.html"


def fixture(rel: str) -> str:
    path = FIXTURES / rel
    if not path.is_file():
        pytest.fail(
            f"real scraper fixture {path} not found: the tests need ../shared/fixtures/scraper "
            "beside the repository, or ANFE_TEST_FIXTURES pointing at the fixtures folder"
        )
    return path.read_text(encoding="utf-8", errors="replace")


def test_listal_page1_gives_20_pictures_and_a_pager_up_to_371():
    page = Listal().parse_pictures(
        fixture(PAGE1), "https://www.listal.com/marilyn-monroe/pictures", "marilyn-monroe"
    )
    assert len(page.pictures) == 20
    first = page.pictures[0]
    assert first.image_id == "16492033"
    assert first.view_url == "https://www.listal.com/viewimage/16492033"
    assert Listal().largest(first) == "http://i3.lisimg.com/16492033/10000full.jpg"
    assert all(Listal().largest(p) for p in page.pictures)
    assert page.next_url == "https://www.listal.com/marilyn-monroe/pictures//2"
    assert page.last_page == 371


def test_listal_last_page_stops():
    page = Listal().parse_pictures(
        fixture(LAST), "https://www.listal.com/marilyn-monroe/pictures//371", "marilyn-monroe"
    )
    assert len(page.pictures) == 17
    assert page.next_url is None and page.last_page == 371


def test_listal_movie_page():
    listal = Listal()
    assert listal.slug("https://www.listal.com/movie/batman") == "movie/batman"
    page = listal.parse_pictures(
        fixture(MOVIE), "https://www.listal.com/movie/batman/pictures", "movie/batman"
    )
    assert len(page.pictures) == 20
    assert page.next_url == "https://www.listal.com/movie/batman/pictures/2"
    assert page.last_page == 11


def test_listal_links_are_rebased_onto_a_mirror():
    listal = Listal(base="http://127.0.0.1:8000/listal/")
    page = listal.parse_pictures(
        fixture(PAGE1), "http://127.0.0.1:8000/listal/marilyn-monroe/pictures", "marilyn-monroe"
    )
    assert page.pictures[0].view_url == "http://127.0.0.1:8000/listal/viewimage/16492033"
    assert page.next_url == "http://127.0.0.1:8000/listal/marilyn-monroe/pictures//2"


def test_facescrub_real_lists_without_header_and_with_a_truncated_last_line():
    actors = parse_list(fixture("facescrub/facescrub_actors.txt"), "male")
    actresses = parse_list(fixture("facescrub/facescrub_actresses.txt"), "female")
    assert (len(actors.records), actors.bad_lines) == (1549, [])
    assert (len(actresses.records), actresses.bad_lines) == (1554, [1555])
    assert actors.records[0].person == "Alec Baldwin"  # the first line is data, not a header
    assert actors.records[0].bbox == (463, 450, 1785, 1772)
    assert {r.person for r in actresses.records} >= {"Angie Harmon"}


def test_scrape_follows_the_real_pager_on_a_local_mirror(tmp_path, lfw_rows):
    """The real pages, hosts rewritten to the mirror; the seed keeps its real listal URL."""
    site = FakeSite()
    try:
        pages = {}
        for rel, path in (
            (PAGE1, "/marilyn-monroe/pictures"),
            (LAST, "/marilyn-monroe/pictures//2"),
        ):
            html = fixture(rel).replace("http://www.listal.com", site.base)
            html = re.sub(r"http://i\d+\.lisimg\.com", site.base, html)
            pages[path] = site.add(path, html)
        ids = re.findall(r"/viewimage/(\d+)'", "".join(fixture(r) for r in (PAGE1, LAST)))
        photos = [LFW / r["path"] for r in lfw_rows if r["gender"] == "female"][: len(ids)]
        for image_id, photo in zip(ids, photos, strict=True):
            site.photo(f"/{image_id}/10000full.jpg", photo)
        seeds = tmp_path / "seeds.csv"
        seeds.write_text(
            "name,gender,url\nMarilyn Monroe,female,https://www.listal.com/marilyn-monroe\n"
        )
        out = tmp_path / "raw"
        result = subprocess.run(
            [ANFE, "scrape", "--seeds", str(seeds), "--out", str(out), "--delay", "0",
             "--base", f"listal={site.base}/", "--image-domain", f"listal={site.host}",
             "--allow-private-hosts", "--no-progress"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert site.hits["/marilyn-monroe/pictures//2"] == 1  # past page 1
        entries = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
        assert len(ids) == 37 and [e["status"] for e in entries] == ["saved"] * 37
        assert len(list((out / "female" / "marilyn-monroe").glob("*.jpg"))) == 37
        assert not [p for p in site.hits if "/viewimage/" in p]
    finally:
        site.close()
