"""Imported by the detection workers' fork server: load dlib's HOG detector and 5-point landmark
model once, so every worker forked from it starts with them (see :mod:`app.pool`).

The face encoder is not loaded here: an onnxruntime session does not survive a fork, so each
worker opens its own (:func:`centroids.faces.warm_up`).
"""

from centroids import faces

faces.warm_up_detection()
