"""Honest answers for faces estimated young: the gender rule and confidence by estimated-age band.

A centroid set's calibration is fitted on adults; on children its margin means little (boys are
mostly nearer the female centroid, with a confident margin). A :class:`ChildPolicy`, stored as the
``children`` field of the set's document, takes over for faces that its :class:`Router` does not
call adult (or, for a policy without a router, whose estimated age, the set's
:class:`anfe.centroids.model.age.AgeModel`, lies below its last band edge). Per band it holds a logistic
model of the *signed* margin ``s = d_male - d_female`` (positive: nearer the female reference),
p(female) = sigmoid(a * s + b), fitted on the faces routed to that band whose gender and age are
known, so the answer is the more likely gender under that model, its confidence is
max(p, 1 - p), and the answer is ``uncertain`` below a confidence threshold, one for "female"
answers and one for "male" answers, each at least the set's own 0.75, chosen to answer as many
faces of the band as possible while at most ``max_wrong`` of the answers given to the faces of
each gender are wrong (a band where no threshold does that is always uncertain). Methods:

- ``calibrate``: the signed margin of the set itself (same references, new calibration per band);
- ``child-set``: the signed margin to a second pair of references in the same mode, fitted on
  children (under 18), whose distances the answer then reports;
- ``abstain``: no model; every face of the bands is ``uncertain``, gender and confidence unchanged.

Faces routed adult keep the set's own answer, untouched. Faces under :data:`YOUNG_BELOW` (4) are
never answered: their band is always uncertain, and so is any face the router gives at least
``young_confidence`` of being that young, wherever it goes; such a face keeps the set's answer at
a confidence of 0.5 (the set's answers to babies are 50.7 % balanced on held-out UTKFace).

The :class:`Router` is a multinomial logistic regression of the age band (under each edge, or
adult) on the 128-d embedding, fitted on the same faces; a face goes to the adults (the set's own
answer) when the router gives the adult band at least ``adult_confidence``, otherwise to the most
likely child band. It sends fewer children the adults' way than the ridge age estimate does
(``docs/results.md``, "Routing children"). ``adult_confidence`` is chosen on the faces the policy
is fitted on, never on test faces (:func:`choose_adult_confidence`). Like the age model it depends only on the embedding, so
a set without its own policy can borrow it to abstain on the faces it routes to a child band
(:func:`abstain_policy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from anfe.centroids import vectors
from anfe.centroids.errors import InvalidParameter
from anfe.centroids.model.calibration import sigmoid


class References(Protocol):
    """What a policy needs of a centroid set (:class:`anfe.centroids.model.centroid_set.CentroidSet`)."""

    def distances(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def to_doc(self) -> dict[str, Any]: ...


class Answers(Protocol):
    """The per-face answers a policy rewrites (:class:`anfe.centroids.model.centroid_set.Predictions`)."""

    gender: np.ndarray
    d_female: np.ndarray
    d_male: np.ndarray
    margin: np.ndarray
    confidence: np.ndarray
    uncertain: np.ndarray
    age: Any  # AgeEstimates or None


METHODS = ("calibrate", "child-set", "abstain")
DEFAULT_METHOD = "child-set"  # chosen by anfe bench --ages (docs/results.md)
DEFAULT_EDGES = (4.0, 13.0, 18.0)
DEFAULT_ADULT_CONFIDENCE = 0.7  # router: the adults' answer only when p(adult) reaches this
YOUNG_BELOW = 4.0  # faces under this age are never answered: their bands are always uncertain
YOUNG_CONFIDENCE = 0.5  # the confidence given to faces likely under YOUNG_BELOW: a coin toss
DEFAULT_MAX_WRONG = 0.08  # below the 10 % target, to leave room for the test faces
ALWAYS = 2.0  # a confidence threshold no answer reaches: the band is always uncertain
GENDER_NAMES = ("female", "male")
ROUTINGS = ("under13", "router", "age")  # under13: by p(under 13), readings agree when mixed
CHILD_BELOW = 13.0  # "child" in routing by p(under 13): the child reading's band ends here
DEFAULT_ROUTING = "under13"


@dataclass
class BandRule:
    """The rule of faces estimated in [previous edge, ``below``) years."""

    below: float
    a: float = 0.0
    b: float = 0.0
    # confidence under which an answer is uncertain, per answer given ("female", "male")
    uncertain_below: dict[str, float] = field(
        default_factory=lambda: {"female": ALWAYS, "male": ALWAYS}
    )
    faces: int = 0  # faces the rule was fitted on
    answered: float = 0.0  # share of them answered (not uncertain)
    wrong: dict[str, float] = field(default_factory=dict)  # among answers, per true gender given

    @property
    def never_answers(self) -> bool:
        """No model was fitted: every face of the band is uncertain."""
        return self.a == 0.0 and all(t >= ALWAYS for t in self.uncertain_below.values())

    def to_doc(self) -> dict[str, Any]:
        return {
            "below": self.below,
            "a": self.a,
            "b": self.b,
            "uncertain_below": dict(self.uncertain_below),
            "faces": self.faces,
            "answered": self.answered,
            "wrong": dict(self.wrong),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> BandRule:
        return cls(
            below=float(doc["below"]),
            a=float(doc.get("a", 0.0)),
            b=float(doc.get("b", 0.0)),
            uncertain_below={
                g: float(doc.get("uncertain_below", {}).get(g, ALWAYS)) for g in GENDER_NAMES
            },
            faces=int(doc.get("faces", 0)),
            answered=float(doc.get("answered", 0.0)),
            wrong={k: float(v) for k, v in doc.get("wrong", {}).items()},
        )


@dataclass
class Router:
    """Multinomial logistic regression of the age band on the embedding (see the module doc)."""

    edges: list[float]  # bands: under edges[0], ..., under edges[-1], then adults
    weights: np.ndarray  # (len(edges) + 1, 128)
    intercepts: np.ndarray  # (len(edges) + 1,)
    adult_confidence: float = DEFAULT_ADULT_CONFIDENCE
    # a face whose probability of the bands under young_below reaches this is uncertain (None: off)
    young_confidence: float | None = None
    young_below: float = YOUNG_BELOW
    # every candidate (adult_confidence, young_confidence)'s figures on the train faces
    selection: list[dict[str, Any]] = field(default_factory=list)
    # routing by p(under CHILD_BELOW) (answer_by_agreement); None: by the likeliest band (band_at)
    mixed_from: float | None = None  # from here the child reading counts
    child_from: float | None = None  # from here it alone counts

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """p(band) of every row of ``x`` (n, 128): (n, len(edges) + 1)."""
        z = np.asarray(x, dtype=np.float64) @ self.weights.T + self.intercepts
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def under_13(self, p: np.ndarray) -> np.ndarray | None:
        """p(under :data:`CHILD_BELOW`) of faces with band probabilities ``p`` (None: the router
        has no band ending there)."""
        if CHILD_BELOW not in self.edges:
            return None
        return p[:, : self.edges.index(CHILD_BELOW) + 1].sum(axis=1)

    def band(self, x: np.ndarray) -> np.ndarray:
        """Band index of every face: ``len(edges)`` (adult) when p(adult) >= adult_confidence, -1
        (uncertain, whatever band) when p(under young_below) >= young_confidence."""
        return band_at(self.probabilities(x), self.adult_confidence, self.young_gate())

    def young_gate(self) -> tuple[int, float | None]:
        """(how many bands lie under ``young_below``, ``young_confidence``)."""
        return sum(e <= self.young_below for e in self.edges), self.young_confidence

    def to_doc(self) -> dict[str, Any]:
        return {
            "method": "logistic",
            "edges": list(self.edges),
            "weights": vectors.pack(self.weights),
            "intercepts": self.intercepts.tolist(),
            "adult_confidence": self.adult_confidence,
            "young_confidence": self.young_confidence,
            "young_below": self.young_below,
            "selection": [dict(r) for r in self.selection],
            **({} if self.mixed_from is None else
               {"mixed_from": self.mixed_from, "child_from": self.child_from}),
        }  # fmt: skip

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Router:
        router = cls(
            edges=[float(e) for e in doc["edges"]],
            weights=vectors.unpack(doc["weights"], columns=128),
            intercepts=np.asarray(doc["intercepts"], dtype=np.float64),
            adult_confidence=float(doc.get("adult_confidence", DEFAULT_ADULT_CONFIDENCE)),
            young_confidence=(
                None if doc.get("young_confidence") is None else float(doc["young_confidence"])
            ),
            young_below=float(doc.get("young_below", 0.0)),  # older documents: no young bands
            selection=[dict(r) for r in doc.get("selection", [])],
            mixed_from=None if doc.get("mixed_from") is None else float(doc["mixed_from"]),
            child_from=None if doc.get("child_from") is None else float(doc["child_from"]),
        )
        if router.mixed_from is not None and (
            CHILD_BELOW not in router.edges or router.child_from is None
        ):
            raise InvalidParameter(f"a router by p(under {CHILD_BELOW:g}) needs that band edge")
        if router.weights.shape != (len(router.edges) + 1, 128) or router.intercepts.shape != (
            len(router.edges) + 1,
        ):
            raise InvalidParameter("the children's router does not hold one 128-d row per band")
        return router


@dataclass
class ChildPolicy:
    """Per estimated-age band: how faces estimated young are answered (see the module doc)."""

    method: str
    rules: list[BandRule]
    reference: References | None = None  # the child references of ``child-set``
    max_wrong: float = DEFAULT_MAX_WRONG
    source: dict[str, Any] = field(default_factory=dict)
    router: Router | None = None  # picks the band; without it, the estimated age does

    def bands(self, x: np.ndarray, age: np.ndarray | None) -> np.ndarray:
        """The rule index of every face (``len(rules)``: adult, the set's own answer)."""
        if self.router is not None:
            return self.router.band(x)
        if age is None:
            raise InvalidParameter("a child policy without a router needs the estimated age")
        return np.digitize(np.asarray(age, dtype=np.float64), [r.below for r in self.rules])

    def under_13(self, x: np.ndarray) -> np.ndarray | None:
        """The router's p(under :data:`CHILD_BELOW`) of every row of ``x`` (None: no such band)."""
        return None if self.router is None else self.router.under_13(self.router.probabilities(x))

    def apply(self, cs: References, x: np.ndarray, preds: Answers, age: np.ndarray | None) -> None:
        """Rewrite, in ``preds``, the answers of faces routed to a band (by the router or age);
        the age estimates get the router's p(under 13) (``under_13``)."""
        p = None if self.router is None else self.router.probabilities(x)
        if p is not None and preds.age is not None:
            preds.age.under_13 = self.router.under_13(p)
        if p is not None and self.router.mixed_from is not None:
            d_f, d_m = (self.reference or cs).distances(x)
            young = answer_by_agreement(self.rules, self.router, p, d_m - d_f, preds)
            if self.reference is not None:
                preds.d_female[young], preds.d_male[young] = d_f[young], d_m[young]
                preds.margin[young] = np.abs(d_m - d_f)[young]
            return
        band = self.bands(x, age)
        routed = (band >= 0) & (band < len(self.rules))
        signed, d_f, d_m = None, None, None
        if routed.any() and self.method != "abstain":
            d_f, d_m = (self.reference or cs).distances(x)
            signed = d_m - d_f
        answer_in_bands(self.rules, band, signed, preds.gender, preds.uncertain, preds.confidence)
        if self.reference is not None and routed.any():
            preds.d_female[routed], preds.d_male[routed] = d_f[routed], d_m[routed]
            preds.margin[routed] = np.abs(signed[routed])

    def to_doc(self) -> dict[str, Any]:
        """The ``children`` field of a centroid document."""
        doc: dict[str, Any] = {
            "method": self.method,
            "max_wrong": self.max_wrong,
            "rules": [r.to_doc() for r in self.rules],
            "source": dict(self.source),
        }
        if self.router is not None:
            doc["router"] = self.router.to_doc()
        if self.reference is not None:
            ref = self.reference.to_doc()
            doc["reference"] = {
                k: ref[k] for k in ("_id", "mode", "params", "vectors", "counts", "whitening")
                if k in ref
            }  # fmt: skip
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any], reference: References | None = None) -> ChildPolicy:
        """The policy of a ``children`` field; ``reference``: its decoded ``reference`` set (the
        caller decodes it, as this module knows no centroid set's document)."""
        method = str(doc.get("method", ""))
        if method not in METHODS:
            raise InvalidParameter(f"unknown children method {method!r}")
        return cls(
            method=method,
            rules=[BandRule.from_doc(r) for r in doc.get("rules", [])],
            reference=reference,
            max_wrong=float(doc.get("max_wrong", DEFAULT_MAX_WRONG)),
            source=dict(doc.get("source", {})),
            router=Router.from_doc(doc["router"]) if doc.get("router") else None,
        )


def abstain_policy(router: Router) -> ChildPolicy:
    """For a set without its own policy: every face ``router`` sends to a child band is uncertain.

    The other policies calibrate a set's own margins and so cannot be lent to another set; the
    router, like the age model, reads the embedding alone.
    """
    rules = [BandRule(below=e) for e in router.edges]
    return ChildPolicy("abstain", rules, router=router, source={"borrowed_router": True})


def band_at(
    probabilities: np.ndarray,
    adult_confidence: float,
    young_gate: tuple[int, float | None] = (0, None),
) -> np.ndarray:
    """Band index of faces with band ``probabilities`` (n, bands): the last (adult) when its
    probability reaches ``adult_confidence``, otherwise the likeliest child band; -1 when the
    probability of the first ``young_gate[0]`` bands reaches ``young_gate[1]``."""
    adult = probabilities.shape[1] - 1
    band = np.where(
        probabilities[:, adult] >= adult_confidence, adult, probabilities[:, :adult].argmax(axis=1)
    )
    young_bands, young_confidence = young_gate
    if young_bands and young_confidence is not None:
        band[probabilities[:, :young_bands].sum(axis=1) >= young_confidence] = -1
    return band


def answer_in_bands(
    rules: list[BandRule],
    band: np.ndarray,
    signed: np.ndarray | None,
    gender: np.ndarray,
    uncertain: np.ndarray,
    confidence: np.ndarray | None = None,
) -> None:
    """Rewrite, in place, the answers of the faces of each rule's band (``signed`` None: abstain);
    faces of band -1 (likely under :data:`YOUNG_BELOW`) are uncertain, at a coin toss."""
    young = band < 0
    uncertain[young] = True
    if confidence is not None:
        confidence[young] = YOUNG_CONFIDENCE
    for i, rule in enumerate(rules):
        rows = np.flatnonzero(band == i)
        if not len(rows):
            continue
        if signed is None or rule.never_answers:
            uncertain[rows] = True  # abstain: the answer stays the set's own
            if confidence is not None and rule.below <= YOUNG_BELOW:
                confidence[rows] = YOUNG_CONFIDENCE  # the set's confidence means nothing for babies
            continue
        p_female = sigmoid(rule.a * signed[rows] + rule.b)
        gender[rows] = np.where(p_female >= 0.5, "female", "male")
        conf = np.maximum(p_female, 1.0 - p_female)
        if confidence is not None:
            confidence[rows] = conf
        threshold = np.where(
            gender[rows] == "female", rule.uncertain_below["female"], rule.uncertain_below["male"]
        )
        uncertain[rows] = conf < threshold


def answer_by_agreement(
    rules: list[BandRule], router: Router, p: np.ndarray, signed: np.ndarray, preds: Answers
) -> np.ndarray:
    """Rewrite ``preds`` in place by the probability ``u`` that a face is under
    :data:`CHILD_BELOW` (from the router's band probabilities ``p``); return the faces given a
    child's or a teenager's reading (whose distances are then the child references').

    - p(under ``young_below``) at least ``young_confidence``: uncertain, at a coin toss;
    - u at least ``child_from``: the child reading (the rule of the band ending at 13);
    - u under ``mixed_from``: the older reading: the set's own answer when p(adult) reaches
      ``adult_confidence``, else the teenager's rule (the band ending at 18);
    - in between (mixed): answered only when both readings give the same answer, each confident;
      the confidence is then the lower of the two.
    """
    edges = list(router.edges)
    child_band, adult_band = edges.index(CHILD_BELOW), len(edges)
    u = router.under_13(p)
    young_bands, young_confidence = router.young_gate()
    young = (
        p[:, :young_bands].sum(axis=1) >= young_confidence
        if young_bands and young_confidence is not None
        else np.zeros(len(p), dtype=bool)
    )

    def reading(rule: BandRule) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if rule.never_answers:
            return preds.gender.copy(), np.full(len(p), YOUNG_CONFIDENCE), np.zeros(len(p), bool)
        p_female = sigmoid(rule.a * signed + rule.b)
        gender = np.where(p_female >= 0.5, "female", "male")
        conf = np.maximum(p_female, 1.0 - p_female)
        sure = conf >= np.where(gender == "female", rule.uncertain_below["female"],
                                rule.uncertain_below["male"])  # fmt: skip
        return gender, conf, sure

    g_child, c_child, s_child = reading(rules[child_band])
    adult = p[:, adult_band] >= router.adult_confidence
    if adult_band - 1 > child_band:
        g_teen, c_teen, s_teen = reading(rules[adult_band - 1])
    else:
        g_teen, c_teen, s_teen = g_child, c_child, s_child
    g_old = np.where(adult, preds.gender, g_teen)
    c_old = np.where(adult, preds.confidence, c_teen)
    s_old = np.where(adult, ~preds.uncertain, s_teen)
    child_only = u >= router.child_from
    mixed = (u >= router.mixed_from) & ~child_only
    older = ~child_only & ~mixed
    agree = s_child & s_old & (g_child == g_old)
    gender = np.where(older, g_old, np.where(child_only | (u >= 0.5), g_child, g_old))
    confidence = np.where(older, c_old, np.where(child_only, c_child, np.minimum(c_child, c_old)))
    sure = np.where(older, s_old, np.where(child_only, s_child, agree))
    preds.gender[:] = np.where(young, preds.gender, gender)
    preds.confidence[:] = np.where(young, YOUNG_CONFIDENCE, confidence)
    preds.uncertain[:] = young | ~sure
    return ~young & ~(older & adult)
