"""Options and checks shared by the ``anfe`` subcommands of every package: one declaration each."""

from __future__ import annotations

import argparse

from anfe.centroids.errors import InvalidParameter
from anfe.centroids.storage.store import Store, default_uri
from anfe.centroids.vision import detectors, encoders


def add_db_option(p: argparse.ArgumentParser, holds: str = "") -> None:
    """``--db``, the one declaration of the database option; ``holds``: what the command keeps there."""
    p.add_argument(
        "--db",
        default=None,
        help="database URI: mongodb://... or a folder / montydb:///folder"
        + (f", for {holds}" if holds else "")
        + f" (default: $ANFE_DB or {default_uri()})",
    )


def add_encoder_option(p: argparse.ArgumentParser, jitters: bool = True) -> None:
    """``--encoder onnx|dlib``, shared by build, predict, bench and serve; ``jitters``: whether
    the command has ``--jitters`` (which dlib always runs above 1)."""
    p.add_argument(
        "--encoder",
        choices=encoders.ENCODERS,
        default=None,
        help="face encoder: onnx (dlib's network on onnxruntime, same vectors, faster) or dlib "
        f"(the reference{'; always used for --jitters > 1' if jitters else ''}); default: "
        f"${encoders.ENV_VAR} or {encoders.DEFAULT_ENCODER}",
    )


def add_detector_option(p: argparse.ArgumentParser) -> None:
    """``--detector hog|cnn``, shared by build, predict, bench and serve."""
    p.add_argument(
        "--detector",
        choices=detectors.DETECTORS,
        default=None,
        help="face detector: hog (dlib's HOG, upsampling once) or cnn (dlib's CNN on "
        "onnxruntime: also turned and tilted faces, ~1.3x HOG's time); default: "
        f"${detectors.ENV_VAR} or {detectors.DEFAULT_DETECTOR}",
    )


def chosen_detector(args: argparse.Namespace) -> str:
    """The ``--detector`` given, else ``$ANFE_DETECTOR``, else ``hog``.

    :raises InvalidParameter: ``$ANFE_DETECTOR`` names no detector
    """
    return getattr(args, "detector", None) or detectors.default_detector()


def open_store(args: argparse.Namespace) -> Store:
    return Store(args.db or default_uri())


def at_least(name: str, value: int | None, least: int = 1) -> None:
    """Raise :class:`InvalidParameter` when an integer option is below ``least``."""
    if value is not None and value < least:
        raise InvalidParameter(f"{name} must be at least {least}, not {value}")


def formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def add_landmarks_option(p: argparse.ArgumentParser) -> None:
    """``--landmarks``, shared by ``anfe build`` and ``anfe bench``."""
    p.add_argument(
        "--landmarks",
        choices=["small", "large"],
        default="small",
        help="dlib landmark model that aligns faces: 5 points (small) or 68 (default: small)",
    )


def add_mode_options(p: argparse.ArgumentParser, balance_help: str) -> None:
    """``--k``, ``--shrinkage`` and ``--balance-by``, shared by ``anfe build`` and ``anfe bench``."""
    p.add_argument("--k", type=int, default=None, help="prototypes per gender (default: 8)")
    p.add_argument(
        "--shrinkage", default=None, help="mahalanobis covariance shrinkage: ledoit-wolf or 0..1"
    )
    p.add_argument("--balance-by", metavar="COLUMN", default=None, help=balance_help)


def mode_params(args: argparse.Namespace) -> dict:
    """The centroid-mode parameters given by :func:`add_mode_options`, checked."""
    params: dict = {}
    if args.k is not None:
        if args.k < 1:
            raise InvalidParameter("--k must be at least 1")
        params["k"] = args.k
    if args.shrinkage is not None:
        text = args.shrinkage
        try:
            value = text if text == "ledoit-wolf" else float(text)
        except ValueError:
            value = -1.0
        if value != "ledoit-wolf" and not 0.0 <= value <= 1.0:
            raise InvalidParameter(f"--shrinkage {text!r}: give ledoit-wolf or a number in [0, 1]")
        params["shrinkage"] = value
    return params
