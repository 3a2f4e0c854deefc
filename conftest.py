"""refit_core's own suite: everything lives in the plugin (refit_core/pytest_plugin.py).

Installed with pip, the package loads the same plugin through its `pytest11` entry point,
which is named after the module so that this line then loads nothing twice.
"""
pytest_plugins = ["refit_core.pytest_plugin", "pytester"]
