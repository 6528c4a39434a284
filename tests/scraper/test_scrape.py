"""``anfe scrape`` against the local fake site: adapters, layout, manifest, resume, hostile input."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from anfe.centroids.errors import InvalidParameter  # noqa: E402
from anfe.scraper.errors import SeedError  # noqa: E402
from anfe.scraper.fetcher import Fetcher, FetchSettings  # noqa: E402
from anfe.scraper.output import Manifest, safe_join, slugify  # noqa: E402
from anfe.scraper.scrape import Limits, Scraper, people_from_facescrub, people_from_seeds  # noqa: E402
from anfe.scraper.sources import default_sources  # noqa: E402
from anfe.scraper.sources.base import Seed  # noqa: E402
from anfe.scraper.sources.facescrub import parse_list  # noqa: E402
from anfe.scraper.sources.seedlist import parse_seeds  # noqa: E402
from tests.helpers import LFW, free_port  # noqa: E402
from tests.scraper.site.fakesite import FakeSite, Reply

ANFE = str(Path(sys.executable).with_name("anfe"))


@pytest.fixture
def site():
    s = FakeSite()
    yield s
    s.close()


def lfw_photos(lfw_rows, gender: str, n: int, skip: int = 0) -> list[Path]:
    rows = [r for r in lfw_rows if r["gender"] == gender]
    return [LFW / r["path"] for r in rows[skip : skip + n]]


def make_scraper(site: FakeSite, out: Path, **limits) -> Scraper:
    fetcher = Fetcher(
        FetchSettings(delay=0.0, retries=1, backoff=0.0, read_timeout=2.0, allow_private_hosts=True)
    )
    sources = default_sources(
        {"listal": site.url("/listal/"), "filmweb": site.url("/filmweb/")},
        {"listal": site.host, "filmweb": site.host},
    )
    return Scraper(out, fetcher, sources, Limits(**limits))


def saved(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.jpg") if not p.name.startswith("."))


def test_listal_follows_pagination_to_every_picture(site, tmp_path, lfw_rows):
    photos = lfw_photos(lfw_rows, "female", 5)
    url = site.listal_person("jane-doe", "Jane Doe", photos, per_page=2)
    s = make_scraper(site, tmp_path / "raw")
    s.run(people_from_seeds([Seed("Jane Doe", "female", url)]), progress=False)
    files = saved(tmp_path / "raw" / "female" / "jane-doe")
    assert {hashlib.sha256(p.read_bytes()).hexdigest() for p in files} == {
        hashlib.sha256(p.read_bytes()).hexdigest() for p in photos
    }
    assert site.hits["/listal/jane-doe/pictures//3"] == 1  # the third page was reached
    entries = Manifest(tmp_path / "raw").entries
    assert all(e["source"] == "listal" and e["status"] == "saved" for e in entries)
    assert all(e["url"].endswith("/10000full.jpg") and "via" not in e for e in entries)
    assert not [p for p in site.hits if "/viewimage/" in p]  # built from the id: half the requests


def test_listal_falls_back_to_the_viewimage_page_when_the_large_image_fails(
    site, tmp_path, lfw_rows
):
    photos = lfw_photos(lfw_rows, "female", 4)
    url = site.listal_person("jane-doe", "Jane Doe", photos, per_page=2, broken_large=(1, 2))
    s = make_scraper(site, tmp_path / "raw")
    s.run(people_from_seeds([Seed("Jane Doe", "female", url)]), progress=False)
    assert len(saved(tmp_path / "raw" / "female" / "jane-doe")) == 4
    entries = Manifest(tmp_path / "raw").entries
    vias = sorted(e["via"].rsplit("/", 1)[1] for e in entries if "via" in e)
    assert vias == ["1030full-jane-doe.jpg", "1030full.jpg"]  # with and without a slug
    assert len([p for p in site.hits if "/viewimage/" in p]) == 2  # only for the broken ones


def test_filmweb_portrait_and_gallery_pages(site, tmp_path, lfw_rows):
    photos = lfw_photos(lfw_rows, "male", 4)
    url = site.filmweb_person("Jan+Kowalski-123", "Jan Kowalski", photos, per_page=2)
    s = make_scraper(site, tmp_path / "raw")
    s.run(people_from_seeds([Seed("Jan Kowalski", "male", url)]), progress=False)
    assert len(saved(tmp_path / "raw" / "male" / "jan-kowalski")) == 4
    assert site.hits["/filmweb/person/Jan+Kowalski-123/photos?page=2"] == 1
    assert site.hits["/front/logo/filmweb-logo.png"] == 0  # site assets are not photos
    assert len([e for e in Manifest(tmp_path / "raw").entries if "/fph/" in e["url"]]) == 3


def test_filmweb_person_api_gives_the_portrait_without_the_person_page(site, tmp_path, lfw_rows):
    photos = lfw_photos(lfw_rows, "male", 3)
    url = site.filmweb_person("Jan+Kowalski-123", "Jan Kowalski", photos, api=True)
    s = make_scraper(site, tmp_path / "raw")
    s.run(people_from_seeds([Seed("Jan Kowalski", "male", url)]), progress=False)
    assert len(saved(tmp_path / "raw" / "male" / "jan-kowalski")) == 3
    urls = [e["url"] for e in Manifest(tmp_path / "raw").entries]
    assert urls[0] == site.url("/ppo/23/123/7530135.3.jpg")
    assert site.hits["/filmweb/api/v1/person/123/info"] == 1
    assert site.hits["/filmweb/person/Jan+Kowalski-123"] == 0


def test_same_photo_under_two_urls_is_saved_once(site, tmp_path, lfw_female):
    a = site.photo("/files/a.jpg", lfw_female)
    b = site.photo("/files/copy-of-a.jpg", lfw_female)
    s = make_scraper(site, tmp_path / "raw")
    s.run(people_from_seeds([Seed("Ann", "female", a), Seed("Ann", "female", b)]), progress=False)
    assert len(saved(tmp_path / "raw")) == 1
    statuses = sorted(e["status"] for e in Manifest(tmp_path / "raw").entries)
    assert statuses == ["duplicate", "saved"]


def test_faults_are_recorded_and_good_images_still_saved(site, tmp_path, lfw_female, lfw_male):
    seeds = [
        Seed("A", "female", site.photo("/files/ok.jpg", lfw_female)),
        Seed("B", "male", site.add("/files/fake.jpg", b"<html>captcha</html>", "image/jpeg")),
        Seed("C", "male", site.photo("/private/no.jpg", lfw_male)),
        Seed("D", "male", site.add("/files/gone.jpg", b"", "text/plain", status=404)),
        Seed("E", "male", site.photo("/files/slow.jpg", lfw_male, delay=4.0)),
    ]
    s = make_scraper(site, tmp_path / "raw")
    s.run(people_from_seeds(seeds), progress=False)
    outcome = {e["person"]: e.get("error", e["status"]) for e in Manifest(tmp_path / "raw").entries}
    assert outcome == {
        "A": "saved",
        "B": "not_an_image",
        "C": "robots_disallowed",
        "D": "http_error",
        "E": "timeout",
    }
    assert len(saved(tmp_path / "raw")) == 1


def test_rerun_downloads_nothing_again_but_retries_transient_failures(site, tmp_path, lfw_rows):
    photos = lfw_photos(lfw_rows, "female", 3)
    url = site.listal_person("ann", "Ann", photos, per_page=3)
    flaky = site.add("/files/flaky.jpg", [Reply(b"", "text/plain", 503)] * 3 + [
        Reply(photos[0].read_bytes(), "image/jpeg")])  # fmt: skip
    people = people_from_seeds([Seed("Ann", "female", url), Seed("Bo", "male", flaky)])
    make_scraper(site, tmp_path / "raw").run(people, progress=False)
    image_hits = {p: n for p, n in site.hits.items() if "10000full" in p}
    assert site.hits["/files/flaky.jpg"] == 2  # 503, retried once, failed for now
    make_scraper(site, tmp_path / "raw").run(people, progress=False)
    assert {p: n for p, n in site.hits.items() if "10000full" in p} == image_hits
    assert site.hits["/files/flaky.jpg"] == 4  # retried on the rerun, and got it
    assert len(saved(tmp_path / "raw" / "male")) == 1


def test_max_per_person_and_max_people(site, tmp_path, lfw_rows):
    seeds = [
        Seed(f"P{i}", "female", site.listal_person(f"p{i}", f"P{i}", lfw_photos(lfw_rows, "female", 3, 3 * i)))
        for i in range(3)
    ]  # fmt: skip
    s = make_scraper(site, tmp_path / "raw", max_per_person=2, max_people=2)
    s.run(people_from_seeds(seeds), progress=False)
    folders = sorted(p.name for p in (tmp_path / "raw" / "female").iterdir())
    assert folders == ["p0", "p1"]
    assert [len(saved(tmp_path / "raw" / "female" / f)) for f in folders] == [2, 2]


def test_facescrub_list_checks_sha256_and_saves_photo_and_crop(site, tmp_path, lfw_female):
    good = lfw_female.read_bytes()
    url = site.photo("/files/fs1.jpg", lfw_female)
    url2 = site.photo("/files/fs2.jpg", lfw_female)
    sha = hashlib.sha256(good).hexdigest()
    text = (
        "name\timage_id\tface_id\turl\tbbox\tsha256\n"
        f"Jane Roe\t1\t1\t{url}\t60,60,190,190\t{sha}\n"
        f"Jane Roe\t2\t2\t{url2}\t60,60,190,190\t{'0' * 64}\n"
        "Jane Roe\tbroken line\n"
    )
    fl = parse_list(text, "female")
    assert fl.bad_lines == [4]
    s = make_scraper(site, tmp_path / "fs")
    s.run(people_from_facescrub([fl]), progress=False)
    photos = saved(tmp_path / "fs" / "actresses" / "jane-roe")
    assert [p.read_bytes() for p in photos] == [good]
    crop = saved(tmp_path / "fs" / "crops" / "actresses" / "jane-roe")
    assert Image.open(crop[0]).size == (130, 130)
    errors = [e.get("error") for e in Manifest(tmp_path / "fs").entries if e["status"] == "error"]
    assert errors == ["sha256_mismatch"]


@pytest.mark.parametrize(
    "name",
    ["../../x", "/etc/passwd", "x" * 300, "..", "Ａ/../../b", "名前", "\x00evil", "C:\\Windows"],
)
def test_hostile_names_stay_inside_out(site, tmp_path, lfw_female, name):
    url = site.photo("/files/a.jpg", lfw_female)
    out = tmp_path / "box" / "raw"
    make_scraper(site, out).run(people_from_seeds([Seed(name, "female", url)]), progress=False)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(p.resolve().is_relative_to(out.resolve()) for p in written)
    person_dirs = list((out / "female").iterdir())
    assert len(person_dirs) == 1 and len(person_dirs[0].name) <= 80


def test_unicode_names_become_readable_slugs():
    assert slugify("Małgorzata Kożuchowska") == "malgorzata-kozuchowska"
    assert slugify("Zoë Saldaña") == "zoe-saldana"
    assert slugify("名前") != slugify("別名")  # no Latin letters: distinct hashed slugs


def test_safe_join_refuses_escaping_components(tmp_path):
    for bad in ("..", "a/b", "/etc", ""):
        with pytest.raises(InvalidParameter):
            safe_join(tmp_path, bad)


def test_seed_csv_errors_name_the_line():
    with pytest.raises(SeedError, match="line 3"):
        parse_seeds("name,gender,url\nA,female,http://x/a.jpg\nB,robot,http://x/b.jpg\n")
    with pytest.raises(SeedError, match="columns"):
        parse_seeds("who,url\nA,http://x\n")


def test_manifest_survives_a_line_cut_short(tmp_path):
    out = tmp_path / "raw"
    out.mkdir()
    good = {"url": "http://x/a.jpg", "person": "A", "gender": "female", "status": "saved"}
    (out / "manifest.jsonl").write_text(json.dumps(good) + '\n{"url": "http://x/b.j')
    m = Manifest(out)
    assert m.done == {"http://x/a.jpg"}


def run_cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([ANFE, *args], capture_output=True, text=True, timeout=300, **kw)


def write_seeds(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    lines = ["name,gender,url"] + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def site_args(site: FakeSite) -> list[str]:
    return [
        "--base", f"listal={site.url('/listal/')}", "--base", f"filmweb={site.url('/filmweb/')}",
        "--image-domain", f"listal={site.host}", "--image-domain", f"filmweb={site.host}",
        "--delay", "0", "--no-progress", "--allow-private-hosts",
    ]  # fmt: skip


def test_killed_run_resumes_without_downloading_twice(site, tmp_path, lfw_rows):
    photos = lfw_photos(lfw_rows, "male", 8)
    url = site.listal_person("slow-man", "Slow Man", photos, per_page=4)
    for path, replies in list(site.routes.items()):  # every image takes a while
        if "10000full" in path:
            replies[0].delay = 0.4
    seeds = write_seeds(tmp_path / "seeds.csv", [("Slow Man", "male", url)])
    out = tmp_path / "raw"
    args = [ANFE, "scrape", "--seeds", str(seeds), "--out", str(out), *site_args(site)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if manifest.exists() and manifest.read_text().count("\n") >= 3:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {json.loads(line)["url"] for line in manifest.read_text().splitlines()}
    assert 3 <= len(done_before) < 8
    result = run_cli("scrape", "--seeds", str(seeds), "--out", str(out), *site_args(site))
    assert result.returncode == 0, result.stderr
    for u in done_before:
        assert site.hits[u.replace(site.base, "")] == 1
    assert len(saved(out / "male" / "slow-man")) == 8
    assert not list(out.rglob("*.part"))


def test_cli_reports_bad_input_in_one_line(tmp_path):
    bad = write_seeds(tmp_path / "seeds.csv", [("A", "unknown", "http://127.0.0.1:9/a.jpg")])
    result = run_cli("scrape", "--seeds", str(bad), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "line 2" in result.stderr
    result = run_cli("scrape", "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "--seeds" in result.stderr
    assert "Traceback" not in result.stderr


def test_scrape_clean_build_end_to_end(site, tmp_path, lfw_rows):
    women = lfw_photos(lfw_rows, "female", 4, skip=20)
    men = lfw_photos(lfw_rows, "male", 4, skip=20)
    seeds = write_seeds(
        tmp_path / "seeds.csv",
        [
            ("Małgorzata Kożuchowska", "female", site.listal_person("mk", "MK", women, per_page=2)),
            ("Jan Kowalski", "male", site.filmweb_person("Jan+Kowalski-7", "JK", men)),
        ],
    )
    raw, clean_dir, db = tmp_path / "raw", tmp_path / "clean", str(tmp_path / "db")
    scraped = run_cli("scrape", "--seeds", str(seeds), "--out", str(raw), *site_args(site))
    assert scraped.returncode == 0, scraped.stderr
    assert len(saved(raw / "female" / "malgorzata-kozuchowska")) == 4
    cleaned = run_cli(
        "clean", str(raw), "--out", str(clean_dir), "--db", db, "--jobs", "1", "--no-progress"
    )
    assert cleaned.returncode == 0, cleaned.stderr
    assert "kept" in cleaned.stdout
    built = run_cli("build", str(clean_dir), "--sizes", "2", "--db", db, "--jobs", "1",
                    "--no-progress")  # fmt: skip
    assert built.returncode == 0, built.stderr + built.stdout
    listed = run_cli("centroids", "list", "--db", db)
    assert "g_2 " in listed.stdout


def test_start_removes_only_its_own_partial_files(site, tmp_path, lfw_female):
    out = tmp_path / "raw"
    own = out / "female" / "ann" / ".0123456789abcdef.jpg.4242.part"
    own_crop = out / "crops" / "actresses" / "ann" / ".fedcba9876543210.jpg.7.part"
    theirs = [
        out / "my-notes" / ".draft.docx.part",
        out / "female" / "ann" / ".notes.txt.part",
        out / "female" / ".0123456789abcdef.jpg.part",
        out / "elsewhere" / ".0123456789abcdef.jpg.4242.part",
    ]
    for p in (own, own_crop, *theirs):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
    make_scraper(site, out)
    assert not own.exists() and not own_crop.exists()
    assert all(p.read_bytes() == b"half" for p in theirs)


def test_host_that_is_down_is_retried_on_the_next_run(tmp_path, lfw_female):
    port = free_port()  # nothing listens there yet
    url = f"http://127.0.0.1:{port}/files/a.jpg"
    people = people_from_seeds([Seed("Ann", "female", url)])
    fetcher = Fetcher(FetchSettings(delay=0.0, retries=0, allow_private_hosts=True))
    Scraper(tmp_path / "raw", fetcher, default_sources()).run(people, progress=False)
    (entry,) = Manifest(tmp_path / "raw").entries
    assert entry["error"] == "robots_unreachable" and entry["transient"] is True
    site = FakeSite(port=port)  # the host comes up
    try:
        site.photo("/files/a.jpg", lfw_female)
        fetcher = Fetcher(FetchSettings(delay=0.0, retries=0, allow_private_hosts=True))
        Scraper(tmp_path / "raw", fetcher, default_sources()).run(people, progress=False)
        assert site.hits["/robots.txt"] == 1 and site.hits["/files/a.jpg"] == 1
        assert len(saved(tmp_path / "raw" / "female")) == 1
    finally:
        site.close()


def test_base_rewrites_seed_urls_of_that_source(site, tmp_path, lfw_rows):
    photos = lfw_photos(lfw_rows, "male", 2)
    site.listal_person("john-roe", "John Roe", photos)
    site.filmweb_person("John+Roe-5", "John Roe", photos)
    seeds = [
        Seed("John Roe", "male", "https://www.listal.com/john-roe"),
        Seed("John Roe", "male", "https://www.filmweb.pl/person/John+Roe-5"),
    ]
    make_scraper(site, tmp_path / "raw").run(people_from_seeds(seeds), progress=False)
    entries = Manifest(tmp_path / "raw").entries
    assert {e["source"] for e in entries} == {"listal", "filmweb"}
    assert all(e["status"] in ("saved", "duplicate") for e in entries)
    assert site.hits["/listal/john-roe/pictures"] == 1
    assert site.hits["/filmweb/person/John+Roe-5"] == 1


def test_cli_refuses_private_hosts_unless_allowed(site, tmp_path, lfw_female):
    url = site.photo("/files/a.jpg", lfw_female)
    port = site.server.server_address[1]
    seeds = write_seeds(
        tmp_path / "seeds.csv",
        [("A", "female", url), ("B", "female", f"http://2130706433:{port}/files/a.jpg")],
    )
    out = tmp_path / "raw"
    result = run_cli("scrape", "--seeds", str(seeds), "--out", str(out), "--delay", "0",
                     "--no-progress")  # fmt: skip
    assert result.returncode == 3, result.stderr  # every download failed
    errors = [e.get("error") for e in Manifest(out).entries]
    assert errors == ["private_address", "private_address"] and not site.log
    result = run_cli("scrape", "--seeds", str(seeds), "--out", str(out), *site_args(site))
    assert result.returncode == 0, result.stderr  # the rerun with the flag fetches them
    assert len(saved(out / "female")) == 2 and site.hits["/files/a.jpg"] == 2


def test_cli_exits_3_when_downloads_fail_and_names_allow_private_hosts(site, tmp_path, lfw_female):
    urls = [site.photo(f"/files/{n}.jpg", lfw_female) for n in "abcd"]  # all on 127.0.0.1
    rows = [(f"P{i}", "female", u) for i, u in enumerate(urls)]
    seeds = write_seeds(tmp_path / "seeds.csv", rows)
    out = str(tmp_path / "raw")
    result = run_cli("scrape", "--seeds", str(seeds), "--out", out, "--delay", "0", "--no-progress")
    assert result.returncode == 3, result.stderr
    assert "0 saved, 0 duplicates, 4 failed" in result.stdout
    assert "anfe: 4 of 4 downloads failed" in result.stderr
    assert "--allow-private-hosts" in result.stderr and "Traceback" not in result.stderr
    assert not site.log


def test_cli_failed_count_matches_the_table_when_a_list_names_a_url_twice(site, tmp_path):
    gone = site.add("/files/gone.jpg", b"", "text/plain", status=503)  # transient: retried later
    listed = tmp_path / "facescrub_actors.txt"
    listed.write_text(
        "name\timage_id\tface_id\turl\tbbox\tsha256\n"
        + "".join(f"John Roe\t{i}\t{i}\t{gone}\t1,1,9,9\t{'0' * 64}\n" for i in (1, 2)),
        encoding="utf-8",
    )
    out = tmp_path / "fs"
    result = run_cli("scrape", "--facescrub", str(listed), "--out", str(out), *site_args(site),
                     "--retries", "0")  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "0 saved, 0 duplicates, 1 failed" in result.stdout
    table = [line.split() for line in result.stdout.splitlines() if line.startswith("http_error")]
    assert table == [["http_error", "0", "1"]]
    assert site.hits["/files/gone.jpg"] == 1
    assert "--allow-private-hosts" not in result.stderr  # it was given
