"""Session-wide test settings."""

from __future__ import annotations

import os
import tempfile


def pytest_configure(config):
    # Models built by tests (the embedded tiny VLM) go to a throwaway cache, never the user's,
    # whichever test first asks for one.
    os.environ["CUBEWORLD_CACHE"] = tempfile.mkdtemp(prefix="cubeworld-test-cache-")
