"""Pants loads this module for the ``jupiter_plugins`` entry of ``[GLOBAL].backend_packages``."""

from __future__ import annotations

from typing import Any

from jupiter_plugins import create_worker, remove_worker


def rules() -> list[Any]:
    """The goal rules of the worker generator."""
    return [*create_worker.rules(), *remove_worker.rules()]
