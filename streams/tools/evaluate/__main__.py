"""``python -m streams.tools.evaluate simulate ...``: see
:func:`streams.tools.evaluate.export.main`."""

from __future__ import annotations

import sys

from streams.tools.evaluate.export import main

sys.exit(main())
