"""The HTTP layer: the only floor that imports quart, hypercorn and werkzeug."""
