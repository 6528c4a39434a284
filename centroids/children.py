"""Honest answers for faces estimated young: the gender rule and confidence by estimated-age band.

A centroid set's calibration is fitted on adults; on children its margin means little (boys are
mostly nearer the female centroid, with a confident margin). A :class:`ChildPolicy`, stored as the
``children`` field of the set's document, takes over for faces that its :class:`Router` does not
call adult (or, for a policy without a router, whose estimated age, the set's
:class:`centroids.age.AgeModel`, lies below its last band edge). Per band it holds a logistic
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
from typing import TYPE_CHECKING, Any

import numpy as np

from centroids.age import AGE_BANDS, AgeModel, band_name, band_of
from centroids.errors import InvalidParameter

if TYPE_CHECKING:
    from centroids.model import CentroidSet, Predictions

METHODS = ("calibrate", "child-set", "abstain")
DEFAULT_METHOD = "child-set"  # chosen by anfe bench --ages (docs/results.md)
DEFAULT_EDGES = (4.0, 13.0, 18.0)
DEFAULT_ADULT_CONFIDENCE = 0.7  # router: the adults' answer only when p(adult) reaches this
YOUNG_BELOW = 4.0  # faces under this age are never answered: their bands are always uncertain
# chosen on the train faces (choose_routing): the router's adult_confidence, and young_confidence,
# the probability of the bands under YOUNG_BELOW from which a face is uncertain wherever it goes
ADULT_CONFIDENCES = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
YOUNG_CONFIDENCES = (0.1, 0.2, 0.3, 0.4, 0.5, None)  # None: no such gate
ADULTS_ANSWERED_SLACK = 0.005  # adults may lose at most this share of their answers (0.5 point)
ADULTS_BALANCED_SLACK = 0.001  # and at most this much balanced accuracy (0.1 point)
MIN_CHILDREN_ANSWERED = 0.3  # the share of children the routing should still answer (issue 13)
YOUNG_CONFIDENCE = 0.5  # the confidence given to faces likely under YOUNG_BELOW: a coin toss
ROUTER_C = 1.0  # inverse L2 strength of the router's logistic regression (scikit-learn's C)
DEFAULT_MAX_WRONG = 0.08  # below the 10 % target, to leave room for the test faces
CHILD_AGE = 18  # the child references are fitted on faces younger than this
ALWAYS = 2.0  # a confidence threshold no answer reaches: the band is always uncertain
FOLDS = 5
GENDER_NAMES = ("female", "male")
ROUTINGS = ("router", "age")
DEFAULT_ROUTING = "router"


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

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        ages: np.ndarray,
        edges: tuple[float, ...],
        *,
        adult_confidence: float = DEFAULT_ADULT_CONFIDENCE,
        seed: int = 0,
    ) -> tuple[Router, np.ndarray]:
        """The router fitted on all of ``x``, and each face's band probabilities (n, bands) from a
        router fitted without it (5 folds).

        Uses scikit-learn's ``LogisticRegression`` (lbfgs, multinomial) rather than a hand-written
        solver: it is already a dependency (the Mahalanobis mode's Ledoit-Wolf).
        """
        from sklearn.linear_model import LogisticRegression

        x = np.asarray(x, dtype=np.float64)
        y = np.digitize(np.asarray(ages, dtype=np.float64), edges)
        if len(np.unique(y)) != len(edges) + 1:
            raise InvalidParameter(
                "the router needs faces of every age band (under each edge, and adults); "
                "use routing by the estimated age for data that lacks one"
            )

        def fitted(rows: np.ndarray) -> Router:
            clf = LogisticRegression(C=ROUTER_C, max_iter=2000).fit(x[rows], y[rows])
            return cls(list(edges), clf.coef_, clf.intercept_, adult_confidence)

        folds = np.random.default_rng(seed).permutation(len(x)) % FOLDS
        probabilities = np.empty((len(x), len(edges) + 1))
        for k in range(FOLDS):
            probabilities[folds == k] = fitted(folds != k).probabilities(x[folds == k])
        return fitted(np.ones(len(x), dtype=bool)), probabilities

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """p(band) of every row of ``x`` (n, 128): (n, len(edges) + 1)."""
        z = np.asarray(x, dtype=np.float64) @ self.weights.T + self.intercepts
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

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
            "weights": self.weights.tolist(),
            "intercepts": self.intercepts.tolist(),
            "adult_confidence": self.adult_confidence,
            "young_confidence": self.young_confidence,
            "young_below": self.young_below,
            "selection": [dict(r) for r in self.selection],
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Router:
        router = cls(
            edges=[float(e) for e in doc["edges"]],
            weights=np.asarray(doc["weights"], dtype=np.float64),
            intercepts=np.asarray(doc["intercepts"], dtype=np.float64),
            adult_confidence=float(doc.get("adult_confidence", DEFAULT_ADULT_CONFIDENCE)),
            young_confidence=(
                None if doc.get("young_confidence") is None else float(doc["young_confidence"])
            ),
            young_below=float(doc.get("young_below", 0.0)),  # older documents: no young bands
            selection=[dict(r) for r in doc.get("selection", [])],
        )
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
    reference: CentroidSet | None = None  # the child references of ``child-set``
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

    def apply(
        self, cs: CentroidSet, x: np.ndarray, preds: Predictions, age: np.ndarray | None
    ) -> None:
        """Rewrite, in ``preds``, the answers of faces routed to a band (by the router or age)."""
        band = self.bands(x, age)
        routed = (band >= 0) & (band < len(self.rules))
        signed, d_f, d_m = None, None, None
        if routed.any() and self.method != "abstain":
            d_f, d_m = (self.reference or cs).distances(x)
            signed = d_m - d_f
        _answer(self.rules, band, signed, preds.gender, preds.uncertain, preds.confidence)
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
    def from_doc(cls, doc: dict[str, Any]) -> ChildPolicy:
        from centroids.model import CentroidSet

        method = str(doc.get("method", ""))
        if method not in METHODS:
            raise InvalidParameter(f"unknown children method {method!r}")
        ref = doc.get("reference")
        return cls(
            method=method,
            rules=[BandRule.from_doc(r) for r in doc.get("rules", [])],
            reference=CentroidSet.from_doc(ref) if ref else None,
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


def fit_age_and_children(
    cs: CentroidSet,
    x: np.ndarray,
    ages: np.ndarray,
    genders: np.ndarray,
    *,
    method: str = DEFAULT_METHOD,
    edges: tuple[float, ...] = DEFAULT_EDGES,
    seed: int = 0,
    source: dict[str, Any] | None = None,
    routing: str = DEFAULT_ROUTING,
    max_wrong: float = DEFAULT_MAX_WRONG,
) -> CentroidSet:
    """``cs`` with an age model and a child policy fitted on these faces; nothing else changes.

    Bands under :data:`YOUNG_BELOW` are always uncertain. With the router, its
    ``adult_confidence`` and ``young_confidence`` are chosen on these same faces, from their
    cross-fitted band probabilities (:func:`choose_routing`), never on test faces.

    :param x: embeddings (n, 128) of faces of all ages, embedded as ``cs``'s were
    :param ages: their ages in years; ``genders``: their genders
    :param routing: ``router`` (a :class:`Router` picks each face's band) or ``age`` (the band of
        the estimated age)
    """
    from dataclasses import replace

    if routing not in ROUTINGS:
        raise InvalidParameter(f"unknown routing {routing!r}; choose from {ROUTINGS}")
    _check(method, edges)
    x, ages, genders = np.asarray(x, dtype=np.float64), np.asarray(ages), np.asarray(genders)
    age = AgeModel.fit(x, ages, seed=seed, source=source)
    reference, signed = _margins(cs, x, ages, genders, method, seed)
    router = None
    if routing == "router":
        router, probabilities = Router.fit(x, ages, edges, seed=seed)
        choose_routing(router, cs, x, ages, genders, probabilities, signed, max_wrong)
        bands = band_at(probabilities, router.adult_confidence, router.young_gate())
    else:
        bands = np.digitize(age.cross_fitted, edges)
    rules = _fit_rules(signed, genders, bands, edges, max_wrong)
    policy = ChildPolicy(method, rules, reference, max_wrong, dict(source or {}), router)
    return replace(cs, age=age, children=policy)


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


def choose_routing(
    router: Router,
    cs: CentroidSet,
    x: np.ndarray,
    ages: np.ndarray,
    genders: np.ndarray,
    probabilities: np.ndarray,
    signed: np.ndarray | None,
    max_wrong: float,
) -> None:
    """Set the router's ``adult_confidence`` and ``young_confidence``, chosen on the faces the
    policy is fitted on, and its ``selection`` (every candidate's figures).

    For each pair of :data:`ADULT_CONFIDENCES` and :data:`YOUNG_CONFIDENCES` the faces are routed
    by their cross-fitted ``probabilities``, the rules fitted on those bands, and every face
    answered as the policy would (children's margins cross-fitted). Among the pairs with which
    the adults (18+) lose at most :data:`ADULTS_ANSWERED_SLACK` of their answers and
    :data:`ADULTS_BALANCED_SLACK` of their balanced accuracy against the set's own answers, and
    at least :data:`MIN_CHILDREN_ANSWERED` of the children (under 18) are answered, the one with
    the fewest wrong answers to children is chosen (when no pair answers that many children, the
    one answering the most). Wrong answers are counted, not rated per age band and gender: a
    band's rate moves by whole faces when only a few of its faces are answered.
    """
    from dataclasses import replace

    own = replace(cs, age=None, children=None).classify(x)  # the set's own answers
    adult = ages >= CHILD_AGE
    bands_of_age = band_of(ages)
    child_groups = [
        (bands_of_age == band_name(b)) & (genders == g)
        for b in AGE_BANDS[:-1]
        for g in GENDER_NAMES
    ]

    def balanced(gender: np.ndarray, rows: np.ndarray) -> float:
        return float(np.mean([np.mean(gender[rows & (genders == g)] == g) for g in GENDER_NAMES]))

    young_bands, _ = router.young_gate()
    figures = []
    for t in ADULT_CONFIDENCES:
        for q in YOUNG_CONFIDENCES:
            bands = band_at(probabilities, t, (young_bands, q))
            rules = _fit_rules(signed, genders, bands, tuple(router.edges), max_wrong)
            gender, uncertain = own.gender.copy(), own.uncertain.copy()
            _answer(rules, bands, signed, gender, uncertain)
            given = ~uncertain
            row = {
                "adult_confidence": float(t),
                "young_confidence": q,
                "children_answered": float(np.mean(given[~adult])),
                "children_wrong_worst": max(
                    _wrong_rate(gender, genders, given, rows) for rows in child_groups
                ),
                "children_wrong_answers": int(np.sum(given & ~adult & (gender != genders))),
                "adults_answered_change": float(
                    np.mean(given[adult]) - np.mean(~own.uncertain[adult])
                ),
                "adults_balanced_change": balanced(gender, adult) - balanced(own.gender, adult),
            }
            row["adults_within_bounds"] = bool(
                row["adults_answered_change"] >= -ADULTS_ANSWERED_SLACK
                and row["adults_balanced_change"] >= -ADULTS_BALANCED_SLACK
            )
            figures.append(row)
    adults_kept = [r for r in figures if r["adults_within_bounds"]] or figures
    enough = [r for r in adults_kept if r["children_answered"] >= MIN_CHILDREN_ANSWERED]
    if enough:
        best = min(enough, key=lambda r: (r["children_wrong_answers"], -r["children_answered"]))
    else:
        best = max(adults_kept, key=lambda r: r["children_answered"])
    router.adult_confidence, router.young_confidence = (
        best["adult_confidence"],
        best["young_confidence"],
    )
    router.selection = figures


def _check(method: str, edges: tuple[float, ...]) -> None:
    if method not in METHODS:
        raise InvalidParameter(f"unknown children method {method!r}; choose from {METHODS}")
    if not edges or list(edges) != sorted(edges) or edges[0] <= 0:
        raise InvalidParameter("age band edges must be positive and increasing")


def _margins(
    cs: CentroidSet, x: np.ndarray, ages: np.ndarray, genders: np.ndarray, method: str, seed: int
) -> tuple[CentroidSet | None, np.ndarray | None]:
    """The policy's references (``child-set`` only) and every face's signed margin to them
    (None for ``abstain``)."""
    x = np.asarray(x, dtype=np.float64)
    if method == "child-set":
        return _child_references(cs, x, np.asarray(ages), np.asarray(genders), seed)
    if method == "calibrate":
        d_f, d_m = cs.distances(x)
        return None, d_m - d_f
    return None, None


def _fit_rules(
    signed: np.ndarray | None,
    genders: np.ndarray,
    bands: np.ndarray,
    edges: tuple[float, ...],
    max_wrong: float,
) -> list[BandRule]:
    """One rule per child band, fitted on the faces routed to it; bands under
    :data:`YOUNG_BELOW` are always uncertain."""
    return [
        BandRule(below=float(below), faces=int(np.sum(bands == i)))
        if below <= YOUNG_BELOW
        else _fit_rule(float(below), signed, np.asarray(genders), bands == i, max_wrong)
        for i, below in enumerate(edges)
    ]


def _answer(
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
        p_female = _sigmoid(rule.a * signed[rows] + rule.b)
        gender[rows] = np.where(p_female >= 0.5, "female", "male")
        conf = np.maximum(p_female, 1.0 - p_female)
        if confidence is not None:
            confidence[rows] = conf
        threshold = np.where(
            gender[rows] == "female", rule.uncertain_below["female"], rule.uncertain_below["male"]
        )
        uncertain[rows] = conf < threshold


def _fit_rule(
    below: float,
    signed: np.ndarray | None,
    genders: np.ndarray,
    rows: np.ndarray,
    max_wrong: float,
) -> BandRule:
    """The rule of one band: a logistic model of the signed margin of the faces in ``rows``, and
    the per-answer thresholds that answer most of them with at most ``max_wrong`` of the answers
    given to each gender wrong."""
    from centroids.model import _fit_logistic

    rule = BandRule(below=below, faces=int(rows.sum()))
    if signed is None or not all((genders[rows] == g).sum() >= 10 for g in ("female", "male")):
        return rule  # abstain, or too few faces of a gender to fit on: always uncertain
    s, truth = signed[rows], genders[rows]
    rule.a, rule.b = _fit_logistic(s, (truth == "female").astype(np.float64))
    p_female = _sigmoid(rule.a * s + rule.b)
    answer = np.where(p_female >= 0.5, "female", "male")
    confidence = np.maximum(p_female, 1.0 - p_female)
    groups = [truth == g for g in GENDER_NAMES]
    from centroids.model import UNCERTAIN_CONFIDENCE  # below it an answer is uncertain anyway

    grid = np.round(np.arange(UNCERTAIN_CONFIDENCE, 1.0, 0.01), 2)
    best = None  # (answered, t_female, t_male)
    for t_female in grid:
        for t_male in grid:
            given = confidence >= np.where(answer == "female", t_female, t_male)
            if best is not None and given.mean() <= best[0]:
                continue
            if all(_wrong_rate(answer, truth, given, m) <= max_wrong for m in groups):
                best = (float(given.mean()), float(t_female), float(t_male))
    if best is not None:
        rule.answered, t_female, t_male = best
        rule.uncertain_below = {"female": t_female, "male": t_male}
        given = confidence >= np.where(answer == "female", t_female, t_male)
        rule.wrong = {
            g: float(np.mean(answer[mine] != g))
            for g in GENDER_NAMES
            if (mine := given & (truth == g)).any()
        }
    return rule


def _wrong_rate(
    answer: np.ndarray, truth: np.ndarray, given: np.ndarray, group: np.ndarray
) -> float:
    """Share of wrong answers among the faces of ``group`` answered (0 when none is answered)."""
    mine = given & group
    return float(np.mean(answer[mine] != truth[mine])) if mine.any() else 0.0


def _child_references(
    cs: CentroidSet, x: np.ndarray, ages: np.ndarray, genders: np.ndarray, seed: int
) -> tuple[CentroidSet, np.ndarray]:
    """References fitted on the children in ``cs``'s mode; signed margins, children cross-fitted."""
    from centroids.model import _fit

    child = ages < CHILD_AGE

    def fitted(rows: np.ndarray) -> CentroidSet:
        f, m = x[rows & (genders == "female")], x[rows & (genders == "male")]
        if len(f) < 2 or len(m) < 2:
            raise InvalidParameter("child references need faces of both genders under 18")
        return _fit(f"{cs.id}-children", f, m, cs.mode, dict(cs.params), seed)

    reference = fitted(child)
    d_f, d_m = reference.distances(x)
    signed = d_m - d_f
    folds = np.random.default_rng(seed).permutation(len(x)) % FOLDS
    for k in range(FOLDS):  # a child's margin comes from references fitted without it
        rows = child & (folds == k)
        if rows.any():
            fd, md = fitted(child & (folds != k)).distances(x[rows])
            signed[rows] = md - fd
    return reference, signed


def _sigmoid(z: np.ndarray) -> np.ndarray:
    from centroids.model import _sigmoid as sigmoid  # model.py imports this module

    return sigmoid(z)
