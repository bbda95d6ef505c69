"""Entry point of the uvicorn subprocess the server tests start: ``python -m tests.server.serve_main serve …``.

Registers the tiny test specs (so a test server can serve them next to the built-in model),
then runs the real ``dream serve``.
"""

from __future__ import annotations

import os
import sys
import time

from dream.server.commands import main
from tests.server import tiny

if __name__ == "__main__":
    tiny.install()
    # Replica tests: make each streamed chunk take a while, so a request can be killed mid-way.
    delay = float(os.environ.get("DREAM_TEST_CHUNK_DELAY_S", "0"))
    if delay > 0:
        tiny.TinyRunner.on_chunk = lambda i: time.sleep(delay)
    sys.exit(main(sys.argv[1:]))
