"""Build hook: ship the top-level ``templates/`` folder inside the package as ``mash_requests.templates``.

Why not ``package-dir`` in pyproject.toml: mapping a folder outside ``src/`` into the package
makes setuptools implement ``pip install -e .`` with an import hook that type checkers (mypy,
pyright) cannot follow, so users' scripts saw no types. With ``src/`` alone the editable
install is a plain ``.pth`` path; only wheels and sdists need the templates copied in, and an
editable checkout finds them where they are (``mash_requests.rendering.shipped_templates``).
"""

from setuptools import setup
from setuptools.command.build_py import build_py

TEMPLATES_PACKAGE = "mash_requests.templates"


class BuildPy(build_py):
    """Read the ``mash_requests.templates`` package from ``templates/``, not ``src/``."""

    def get_package_dir(self, package: str) -> str:
        if package == TEMPLATES_PACKAGE:
            return "templates"
        return str(super().get_package_dir(package))


setup(cmdclass={"build_py": BuildPy})
