"""``python -m depthscope.cli``: the same as the ``depthscope`` command."""

import sys

from depthscope.cli._main import main

sys.exit(main())
