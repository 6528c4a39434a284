"""``anfe centroids``: list, show, delete or seed the stored centroid sets; fit their age model;
migrate a database of an earlier version to compact vectors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from anfe.centroids.builder.ages import fit_onto
from anfe.centroids.errors import CentroidsNotFound, InvalidParameter
from anfe.centroids.model.children import DEFAULT_EDGES, ROUTINGS
from anfe.centroids.model.children import DEFAULT_METHOD as DEFAULT_CHILD_METHOD
from anfe.centroids.model.children import METHODS as CHILD_METHODS
from anfe.centroids.storage import shipped
from anfe.centroids.storage.store import (
    Store,
    check_uri,
    default_uri,
    describe_uri,
    exists,
    expand_centroids,
)
from anfe.options import add_db_option, formatter, open_store

EXAMPLES_CENTROIDS = """examples:
  anfe centroids list
  anfe centroids show g_5000
  anfe centroids delete g_1000
  anfe centroids seed        # add the shipped sets the database lacks
  anfe centroids migrate     # rewrite a database of an earlier version compactly (resumable)
  anfe centroids fit-age g_5000-mahalanobis --data ../shared/data/utkface --hold-out 0.2
      # add an age model and a child policy, fitted on the folder's faces of all ages
      # (without the benchmark's held-out side), to a stored set; its other fields stay
"""


def register(sub) -> None:
    p = sub.add_parser(
        "centroids",
        help="list, show, delete or seed the stored centroid sets; fit their age model; migrate",
        description="The centroid sets a database holds: list them (id, mode, size, source), "
        "show one whole as JSON, delete one, seed the sets shipped with anfe into it, fit an "
        "age model and child policy onto one, or migrate a database written by an earlier "
        "version to compact vectors. Nothing is created by list, show, delete or migrate.",
        epilog=EXAMPLES_CENTROIDS,
        formatter_class=formatter,
    )
    p.add_argument(
        "action",
        choices=["list", "show", "delete", "seed", "fit-age", "migrate"],
        help="list the sets, show one as JSON, delete one, seed the shipped sets, fit an age "
        "model and child policy onto one, or migrate: rewrite the documents of an earlier "
        "version with compact vectors (an interrupted migration loses nothing; run it again)",
    )
    p.add_argument("id", nargs="?", help="centroid set id, for show, delete and fit-age")
    g = p.add_argument_group("fit-age")
    g.add_argument("--data", type=Path, help="labelled folder with an age column in labels.csv")
    g.add_argument(
        "--hold-out",
        type=float,
        default=0.2,
        help="leave out the benchmark's held-out side: its split fraction (default: "
        "%(default)s; 0 uses every image)",
    )
    g.add_argument("--seed", type=int, default=0, help="split and fold seed (default: 0)")
    g.add_argument(
        "--method",
        choices=list(CHILD_METHODS),
        default=DEFAULT_CHILD_METHOD,
        help="how faces estimated young are answered (default: %(default)s; see children.py)",
    )
    g.add_argument(
        "--edges",
        default=",".join(f"{e:g}" for e in DEFAULT_EDGES),
        help="estimated-age band edges of the child policy (default: %(default)s)",
    )
    g.add_argument(
        "--routing",
        choices=list(ROUTINGS),
        default=ROUTINGS[0],
        help="how a face's age band is read: under13 (by the router's p(under 13); when mixed, "
        "answered only if the child's and the older reading agree; thresholds chosen leaving "
        "each labels.csv 'race' group out), router (its likeliest band), or age (the band of "
        "the estimated age) (default: %(default)s)",
    )
    g.add_argument("--jobs", type=int, default=None, help="worker processes (default: cores)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_db_option(p)
    p.set_defaults(func=run, needs_models=False)
    p.set_defaults(fit_age_defaults={n: p.get_default(n) for n in FIT_AGE_ONLY})


FIT_AGE_ONLY = ("data", "hold_out", "seed", "method", "edges", "routing", "jobs", "no_progress")


def _check_arguments(args: argparse.Namespace, defaults: dict) -> None:
    """Refuse what an action would silently ignore: an id where none is taken, fit-age's options."""
    action = args.action
    if action in ("show", "delete", "fit-age") and not args.id:
        raise InvalidParameter(f"`anfe centroids {action}` needs a centroid id")
    if action in ("list", "seed", "migrate") and args.id:
        raise InvalidParameter(f"`anfe centroids {action}` takes no id, not {args.id!r}")
    if action != "fit-age":
        given = [n for n in FIT_AGE_ONLY if getattr(args, n) != defaults[n]]
        if given:
            options = ", ".join("--" + n.replace("_", "-") for n in given)
            raise InvalidParameter(f"{options}: only for `anfe centroids fit-age`, not {action}")


def run(args: argparse.Namespace) -> int:
    _check_arguments(args, args.fit_age_defaults)
    uri = args.db or default_uri()
    check_uri(uri)  # another scheme is refused before anything else
    if args.action in ("list", "show", "delete", "migrate") and not exists(uri):
        return _no_database(args, uri)  # never created by reading it
    with open_store(args) as store:
        if args.action == "seed":
            added = shipped.seed(store)
            print(
                f"seeded {', '.join(added)}"
                if added
                else "nothing to seed: all shipped sets present"
            )
            return 0
        if args.action == "list":
            docs = store.list_centroids()
            if not docs:
                print(f"no centroid sets in {describe_uri(store.uri)}; {_seed_hint(args)}")
            print_list(docs)
            return 0
        if args.action == "fit-age":
            return _fit_age(args, store)
        if args.action == "migrate":
            done = store.migrate(log=lambda line: print(line, flush=True))
            print(
                f"migrated {describe_uri(store.uri)}: {done['centroid_sets']} centroid sets and "
                f"{done['faces']} cached faces rewritten compactly"
            )
            return 0
        if args.action == "show":
            doc = expand_centroids(store.get_centroids(args.id))  # JSON has no binary
            print(json.dumps({"id": doc.pop("_id"), **doc}, indent=2))  # `id`, as HTTP says
            return 0
        if not store.delete_centroids(args.id):
            store.get_centroids(args.id)  # raises, naming the stored sets
        print(f"deleted {args.id}")
        return 0


def print_list(docs: list[dict]) -> None:
    """One line per set, its columns aligned whatever the length of the ids and modes."""
    id_width = max((len(d["_id"]) for d in docs), default=0)
    mode_width = max((len(d.get("mode", "centroid")) for d in docs), default=0)
    for d in docs:
        src = d.get("source", {})
        print(
            f"{d['_id']:<{id_width}}  {d.get('mode', 'centroid'):<{mode_width}}  "
            f"per_gender={d.get('per_gender')} dataset={src.get('dataset')} "
            f"seed={src.get('seed')} created={d.get('created_at')}"
        )


def _seed_hint(args: argparse.Namespace) -> str:
    db = f" --db {args.db}" if args.db else ""
    return f"`anfe centroids seed{db}` adds the sets shipped with anfe"


def _no_database(args: argparse.Namespace, uri: str) -> int:
    where = describe_uri(uri)
    if args.action == "list":
        print(f"no centroid sets: {where} does not exist; {_seed_hint(args)}")
        return 0
    if args.action == "migrate":
        print(f"nothing to migrate: {where} does not exist")
        return 0
    raise CentroidsNotFound(
        f"no centroid set with id {args.id!r}: {where} does not exist; {_seed_hint(args)}"
    )


def parse_edges(text: str) -> tuple[float, ...]:
    """``"4,13,18"`` → ``(4.0, 13.0, 18.0)``."""
    try:
        edges = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidParameter(f"--edges {text!r} is not a list of numbers") from None
    if not edges:
        raise InvalidParameter("--edges needs at least one age")
    return edges


def _fit_age(args: argparse.Namespace, store: Store) -> int:
    if args.data is None:
        raise InvalidParameter("`anfe centroids fit-age` needs --data FOLDER")
    if not 0.0 <= args.hold_out < 1.0:
        raise InvalidParameter("--hold-out must be in [0, 1)")
    fitted = fit_onto(
        store,
        args.id,
        args.data,
        hold_out=args.hold_out or None,
        seed=args.seed,
        method=args.method,
        edges=parse_edges(args.edges),
        routing=args.routing,
        jobs=args.jobs,
        progress=not args.no_progress,
    )
    age = fitted.age
    held = (
        "without its group"
        if getattr(age, "method", "ridge") == "bins" and age.fit.get("held_out_by") == "group"
        else "cross-fitted"
    )
    how = {"router": "routed by the router", "age": "routed by the estimated age",
           "under13": "routed by p(under 13)"}[args.routing]  # fmt: skip
    print(
        f"{args.id}: age model ({getattr(age, 'method', 'ridge')}) fitted on {age.held_out} faces "
        f"(MAE {age.held_out_mae:.2f} years {held}, {age.coverage:.0%} interval covers "
        f"{age.held_out_coverage:.1%}); children: {fitted.children.method}, {how}"
    )
    router = fitted.children.router
    if router is not None and router.mixed_from is not None:
        [chosen] = router.selection
        print(
            f"  p(under 13): the child reading alone from {router.child_from:.2f}, both readings "
            f"must agree from {router.mixed_from:.2f}; the adults' answer from p(adult) "
            f"{router.adult_confidence:.2f}, uncertain from p(under {router.young_below:g}) "
            f"{router.young_confidence:.2f}; chosen among {chosen['combinations']} combinations on "
            f"faces answered without their group ("
            + ("every group within the bounds" if chosen["qualified"] else
               "none kept every group within the bounds: children never answered")
            + f"; children 4-12 answered {chosen.get('children_answered', 0.0):.1%})"
        )  # fmt: skip
    elif router is not None:
        [chosen] = [
            r
            for r in router.selection
            if (r["adult_confidence"], r["young_confidence"])
            == (router.adult_confidence, router.young_confidence)
        ]
        young = "off" if router.young_confidence is None else f"{router.young_confidence:.2f}"
        print(
            f"  router: the adults' answer from p(adult) {router.adult_confidence:.2f}, uncertain "
            f"from p(under {router.young_below:g}) {young}; chosen on these faces among "
            f"{len(router.selection)} pairs (children answered {chosen['children_answered']:.1%}, "
            f"{chosen['children_wrong_answers']} of them wrongly)"
        )
    lo = 0.0
    for rule in fitted.children.rules:
        t = rule.uncertain_below
        how = (
            "always uncertain"
            if rule.never_answers
            else f"answered {rule.answered:.1%} (female answers from confidence "
            f"{t['female']:.2f}, male from {t['male']:.2f})"
        )
        print(f"  routed {lo:g}-{rule.below:g}: {rule.faces} faces, {how}")
        lo = rule.below
    return 0
