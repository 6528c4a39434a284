"""Seed lists: a CSV ``name,gender,url`` — the way most users start.

``url`` is a person page of a known source (listal, filmweb) or a direct image URL; several rows
may name the same person. ``gender`` is ``female``/``male`` (also ``f``/``m``, ``woman``/``man``).
The whole file is checked before anything is fetched, and a bad row stops the run with its line
number, so a typo never turns into a half-labelled dataset.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from anfe.scraper.errors import SeedError
from anfe.scraper.sources.base import Seed

GENDERS = {
    "female": "female", "f": "female", "woman": "female", "women": "female",
    "male": "male", "m": "male", "man": "male", "men": "male",
}  # fmt: skip
MAX_NAME = 300


def parse_gender(text: str, where: str) -> str:
    g = GENDERS.get(text.strip().lower())
    if g is None:
        raise SeedError(f"{where}: gender {text.strip()[:40]!r} is not female or male")
    return g


def read_seeds(path: Path) -> list[Seed]:
    """Every row of a seed CSV, validated."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SeedError(f"seed list {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SeedError(f"cannot read seed list {path.name!r}: {exc}") from None
    return parse_seeds(text, path.name)


def parse_seeds(text: str, label: str = "seeds") -> list[Seed]:
    reader = csv.DictReader(io.StringIO(text))
    cols = [c.strip().lower() for c in reader.fieldnames or []]
    if not {"name", "gender", "url"} <= set(cols):
        raise SeedError(f"{label} must have a header line with columns name,gender,url")
    reader.fieldnames = cols
    seeds = []
    for row in reader:
        where = f"{label} line {reader.line_num}"
        name = (row.get("name") or "").strip()
        url = (row.get("url") or "").strip()
        if not name:
            raise SeedError(f"{where}: the name is empty")
        if len(name) > MAX_NAME:
            raise SeedError(f"{where}: the name is longer than {MAX_NAME} characters")
        if not url.startswith(("http://", "https://")):
            raise SeedError(f"{where}: url {url[:80]!r} is not an http(s) URL")
        gender = parse_gender(row.get("gender") or "", where)
        seeds.append(Seed(name=name, gender=gender, url=url, line=reader.line_num))
    if not seeds:
        raise SeedError(f"{label} holds no seeds")
    return seeds
