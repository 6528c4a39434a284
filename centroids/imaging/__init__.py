"""Image bytes and paths to RGB arrays: formats, size limits, EXIF orientation (no model)."""
