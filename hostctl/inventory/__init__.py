"""The inventory: read, validate and edit the operator's YAML files (hostctl.yaml, customers/*.yaml).

Pure data in, data out.
May import: hostctl.errors. Never plan, render, engine or anything above.
"""
