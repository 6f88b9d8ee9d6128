"""Installed versions: celerinfer's (for ``--version`` and the records) and other packages'."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def distribution_version(name: str) -> str | None:
    """The installed version of distribution `name`, or None (never imports the package)."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def package_version() -> str:
    """celerinfer's installed version, or "unknown" (running from a source tree)."""
    return distribution_version("celerinfer") or "unknown"
