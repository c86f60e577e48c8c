"""hostctl: a YAML inventory of customers rendered into uWSGI vassals and nginx server blocks."""

__version__ = "0.1.0"
