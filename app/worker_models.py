"""Imported by the detection workers' fork server: load dlib's HOG detector and 5-point landmark
model once, so every worker forked from it starts with them (see :mod:`anfe.app.pool`).

The face encoder is not loaded here: an onnxruntime session does not survive a fork, so each
worker opens its own (:func:`anfe.centroids.vision.faces.warm_up`).
"""

from anfe.centroids.vision import faces

faces.warm_up_detection()
