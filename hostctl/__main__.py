"""Allow ``python -m hostctl``."""

from hostctl.cli.main import main

main()
