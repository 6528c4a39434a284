"""The classifier: centroid sets, their calibration, the age estimate and the child policy."""
