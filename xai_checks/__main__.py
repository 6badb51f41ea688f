"""``python -m xai_checks`` is the ``xai-checks`` command."""

import sys

from xai_checks.cli import main

sys.exit(main())
