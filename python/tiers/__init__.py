"""tiers from Python: a typed layer over the `tiers` command's JSON.

    import tiers
    project = tiers.Project("path/to/project")
    report = project.build()                  # tiers build --json
    venv = project.paths()["venv"].path       # tiers paths --json

Every decision (keys, freshness, rebuilds) is the binary's; this package runs it
and parses what it prints. The binary ships in the same wheel.
"""

from tiers._api import (
    BuildFailed,
    ConfigError,
    Project,
    Reason,
    Report,
    Status,
    TierPath,
    TierReport,
    TiersError,
)
from tiers._find import TiersNotFound, find_tiers_bin

__all__ = [
    "BuildFailed",
    "ConfigError",
    "Project",
    "Reason",
    "Report",
    "Status",
    "TierPath",
    "TierReport",
    "TiersError",
    "TiersNotFound",
    "find_tiers_bin",
]
