"""Faces in an image: detection, landmarks, face chips and 128-d embeddings (dlib's models)."""
