"""Allow ``python -m hostctl``."""

from hostctl.cli import main

main()
