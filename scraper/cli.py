"""``anfe scrape`` and ``anfe clean``: registered through the ``anfe.commands`` entry points."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anfe.centroids.errors import InvalidParameter
from anfe.options import add_db_option

EXAMPLES_SCRAPE = """examples:
  anfe scrape --seeds seeds.csv --out raw --max-per-person 50
      seeds.csv is `name,gender,url`; url: a listal or filmweb person page, or an image URL:
        name,gender,url
        Natalie Portman,female,https://www.listal.com/natalie-portman
        Małgorzata Kożuchowska,female,https://www.filmweb.pl/person/Malgorzata+Kozuchowska-7010
        Tom Hanks,male,https://example.org/tom-hanks.jpg
  anfe scrape --facescrub facescrub_actresses.txt --facescrub facescrub_actors.txt --out fs
  anfe scrape --seeds seeds.csv --out raw --delay 2 --proxy http://proxy:3128 \\
      --header "Accept-Language: pl"
  anfe scrape --seeds seeds.csv --out raw --base listal=http://127.0.0.1:8000/ \\
      --image-domain listal=127.0.0.1:8000 --allow-private-hosts
      # a local mirror: seeds and links on www.listal.com are rewritten onto the base

Loopback, private and link-local addresses (127.0.0.1, 2130706433, 10.x, 169.254.x, ::1) are
refused on every URL and every redirect unless --allow-private-hosts is given.

Interrupt at any time (Ctrl-C) and rerun the same command to resume: finished URLs are
never downloaded again. OUT/manifest.jsonl records every URL tried and its outcome.

exit status: 0 when every URL of this run was saved (or was a duplicate), 3 when any download
failed (a line on stderr says how many), 6 when a FaceScrub list URL fails or is refused, 2 bad
usage.
"""

EXAMPLES_CLEAN = """examples:
  anfe clean raw --out clean                   # copy; quarantine the bad ones
  anfe clean raw --out clean --move --min-face 60 --centroids g_5000
  anfe clean --apply-review clean/review.csv   # move rows marked `relabel` to the other gender
  anfe build clean --sizes 1000,2000

Quarantine reasons: unreadable, no_face, several_faces, small_face, duplicate,
near_duplicate, other_person. review.csv lists images nearer the other gender's centroid,
strongest disagreement first; write `relabel` in its `action` column to move one.
"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _pairs(values: list[str] | None, what: str, sep: str = "=") -> dict[str, str]:
    out = {}
    for v in values or []:
        key, found, value = v.partition(sep)
        if not found or not key.strip() or not value.strip():
            raise InvalidParameter(f"{what} {v!r} must look like NAME{sep}VALUE")
        out[key.strip()] = value.strip()
    return out


def register_scrape(sub) -> None:
    """Add ``anfe scrape``."""
    p = sub.add_parser(
        "scrape",
        help="download gender-labelled photos from film sites or FaceScrub lists",
        description="Harvest labelled photos politely (robots.txt, a delay per host, retries) "
        "into OUT/{female,male}/<person>/ (FaceScrub lists: OUT/{actresses,actors}/<person>/) "
        "with a manifest. Gender comes from the seeds, never from the images.",
        epilog=EXAMPLES_SCRAPE,
        formatter_class=_formatter,
    )
    p.add_argument("--seeds", type=Path, action="append", help="CSV name,gender,url (repeatable)")
    p.add_argument(
        "--facescrub",
        action="append",
        metavar="LIST",
        help="FaceScrub list file or URL; gender from its name (actresses/actors) or "
        "given as actresses=LIST / actors=LIST (repeatable)",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--max-per-person", type=int, default=None, help="images kept per person")
    p.add_argument("--max-people", type=int, default=None, help="people harvested")
    p.add_argument(
        "--delay",
        type=float,
        default=1.0,
        help="seconds between requests to a host (default: %(default)s)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=3,
        help="retries on errors, 429 and 5xx (default: %(default)s)",
    )
    p.add_argument(
        "--timeout", type=float, default=20.0, help="read timeout in seconds (default: %(default)s)"
    )
    p.add_argument(
        "--max-bytes",
        type=int,
        default=15 * 1024 * 1024,
        help="largest image, in bytes (default: %(default)s, 15 MiB)",
    )
    p.add_argument("--max-retry-after", type=int, default=120, help="longest Retry-After to obey")
    p.add_argument("--user-agent", default=None, help="User-Agent (default names anfe)")
    p.add_argument("--proxy", default=None, help="proxy URL for http and https")
    p.add_argument("--header", action="append", help="extra header 'Name: value' (repeatable)")
    p.add_argument(
        "--base",
        action="append",
        help="SOURCE=URL: another base URL for a source (listal, filmweb); seed URLs and page "
        "links on the real site are rewritten onto it (repeatable)",
    )
    p.add_argument(
        "--image-domain", action="append", help="SOURCE=HOST: the host a source's images are on"
    )
    p.add_argument(
        "--allow-private-hosts",
        action="store_true",
        help="allow loopback, private and link-local addresses (a local mirror or test site); "
        "refused by default on every URL and redirect",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_scrape, needs_models=False)


def _fetch_settings(args: argparse.Namespace):
    from anfe.scraper.fetcher import DEFAULT_USER_AGENT, FetchSettings

    for name in ("delay", "timeout"):
        if getattr(args, name) < 0:
            raise InvalidParameter(f"--{name} must not be negative")
    if args.retries < 0 or args.max_bytes < 1:
        raise InvalidParameter("--retries must be >= 0 and --max-bytes >= 1")
    headers = _pairs(args.header, "--header", sep=":")
    return FetchSettings(
        user_agent=args.user_agent or DEFAULT_USER_AGENT,
        delay=args.delay,
        retries=args.retries,
        read_timeout=args.timeout,
        max_bytes=args.max_bytes,
        max_retry_after=args.max_retry_after,
        proxies={"http": args.proxy, "https": args.proxy} if args.proxy else {},
        headers=headers,
        allow_private_hosts=args.allow_private_hosts,
    )


def run_scrape(args: argparse.Namespace) -> int:
    from anfe.scraper.errors import PrivateAddress
    from anfe.scraper.fetcher import Fetcher
    from anfe.scraper.scrape import Limits, Scraper, people_from_facescrub, people_from_seeds
    from anfe.scraper.sources import default_sources
    from anfe.scraper.sources.seedlist import read_seeds

    if not args.seeds and not args.facescrub:
        raise InvalidParameter("give --seeds CSV and/or --facescrub LIST")
    for name in ("max_per_person", "max_people"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InvalidParameter(f"--{name.replace('_', '-')} must be at least 1")
    settings = _fetch_settings(args)
    sources = default_sources(
        _pairs(args.base, "--base"), _pairs(args.image_domain, "--image-domain")
    )
    people = []
    for path in args.seeds or []:
        people += people_from_seeds(read_seeds(path))
    with Fetcher(settings) as fetcher:
        if args.facescrub:
            people += people_from_facescrub([_facescrub(v, fetcher) for v in args.facescrub])
        scraper = Scraper(args.out, fetcher, sources, Limits(args.max_per_person, args.max_people))
        counts = scraper.run(people, progress=not args.no_progress)
    _print_summary(scraper.manifest.summary())
    failed = scraper.failed
    print(
        f"this run: {counts['saved']} saved, {counts['duplicate']} duplicates, {failed} failed; "
        f"manifest: {scraper.manifest.path}"
    )
    if not failed:
        return 0
    tried = failed + counts["saved"] + counts["duplicate"]
    print(f"anfe: {failed} of {tried} downloads failed (see {scraper.manifest.path})",
          file=sys.stderr)  # fmt: skip
    refused = counts[PrivateAddress.code]
    if refused and not args.allow_private_hosts:
        print(
            f"anfe: {refused} of them on a loopback, private or link-local address; "
            "--allow-private-hosts allows those for a local mirror or test site",
            file=sys.stderr,
        )
    return 3  # some or all downloads failed, as `anfe predict` when images fail


def _facescrub(value: str, fetcher):
    from anfe.scraper.errors import SeedError
    from anfe.scraper.sources.facescrub import gender_of_list, parse_list
    from anfe.scraper.sources.seedlist import parse_gender

    label, found, where = value.partition("=")
    if found and not label.startswith(("http", "/", ".")):
        gender = {"actresses": "female", "actors": "male"}.get(label.lower()) or parse_gender(
            label, "--facescrub"
        )
    else:
        where, gender = value, gender_of_list(Path(value).name)
    if where.startswith(("http://", "https://")):
        text = fetcher.page(where).text
    else:
        try:
            text = Path(where).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise SeedError(f"cannot read FaceScrub list {where!r}: {exc.strerror}") from None
    fl = parse_list(text, gender)
    if fl.bad_lines:
        print(f"{Path(where).name}: skipped malformed lines {fl.bad_lines[:20]}")
    if not fl.records:
        raise SeedError(f"FaceScrub list {Path(where).name!r} holds no valid line")
    return fl


def _print_summary(summary) -> None:
    whats = sorted({w for _, w in summary})
    if not whats:
        print("nothing in the manifest yet")
        return
    width = max(12, *(len(w) for w in whats))
    print(f"{'outcome':<{width}} {'female':>8} {'male':>8}")
    for w in whats:
        print(f"{w:<{width}} {summary[('female', w)]:>8} {summary[('male', w)]:>8}")


def register_clean(sub) -> None:
    """Add ``anfe clean``."""
    p = sub.add_parser(
        "clean",
        help="quarantine unusable images and list suspected wrong labels",
        description="Copy (or move) each image of RAW to CLEAN, or to CLEAN/_quarantine/<reason>/, "
        "write CLEAN/clean.jsonl and CLEAN/review.csv. Nothing is ever deleted; a rerun is "
        "idempotent and recomputes no embedding.",
        epilog=EXAMPLES_CLEAN,
        formatter_class=_formatter,
    )
    p.add_argument("raw", type=Path, nargs="?", help="scraped folder (female/ male/ or FaceScrub)")
    p.add_argument("--out", type=Path, help="clean folder")
    p.add_argument("--move", action="store_true", help="move instead of copy")
    p.add_argument(
        "--min-face",
        type=int,
        default=40,
        help="smallest face side in pixels (default: %(default)s)",
    )
    p.add_argument(
        "--near-duplicate", type=float, default=0.2, help="embedding distance below which two "
        "images of a person are the same photo (default: %(default)s)"
    )  # fmt: skip
    p.add_argument(
        "--other-person", type=float, default=0.5, help="distance from the person's median "
        "embedding above which an image shows someone else (default: %(default)s)"
    )  # fmt: skip
    p.add_argument("--centroids", default=None, help="centroid set for the label review")
    p.add_argument("--no-review", action="store_true", help="skip the label review")
    p.add_argument("--apply-review", type=Path, help="apply the `relabel` rows of a review.csv")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_db_option(p, "the embedding cache and the centroid sets")
    p.set_defaults(func=run_clean, needs_models=True)


def run_clean(args: argparse.Namespace) -> int:
    from anfe.scraper import cleaner, review

    if args.apply_review:
        moved = review.apply_review(args.apply_review, out=args.out)
        print(f"relabelled {_images(moved.moved)}; {moved.already} already done, "
              f"{moved.missing} missing, {moved.kept} not marked relabel")  # fmt: skip
        return 0
    if args.raw is None or args.out is None:
        raise InvalidParameter("give RAW and --out CLEAN (or --apply-review review.csv)")
    opts = cleaner.CleanOptions(
        move=args.move,
        min_face=args.min_face,
        near_duplicate=args.near_duplicate,
        other_person=args.other_person,
        centroids=args.centroids,
        review=not args.no_review,
        jobs=args.jobs,
        progress=not args.no_progress,
    )
    result = cleaner.clean(args.raw, args.out, opts, db=args.db)
    print(cleaner.summary_table(result))
    if result.review_rows is not None:
        print(f"label review: {_images(result.review_rows)} to check in {result.review_path}")
    return 0


def _images(n: int) -> str:
    return f"{n} image" if n == 1 else f"{n} images"
