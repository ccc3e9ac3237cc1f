from __future__ import annotations

import sys

from hitl.cli import main

sys.exit(main())
