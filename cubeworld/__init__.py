"""The ``cubeworld`` command line (``python -m cubeworld`` works too)."""
