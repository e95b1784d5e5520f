"""What every ``vifbroker`` subcommand shares: exit codes and one-line error text.

Exit codes (documented in ``vifbroker --help`` and docs/operations.md):

* 0 — done;
* 1 — failure at run time (broker unreachable, migration not found, refused,
  a port already in use);
* 2 — usage or configuration (a bad flag, variable, TOML value or URL).

A command never ends with a traceback or a raw validation dump: it prints one
line ``vifbroker <command>: <what went wrong>`` to stderr.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import ValidationError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

EXIT_CODES_HELP = "exit codes: 0 ok, 1 failure at run time, 2 usage or configuration error"

#: variables read by something other than a settings model (the hook, the tests)
OTHER_VARIABLES = frozenset(
    {
        "VIFBROKER_CONFIG",
        "VIFBROKER_SPOOL",
        "VIFBROKER_HOOK_MAX_XML",
        "VIFBROKER_TEST_STRICT",
    }
)


def explain(exc: ValidationError, env_prefix: str = "VIFBROKER_") -> str:
    """One line for a settings validation error, naming the setting as an operator
    spells it (``listen`` / ``VIFBROKER_LISTEN``) and the value refused."""
    parts = []
    for err in exc.errors(include_url=False):
        name = ".".join(str(p) for p in err.get("loc", ())) or "settings"
        env = env_prefix + name.split(".")[0].upper()
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            parts.append(f"unknown setting {name!r}")
            continue
        value = err.get("input")
        shown = "" if isinstance(value, Mapping) else f" (got {value!r})"
        parts.append(f"{name} ({env}): {msg}{shown}")
    return "; ".join(parts)


def unknown_variables(environ: Mapping[str, str], known: Iterable[str]) -> list[str]:
    """``VIFBROKER_*`` names in ``environ`` that nothing reads (likely a typo)."""
    allowed = set(known) | OTHER_VARIABLES
    return sorted(k for k in environ if k.startswith("VIFBROKER_") and k not in allowed)
