"""Where bnbench's own configuration lives: `conf/` at the top of a checkout, or the copy a
built wheel carries inside the package (bnbench/conf), so an installed bnbench runs from any
directory."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def conf_dir() -> Path:
    """The shipped config directory: the wheel's copy if there is one, else the checkout's."""
    installed = PACKAGE / "conf"
    return installed if installed.is_dir() else PACKAGE.parent / "conf"


CONF_DIR = conf_dir()
CLAIMS_FILE = CONF_DIR / "claims.yaml"
