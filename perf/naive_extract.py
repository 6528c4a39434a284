"""The naive baseline: embed a list of images one by one, as a face_recognition user would.

``python perf/naive_extract.py LIST OUT.json``: LIST has one image path a line; OUT gets
``{path: [faces_found, vector or null]}``. One process, full resolution, no cache. Run by
``perf/extraction.py``, which times it and samples its memory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import naive_embed  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    paths = Path(argv[0]).read_text().split("\n")
    out = {p: naive_embed(p) for p in paths if p}
    Path(argv[1]).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
