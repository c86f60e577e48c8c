"""The Fabric tasks of hostctl live in ``fabfile.py`` here; ``fab -r`` points at this directory.

    fab -r "$(python -c 'import hostctl.fabfile as f, os; print(os.path.dirname(f.__file__))')" deploy

May import anything in hostctl: it is an entry point, like the CLI (the release task runs the CLI's command).
"""

import os

DIRECTORY = os.path.dirname(os.path.abspath(__file__))
