"""Entry point of the uvicorn subprocess the server tests start: ``python -m tests.server.serve_main serve …``.

Registers the tiny test specs (so a test server can serve them next to the built-in model),
then runs the real ``dream serve``.
"""

from __future__ import annotations

import sys

from dream.server.commands import main
from tests.server import tiny

if __name__ == "__main__":
    tiny.install()
    sys.exit(main(sys.argv[1:]))
