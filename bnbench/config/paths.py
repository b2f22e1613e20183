"""Where bnbench's configuration lives: `conf/` at the top of a checkout, or the copy a
built wheel carries inside the package (bnbench/conf), so an installed bnbench runs from any
directory; plus the user's own config directories (`--config-dir DIR`, Hydra's `-cd`), searched
beside the shipped one for experiments and claims."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # bnbench/
# The user's config directories, os.pathsep-separated; an environment variable so that the
# processes a sweep starts (launcher jobs, pool workers) see the same search path.
USER_DIRS_ENV = "BNBENCH_CONFIG_DIR"


def conf_dir() -> Path:
    """The shipped config directory: the wheel's copy if there is one, else the checkout's."""
    installed = PACKAGE / "conf"
    return installed if installed.is_dir() else PACKAGE.parent / "conf"


CONF_DIR = conf_dir()
CLAIMS_FILE = CONF_DIR / "claims.yaml"


def user_config_dirs() -> list[Path]:
    """The user's config directories given with --config-dir, in order."""
    value = os.environ.get(USER_DIRS_ENV, "")
    return [Path(p) for p in value.split(os.pathsep) if p]


def use_config_dir(directory: str | None) -> None:
    """Add a user config directory (absolute) to the search path; ValueError if missing."""
    if directory is None:
        return
    path = Path(directory).expanduser().resolve()
    if not path.is_dir():
        raise ValueError(f"invalid --config-dir={directory!r}: no such directory")
    dirs = [*user_config_dirs(), path]
    os.environ[USER_DIRS_ENV] = os.pathsep.join(str(p) for p in dict.fromkeys(dirs))


def claims_files() -> list[Path]:
    """The shipped claims file, then each user directory's claims.yaml that exists."""
    user = [d / "claims.yaml" for d in user_config_dirs()]
    return [CLAIMS_FILE, *(f for f in user if f.is_file())]


def searchpath_overrides() -> list[str]:
    """Hydra's override that adds the user's config directories to its search path."""
    dirs = user_config_dirs()
    if not dirs:
        return []
    quoted = ",".join(f"'file://{d}'" for d in dirs)
    return [f"hydra.searchpath=[{quoted}]"]
