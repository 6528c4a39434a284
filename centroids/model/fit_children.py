"""Fitting a child policy (:mod:`anfe.centroids.model.children`) on faces of known age and gender.

The router (scikit-learn's logistic regression), the per-band rules and the choice of the router's
thresholds are fitted here, on the faces the policy is fitted on, never on test faces; the policy
that answers at run time needs none of it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from anfe.centroids.errors import InvalidParameter
from anfe.centroids.model.age import AGE_BANDS, AgeModel, band_name, band_of
from anfe.centroids.model.calibration import UNCERTAIN_CONFIDENCE, fit_logistic, sigmoid
from anfe.centroids.model.centroid_set import CentroidSet, fit_set
from anfe.centroids.model.children import (
    ALWAYS,
    CHILD_BELOW,
    DEFAULT_ADULT_CONFIDENCE,
    DEFAULT_EDGES,
    DEFAULT_MAX_WRONG,
    DEFAULT_METHOD,
    DEFAULT_ROUTING,
    GENDER_NAMES,
    METHODS,
    ROUTINGS,
    YOUNG_BELOW,
    BandRule,
    ChildPolicy,
    Router,
    answer_in_bands,
    band_at,
)
from anfe.centroids.model.fit_age import fit_age_bins, group_out, held_groups, one_blas_thread

# chosen on the train faces (choose_routing): the router's adult_confidence, and young_confidence,
# the probability of the bands under YOUNG_BELOW from which a face is uncertain wherever it goes
ADULT_CONFIDENCES = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


YOUNG_CONFIDENCES = (0.1, 0.2, 0.3, 0.4, 0.5, None)  # None: no such gate


ADULTS_ANSWERED_SLACK = 0.005  # adults may lose at most this share of their answers (0.5 point)


ADULTS_BALANCED_SLACK = 0.001  # and at most this much balanced accuracy (0.1 point)


MIN_CHILDREN_ANSWERED = 0.3  # the share of children the routing should still answer (issue 13)


ROUTER_C = 1.0  # inverse L2 strength of the router's logistic regression (scikit-learn's C)


CHILD_AGE = 18  # the child references are fitted on faces younger than this


FOLDS = 5


# routing by p(under 13) (routing "under13"), chosen on faces of each group answered by a router and
# references fitted without that group (choose_agreement)
MIXED_FROM = (0.05, 0.1, 0.2, 0.3, 0.5)  # router.mixed_from
CHILD_FROM = (0.5, 0.7, 0.9)  # router.child_from
AGREE_ADULT = (0.0, 0.5, 0.65, 0.8)  # router.adult_confidence (0: older faces get the set's own)
AGREE_YOUNG = (0.1, 0.2, 0.3)  # router.young_confidence
TEEN_SURE = (0.75, 0.85, ALWAYS)  # the teenagers' rule: answers from this confidence
CHILD_SURE = (0.75, 0.8, 0.85, 0.9, 0.95, ALWAYS)  # the children's, per answer
ADULTS_UNCERTAIN_SLACK = 0.01  # the adults of every group may become uncertain by 1 point more
ADULTS_BALANCED_DROP = 0.002  # and lose at most 0.2 point of balanced accuracy
# when no combination qualifies (children never answered), the routing with the fewest wrong
# answers to faces under 13 among those keeping every group's adults within this (1.5 points)
FALLBACK_UNCERTAIN_SLACK = 0.015
MIN_GROUP_ADULTS = 100  # a group's adults count on their own from this many (else only pooled)
MIN_CELL = 20  # a (group, band, gender) cell of the validation faces counts from this many faces
SMALL_ANSWERED = 12.5  # a cell may hold max_wrong * max(answered, this) wrong answers


@one_blas_thread
def fit_router(
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
        return Router(list(edges), clf.coef_, clf.intercept_, adult_confidence)

    folds = np.random.default_rng(seed).permutation(len(x)) % FOLDS
    probabilities = np.empty((len(x), len(edges) + 1))
    for k in range(FOLDS):
        probabilities[folds == k] = fitted(folds != k).probabilities(x[folds == k])
    return fitted(np.ones(len(x), dtype=bool)), probabilities


@one_blas_thread
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
    groups: np.ndarray | None = None,
) -> CentroidSet:
    """``cs`` with an age model and a child policy fitted on these faces; nothing else changes.

    Routing ``under13`` (the default): :func:`fit_agreement`, with ``groups`` (each face's group,
    e.g. UTKFace's ``race``) to choose its thresholds on faces of groups left out. The older
    routings (``router``, ``age``) fit the ridge age model and are described below.

    Bands under :data:`YOUNG_BELOW` are always uncertain. With the router, its
    ``adult_confidence`` and ``young_confidence`` are chosen on these same faces, from their
    cross-fitted band probabilities (:func:`choose_routing`), never on test faces.

    :param x: embeddings (n, 128) of faces of all ages, embedded as ``cs``'s were
    :param ages: their ages in years; ``genders``: their genders
    :param routing: ``router`` (a :class:`Router` picks each face's band) or ``age`` (the band of
        the estimated age)
    """
    if routing not in ROUTINGS:
        raise InvalidParameter(f"unknown routing {routing!r}; choose from {ROUTINGS}")
    if routing == "under13":
        fitted, _ = fit_agreement(cs, x, ages, genders, groups, method=method, edges=edges,
                                  seed=seed, source=source, max_wrong=max_wrong)  # fmt: skip
        return fitted
    _check(method, edges)
    x, ages, genders = np.asarray(x, dtype=np.float64), np.asarray(ages), np.asarray(genders)
    age = AgeModel.fit(x, ages, seed=seed, source=source)
    reference, signed = _margins(cs, x, ages, genders, method, seed)
    router = None
    if routing == "router":
        router, probabilities = fit_router(x, ages, edges, seed=seed)
        choose_routing(router, cs, x, ages, genders, probabilities, signed, max_wrong)
        bands = band_at(probabilities, router.adult_confidence, router.young_gate())
    else:
        bands = np.digitize(age.cross_fitted, edges)
    rules = _fit_rules(signed, genders, bands, edges, max_wrong)
    policy = ChildPolicy(method, rules, reference, max_wrong, dict(source or {}), router)
    return replace(cs, age=age, children=policy)


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
            answer_in_bands(rules, bands, signed, gender, uncertain)
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

    rule = BandRule(below=below, faces=int(rows.sum()))
    if signed is None or not all((genders[rows] == g).sum() >= 10 for g in ("female", "male")):
        return rule  # abstain, or too few faces of a gender to fit on: always uncertain
    s, truth = signed[rows], genders[rows]
    rule.a, rule.b = fit_logistic(s, (truth == "female").astype(np.float64))
    p_female = sigmoid(rule.a * s + rule.b)
    answer = np.where(p_female >= 0.5, "female", "male")
    confidence = np.maximum(p_female, 1.0 - p_female)
    groups = [truth == g for g in GENDER_NAMES]

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

    child = ages < CHILD_AGE

    def fitted(rows: np.ndarray) -> CentroidSet:
        f, m = x[rows & (genders == "female")], x[rows & (genders == "male")]
        if len(f) < 2 or len(m) < 2:
            raise InvalidParameter("child references need faces of both genders under 18")
        return fit_set(f"{cs.id}-children", f, m, cs.mode, dict(cs.params), seed)

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


@one_blas_thread
def fit_agreement(
    cs: CentroidSet,
    x: np.ndarray,
    ages: np.ndarray,
    genders: np.ndarray,
    groups: np.ndarray | None,
    *,
    method: str = DEFAULT_METHOD,
    edges: tuple[float, ...] = DEFAULT_EDGES,
    seed: int = 0,
    source: dict[str, Any] | None = None,
    max_wrong: float = DEFAULT_MAX_WRONG,
) -> tuple[CentroidSet, dict[str, Any]]:
    """``cs`` with the age bins model and a child policy routed by p(under 13), and the figures
    of the faces the policy was chosen on.

    Every face of each group (UTKFace's ``race``; without groups, a fold) is answered by a router
    and child references fitted without that group, so the thresholds (:func:`choose_agreement`)
    are chosen on faces as unlike the training faces as a new group's; the per-band rules are
    fitted on those faces too. The stored router and references are then fitted on all faces.
    """
    from sklearn.linear_model import LogisticRegression

    _check(method, edges)
    if CHILD_BELOW not in edges:
        raise InvalidParameter(
            f"routing by p(under {CHILD_BELOW:g}) needs {CHILD_BELOW:g} among the edges"
        )
    x, ages, genders = np.asarray(x, dtype=np.float64), np.asarray(ages), np.asarray(genders)
    g = None if groups is None else np.asarray(groups).astype(str)
    held = held_groups(g, len(x), seed)
    age, _ = fit_age_bins(x, ages, g, seed=seed, source=source)
    y = np.digitize(ages.astype(np.float64), edges)
    if len(np.unique(y)) != len(edges) + 1:
        raise InvalidParameter(
            "the router needs faces of every age band (under each edge, and adults)"
        )

    def router_on(rows: np.ndarray) -> Router:
        clf = LogisticRegression(C=ROUTER_C, max_iter=2000).fit(x[rows], y[rows])
        weights = np.zeros((len(edges) + 1, x.shape[1]))
        intercepts = np.full(len(edges) + 1, -50.0)  # a band without a face: never likely
        if len(clf.classes_) == 2:  # scikit-learn keeps one row for two classes
            weights[clf.classes_[1]], intercepts[clf.classes_[1]] = clf.coef_[0], clf.intercept_[0]
            intercepts[clf.classes_[0]] = 0.0
        else:
            weights[clf.classes_], intercepts[clf.classes_] = clf.coef_, clf.intercept_
        return Router(list(edges), weights, intercepts)

    def references_on(rows: np.ndarray) -> CentroidSet | None:
        if method != "child-set":
            return None
        child = rows & (ages < CHILD_AGE)
        f, m = x[child & (genders == "female")], x[child & (genders == "male")]
        if len(f) < 2 or len(m) < 2:
            raise InvalidParameter("child references need faces of both genders under 18")
        return fit_set(f"{cs.id}-children", f, m, cs.mode, dict(cs.params), seed)

    def signed_of(ref: CentroidSet | None, rows: np.ndarray) -> np.ndarray:
        d_f, d_m = (ref or cs).distances(x[rows])
        return (d_m - d_f)[:, None]

    p = group_out(router_on, lambda r, rows: r.probabilities(x[rows]), held, len(edges) + 1)
    signed = group_out(references_on, signed_of, held, 1)[:, 0]
    likeliest = p.argmax(axis=1)
    rules = [
        BandRule(below=float(below), faces=int(np.sum(likeliest == i)))
        if below <= YOUNG_BELOW or method == "abstain"
        else _fit_rule(float(below), signed, genders, likeliest == i, max_wrong)
        for i, below in enumerate(edges)
    ]
    router = router_on(np.ones(len(x), dtype=bool))
    own = replace(cs, age=None, children=None).classify(x)
    figures = choose_agreement(router, rules, p, signed, own, ages, genders, held, max_wrong)
    policy = ChildPolicy(method, rules, references_on(np.ones(len(x), dtype=bool)), max_wrong,
                         dict(source or {}), router)  # fmt: skip
    return replace(cs, age=age, children=policy), figures


def choose_agreement(
    router: Router,
    rules: list[BandRule],
    p: np.ndarray,
    signed: np.ndarray,
    own: Any,
    ages: np.ndarray,
    genders: np.ndarray,
    held: np.ndarray,
    max_wrong: float,
) -> dict[str, Any]:
    """Set the router's ``mixed_from``, ``child_from``, ``adult_confidence``, ``young_confidence``
    and the children's and teenagers' thresholds, on faces answered without their group.

    Every combination of :data:`MIXED_FROM`, :data:`CHILD_FROM`, :data:`AGREE_ADULT`,
    :data:`AGREE_YOUNG`, :data:`TEEN_SURE` and :data:`CHILD_SURE` (per answer) is tried as
    :func:`anfe.centroids.model.children.answer_by_agreement` answers. A combination qualifies when
    in **every group**, for each band under 13 and each gender with at least :data:`MIN_CELL`
    faces, at most ``max_wrong`` of the answers are wrong (counted against at least
    :data:`SMALL_ANSWERED` answers), the adults of every group (of at least
    :data:`MIN_GROUP_ADULTS`), and pooled, become uncertain by at most
    :data:`ADULTS_UNCERTAIN_SLACK` more (a group's adults are a new group's stand-in: pooled, the
    many white faces would hide a group whose adults the router reads as young), and the adults
    (pooled) lose at most :data:`ADULTS_BALANCED_DROP` of balanced accuracy against the set's own
    answers. The one answering the most children aged 4-12 is
    kept. When none qualifies, children and teenagers are never answered and, among the routings
    keeping the adults within :data:`FALLBACK_UNCERTAIN_SLACK`, the one with the fewest wrong
    answers to faces under 13 is kept (those are faces read as older).
    """
    edges = list(router.edges)
    child_band, adult_band = edges.index(CHILD_BELOW), len(edges)
    teen_rule = rules[adult_band - 1] if adult_band - 1 > child_band else rules[child_band]
    child_rule = rules[child_band]

    def reading(rule: BandRule) -> tuple[np.ndarray, np.ndarray]:
        pf = sigmoid(rule.a * signed + rule.b)
        return np.where(pf >= 0.5, "female", "male"), np.maximum(pf, 1 - pf)

    g_child, c_child = reading(child_rule)
    g_teen, c_teen = reading(teen_rule)
    if child_rule.a == 0.0:
        c_child = np.zeros(len(p))
    if teen_rule.a == 0.0:
        c_teen = np.zeros(len(p))
    u = p[:, : child_band + 1].sum(axis=1)
    young_bands = sum(e <= router.young_below for e in edges)
    p_young = p[:, :young_bands].sum(axis=1)
    band = np.digitize(ages.astype(np.float64), edges)
    adult = ages >= CHILD_AGE
    kids = band == child_band
    # the cells every qualifying combination must keep within max_wrong
    cell = np.full(len(p), -1)
    names = []
    for h in np.unique(held):
        for b in range(child_band + 1):  # the bands of the targets: under 4, and 4-12
            for gname in GENDER_NAMES:
                rows = (held == h) & (band == b) & (genders == gname)
                if rows.sum() >= MIN_CELL:
                    cell[rows] = len(names)
                    names.append((h, b, gname))
    in_cell = cell >= 0

    def balanced(gender: np.ndarray) -> float:
        return float(
            np.mean([np.mean(gender[adult & (genders == gn)] == gn) for gn in GENDER_NAMES])
        )

    base_unc, base_bal = float(own.uncertain[adult].mean()), balanced(own.gender)
    _, group_of = np.unique(held, return_inverse=True)
    adults_per_group = np.bincount(group_of[adult])
    counted = adults_per_group >= MIN_GROUP_ADULTS
    sure_before = np.bincount(group_of[adult & ~own.uncertain], minlength=len(adults_per_group))

    def worst_uncertain_change(given: np.ndarray, pooled: float) -> float:
        """The largest rise of the adults' uncertain share against the set's own: in a group of
        at least :data:`MIN_GROUP_ADULTS` adults, or pooled."""
        sure = np.bincount(group_of[adult & given], minlength=len(adults_per_group))
        rises = (sure_before - sure)[counted] / adults_per_group[counted]
        return float(max(pooled, *rises)) if len(rises) else pooled

    best, fallback, tried = None, None, 0
    for lo in MIXED_FROM:
        for hi in CHILD_FROM:
            if hi < lo:
                continue
            for ac in AGREE_ADULT:
                adult_reading = p[:, adult_band] >= ac
                g_old = np.where(adult_reading, own.gender, g_teen)
                child_only = u >= hi
                mixed = (u >= lo) & ~child_only
                older = ~child_only & ~mixed
                shown = np.where(older, g_old, np.where(child_only | (u >= 0.5), g_child, g_old))
                agree = g_child == g_old
                for q in AGREE_YOUNG:
                    young = p_young >= q
                    for tt in TEEN_SURE:
                        s_old = np.where(adult_reading, ~own.uncertain, c_teen >= tt)
                        for tf in CHILD_SURE:
                            for tm in CHILD_SURE:
                                tried += 1
                                s_child = c_child >= np.where(g_child == "female", tf, tm)
                                sure = np.where(older, s_old, np.where(
                                    child_only, s_child, s_child & s_old & agree))  # fmt: skip
                                given = sure & ~young
                                wrong = given & (shown != genders)
                                adult_unc = 1.0 - given[adult].mean()
                                never = tf >= ALWAYS and tm >= ALWAYS and tt >= ALWAYS
                                slack = (
                                    FALLBACK_UNCERTAIN_SLACK if never else ADULTS_UNCERTAIN_SLACK
                                )
                                worst = worst_uncertain_change(given, adult_unc - base_unc)
                                if worst > slack:
                                    continue
                                if base_bal - balanced(shown) > ADULTS_BALANCED_DROP:
                                    continue
                                answered = np.bincount(cell[in_cell & given], minlength=len(names))
                                wrongs = np.bincount(cell[in_cell & wrong], minlength=len(names))
                                ok = bool(
                                    np.all(
                                        wrongs <= max_wrong * np.maximum(answered, SMALL_ANSWERED)
                                    )
                                )
                                row = {
                                    "mixed_from": lo, "child_from": hi, "adult_confidence": ac,
                                    "young_confidence": q, "teen_from": tt,
                                    "child_female_from": tf, "child_male_from": tm,
                                    "children_answered": float(given[kids].mean()),
                                    "children_wrong_answers": int(np.sum(wrong & ~adult)),
                                    "adults_uncertain_change": float(adult_unc - base_unc),
                                    "adults_uncertain_change_worst_group": worst,
                                    "adults_balanced_change": balanced(shown) - base_bal,
                                    "within_bounds": ok,
                                }  # fmt: skip
                                row["under_13_wrong_answers"] = int(
                                    np.sum(wrong & (band <= child_band))
                                )
                                ok = ok and worst <= ADULTS_UNCERTAIN_SLACK
                                if ok and (
                                    best is None
                                    or row["children_answered"] > best["children_answered"]
                                ):
                                    best = row
                                if never and (
                                    fallback is None
                                    or (
                                        row["under_13_wrong_answers"],
                                        row["adults_uncertain_change"],
                                    )
                                    < (
                                        fallback["under_13_wrong_answers"],
                                        fallback["adults_uncertain_change"],
                                    )
                                ):
                                    fallback = row
    chosen = best or fallback
    if chosen is None:  # no routing keeps the adults: the most conservative one
        chosen = {"mixed_from": MIXED_FROM[-1], "child_from": CHILD_FROM[0], "adult_confidence": AGREE_ADULT[0],
                  "young_confidence": AGREE_YOUNG[-1], "teen_from": ALWAYS, "child_female_from": ALWAYS,
                  "child_male_from": ALWAYS, "within_bounds": False}  # fmt: skip
    router.mixed_from, router.child_from = chosen["mixed_from"], chosen["child_from"]
    router.adult_confidence, router.young_confidence = (
        chosen["adult_confidence"],
        chosen["young_confidence"],
    )
    router.young_below = YOUNG_BELOW
    child_rule.uncertain_below = {
        "female": chosen["child_female_from"],
        "male": chosen["child_male_from"],
    }
    if teen_rule is not child_rule:
        teen_rule.uncertain_below = {"female": chosen["teen_from"], "male": chosen["teen_from"]}
    chosen = {**chosen, "qualified": best is not None, "combinations": tried}
    router.selection = [chosen]
    return chosen
