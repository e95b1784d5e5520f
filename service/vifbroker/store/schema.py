"""Schema versions, the same for every store.

Each store keeps a numbered list of upgrade steps and a ``schema_versions``
table recording which steps ran and which broker ran them. At open a store
compares the database's version with the newest step it knows:

- equal: nothing to do;
- older: run the missing steps (``vifbroker db upgrade``, or at start unless
  ``--no-upgrade``), else refuse with the command that upgrades;
- newer: a newer broker upgraded the database; refuse, naming that broker's
  version, since this one cannot know what the newer steps changed.
"""

from __future__ import annotations

from importlib import metadata

from .errors import SchemaMismatch

#: The newest step a database ran and the broker that ran it (same SQL for every store).
NEWEST_STEP_SQL = (
    "SELECT version, broker_version FROM schema_versions ORDER BY version DESC LIMIT 1"
)


def broker_version() -> str:
    try:
        return metadata.version("vifbroker")
    except metadata.PackageNotFoundError:
        return "unknown"


def plan(found: int, latest: int, *, upgrade: bool, written_by: str | None, url: str) -> range:
    """The step numbers to run to bring version ``found`` to ``latest``."""
    if found > latest:
        raise SchemaMismatch(
            f"the database schema is version {found}, newer than this broker knows "
            f"(version {latest}, vifbroker {broker_version()}): it was upgraded by "
            f"vifbroker {written_by or 'a newer release'}; run that version or newer"
        )
    if found < latest and not upgrade:
        raise SchemaMismatch(
            f"the database schema is version {found}; this broker needs version {latest}: "
            f"run `vifbroker db upgrade --db {url}` (or start without --no-upgrade)"
        )
    return range(found + 1, latest + 1)
