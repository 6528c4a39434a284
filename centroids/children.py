"""Honest answers for faces estimated young: the gender rule and confidence by estimated-age band.

A centroid set's calibration is fitted on adults; on children its margin means little (boys are
mostly nearer the female centroid, with a confident margin). A :class:`ChildPolicy`, stored as the
``children`` field of the set's document, takes over for faces that its :class:`Router` does not
call adult (or, for a policy without a router, whose estimated age, the set's
:class:`centroids.age.AgeModel`, lies below its last band edge). Per band it holds a logistic model of the *signed* margin ``s = d_male - d_female`` (positive: nearer the female
reference), p(female) = sigmoid(a * s + b), fitted on faces of that band whose gender is known, so
the answer is the more likely gender under that model, its confidence is max(p, 1 - p), and the
answer is ``uncertain`` below a confidence threshold, one for "female" answers and one for "male"
answers, each at least the set's own 0.75, chosen to answer as many faces of the band as possible
while at most ``max_wrong`` of the answers given to the faces of each gender are wrong (a band
where no threshold does that is always uncertain). Methods:

- ``calibrate``: the signed margin of the set itself (same references, new calibration per band);
- ``child-set``: the signed margin to a second pair of references in the same mode, fitted on
  children (under 18), whose distances the answer then reports;
- ``abstain``: no model; every face of the bands is ``uncertain``, gender and confidence unchanged.

Faces routed adult keep the set's own answer, untouched.

The :class:`Router` is a multinomial logistic regression of the age band (under each edge, or
adult) on the 128-d embedding, fitted on the same faces; a face goes to the adults (the set's own
answer) when the router gives the adult band at least ``adult_confidence``, otherwise to the most
likely child band. It sends fewer children the adults' way than the ridge age estimate does
(``docs/results.md``, "Routing children"). Like the age model it depends only on the embedding, so
a set without its own policy can borrow it to abstain on the faces it routes to a child band
(:func:`abstain_policy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from centroids.age import AgeModel
from centroids.errors import InvalidParameter

if TYPE_CHECKING:
    from centroids.model import CentroidSet, Predictions

METHODS = ("calibrate", "child-set", "abstain")
DEFAULT_METHOD = "child-set"  # chosen by anfe bench --ages (docs/results.md)
DEFAULT_EDGES = (4.0, 13.0, 18.0)
DEFAULT_ADULT_CONFIDENCE = 0.7  # router: the adults' answer only when p(adult) reaches this
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
        """The router fitted on all of ``x``, and each face's band from a router fitted without it.

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
        bands = np.empty(len(x), dtype=np.int64)
        for k in range(FOLDS):
            bands[folds == k] = fitted(folds != k).band(x[folds == k])
        return fitted(np.ones(len(x), dtype=bool)), bands

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """p(band) of every row of ``x`` (n, 128): (n, len(edges) + 1)."""
        z = np.asarray(x, dtype=np.float64) @ self.weights.T + self.intercepts
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def band(self, x: np.ndarray) -> np.ndarray:
        """Band index of every face: ``len(edges)`` (adult) when p(adult) >= adult_confidence."""
        p = self.probabilities(x)
        adult = len(self.edges)
        return np.where(p[:, adult] >= self.adult_confidence, adult, p[:, :adult].argmax(axis=1))

    def to_doc(self) -> dict[str, Any]:
        return {
            "method": "logistic",
            "edges": list(self.edges),
            "weights": self.weights.tolist(),
            "intercepts": self.intercepts.tolist(),
            "adult_confidence": self.adult_confidence,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Router:
        router = cls(
            edges=[float(e) for e in doc["edges"]],
            weights=np.asarray(doc["weights"], dtype=np.float64),
            intercepts=np.asarray(doc["intercepts"], dtype=np.float64),
            adult_confidence=float(doc.get("adult_confidence", DEFAULT_ADULT_CONFIDENCE)),
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
        signed = None
        for i, rule in enumerate(self.rules):
            rows = np.flatnonzero(band == i)
            if not len(rows):
                continue
            if self.method == "abstain":
                preds.uncertain[rows] = True
                continue
            if signed is None:
                d_f, d_m = (self.reference or cs).distances(x)
                signed = d_m - d_f
            p_female = _sigmoid(rule.a * signed[rows] + rule.b)
            preds.gender[rows] = np.where(p_female >= 0.5, "female", "male")
            preds.confidence[rows] = np.maximum(p_female, 1.0 - p_female)
            threshold = np.where(
                preds.gender[rows] == "female",
                rule.uncertain_below["female"],
                rule.uncertain_below["male"],
            )
            preds.uncertain[rows] = preds.confidence[rows] < threshold
            if self.reference is not None:
                preds.d_female[rows], preds.d_male[rows] = d_f[rows], d_m[rows]
                preds.margin[rows] = np.abs(signed[rows])

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


def fit_policy(
    cs: CentroidSet,
    x: np.ndarray,
    ages: np.ndarray,
    genders: np.ndarray,
    bands: np.ndarray,
    *,
    method: str = DEFAULT_METHOD,
    edges: tuple[float, ...] = DEFAULT_EDGES,
    max_wrong: float = DEFAULT_MAX_WRONG,
    seed: int = 0,
    source: dict[str, Any] | None = None,
    router: Router | None = None,
) -> ChildPolicy:
    """Fit a policy for ``cs`` on faces of every age whose gender and age are known.

    :param x: embeddings (n, 128) of faces of all ages (not the faces ``cs`` was built from)
    :param ages: their true ages; ``genders``: their true genders ("female"/"male")
    :param bands: the band index (0 .. len(edges), the last: adult) each face is routed to, by a
        router or an age model fitted without it
    :param router: the router the policy will route new faces with (None: the estimated age)
    """
    if method not in METHODS:
        raise InvalidParameter(f"unknown children method {method!r}; choose from {METHODS}")
    if not edges or list(edges) != sorted(edges) or edges[0] <= 0:
        raise InvalidParameter("age band edges must be positive and increasing")
    x = np.asarray(x, dtype=np.float64)
    ages = np.asarray(ages)
    genders = np.asarray(genders)
    bands = np.asarray(bands)
    reference, signed = None, None
    if method == "child-set":
        reference, signed = _child_references(cs, x, ages, genders, seed)
    elif method == "calibrate":
        d_f, d_m = cs.distances(x)
        signed = d_m - d_f
    rules = [
        _fit_rule(float(below), signed, genders, bands == i, max_wrong)
        for i, below in enumerate(edges)
    ]
    return ChildPolicy(method, rules, reference, max_wrong, dict(source or {}), router)


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
) -> CentroidSet:
    """``cs`` with an age model and a child policy fitted on these faces; nothing else changes.

    :param x: embeddings (n, 128) of faces of all ages, embedded as ``cs``'s were
    :param ages: their ages in years; ``genders``: their genders
    :param routing: ``router`` (a :class:`Router` picks each face's band) or ``age`` (the band of
        the estimated age)
    """
    from dataclasses import replace

    if routing not in ROUTINGS:
        raise InvalidParameter(f"unknown routing {routing!r}; choose from {ROUTINGS}")
    age = AgeModel.fit(x, ages, seed=seed, source=source)
    router = None
    if routing == "router":
        router, bands = Router.fit(x, ages, edges, seed=seed)
    else:
        bands = np.digitize(age.cross_fitted, edges)
    policy = fit_policy(
        cs, x, ages, genders, bands, method=method, edges=edges, seed=seed, source=source,
        router=router,
    )  # fmt: skip
    return replace(cs, age=age, children=policy)


def _fit_rule(
    below: float,
    signed: np.ndarray | None,
    genders: np.ndarray,
    rows: np.ndarray,
    max_wrong: float,
) -> BandRule:
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
