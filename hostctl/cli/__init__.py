"""The command line: click commands and all terminal text (``hostctl = hostctl.cli.main:main``).

May import anything in hostctl; nothing in hostctl imports cli (except ``hostctl.__main__``).
Commands with heavy imports are loaded lazily (``lazy.LazyGroup``) to keep start-up fast.
"""
