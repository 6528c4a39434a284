"""MODEL_CARD.md stays in step with the shipped default set and links to headings that exist."""

from __future__ import annotations

import re

from anfe.centroids.storage import shipped
from tests.helpers import ROOT

CARD = ROOT / "MODEL_CARD.md"


def default_doc() -> dict:
    return {d["_id"]: d for d in shipped.shipped_documents()}[shipped.DEFAULT_CENTROIDS]


def test_card_names_the_default_set_with_its_held_out_accuracy_and_calibration():
    card = CARD.read_text()
    doc = default_doc()
    cal = doc["calibration"]
    assert f"# Model card: anfe's default centroid set `{doc['_id']}`" in card
    row = next(line for line in card.splitlines() if line.startswith(f"| `{doc['_id']}` "))
    assert f"{cal['held_out_accuracy'] * 100:.2f} %" in row, row
    assert f"{cal['ece']:.4f}" in row, row
    prose = " ".join(card.split())
    assert f"mean embedding of {doc['per_gender']:,} women" in prose
    assert f"built {doc['created_at'][:10]}" in prose


def test_card_has_the_usual_sections_and_says_what_the_label_is_not():
    card = CARD.read_text()
    headings = re.findall(r"^## (.+)$", card, re.M)
    for section in (
        "Intended use", "Out-of-scope uses", "Training data", "Evaluation data", "Results",
        "Limitations", "Ethical considerations",
    ):  # fmt: skip
        assert section in headings, section
    assert "binary label of appearance, not anyone's gender identity" in card
    assert "**Children.**" in card


def test_links_to_the_results_point_at_headings_that_exist():
    card = CARD.read_text()
    results = (ROOT / "docs" / "results.md").read_text()
    anchors = {
        re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", results, re.M)
    }
    links = re.findall(r"\]\(docs/results\.md#([^)]+)\)", card)
    assert links
    for anchor in links:
        assert anchor in anchors, anchor
    for path in re.findall(r"\]\(([^)#]+)", card):
        assert (ROOT / path).exists(), path
