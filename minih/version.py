"""The package version (one place: minih.__version__, run manifests, setup.py)."""
__version__ = "0.2.0"
