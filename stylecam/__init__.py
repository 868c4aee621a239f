"""stylecam: a real-time streaming style and saliency server.

The subpackages live in the repository's top-level folders (``stylecam.server`` is
``server/``, and so on: ``pyproject.toml``'s package-dir); this folder holds only the
``stylecam`` command line (``cli.py``), also run as ``python -m stylecam``.
"""
