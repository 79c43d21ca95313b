"""Live sources of radar frames (see :mod:`nowcast.sources.base`)."""
