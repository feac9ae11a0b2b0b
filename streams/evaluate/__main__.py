"""``python -m streams.evaluate simulate ...``: see :func:`streams.evaluate.export.main`."""

from __future__ import annotations

import sys

from streams.evaluate.export import main

sys.exit(main())
