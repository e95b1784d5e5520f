"""ovs-vsctl commands, transactions and the one place that runs the binary.

A :class:`Transaction` collects :class:`Command` objects; each renders as
``-- [options] verb args``. Running them is ONE ``ovs-vsctl --oneline
--format=json`` process; output line *i* belongs to command *i*.

Values are read back with ``find`` rather than ``get``: table output is one
compact JSON document per line, which ``--oneline`` leaves unescaped, with
maps as ``["map", [[k, v], ...]]``; ``get`` would need --oneline's escaping
undone and its bare-identifier printing told apart from JSON strings.

Writes pass ``external_ids:PortData=`` + ``json.dumps(value)`` as a single argv
element: every UTF-8 value without NUL round-trips byte-exactly that way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import spawn
from ..base import BackendError, BackendTimeout, BackendUnavailable

log = logging.getLogger(__name__)

PORTDATA_KEY = "PortData"
INTERFACE_COLUMNS = "--columns=_uuid,name,external_ids"

#: Linux refuses any single argv element above MAX_ARG_STRLEN (32 pages).
MAX_ARG_BYTES = 128 * 1024 - 1

# How ovs-vsctl says it could not reach ovsdb-server.
_UNREACHABLE = ("database connection failed", "failed to connect", "receive failed")


class VsctlError(BackendError):
    """ovs-vsctl rejected the transaction (bad row, bad argument): not worth a retry as is."""

    def __init__(self, message: str, *, returncode: int | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr

    @property
    def no_row(self) -> bool:
        """The transaction named a row that does not exist (any more)."""
        return "no row" in self.stderr


@dataclass(slots=True)
class Command:
    """One ovs-vsctl command; ``output`` is its raw line once the transaction ran."""

    verb: str
    args: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    #: table commands (find, list) print JSON documents; others print text
    table: bool = False
    output: str | None = field(default=None, compare=False)

    def render(self) -> list[str]:
        return ["--", *self.options, self.verb, *self.args]

    def argv_bytes(self) -> int:
        return sum(len(a.encode("utf-8")) + 1 for a in self.render())

    def rows(self) -> list[dict[str, Any]]:
        """Rows of a table command's output as ``{heading: decoded value}``."""
        if self.output is None:
            raise BackendError(f"{self.verb}: transaction has not run")
        doc = json.loads(self.output)
        headings = doc["headings"]
        return [
            {h: decode_datum(v) for h, v in zip(headings, row, strict=True)} for row in doc["data"]
        ]


def decode_datum(value: Any) -> Any:
    """OVSDB JSON datum → Python: maps to dict, sets to list, uuids to str."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        kind, body = value
        if kind == "map":
            return {decode_datum(k): decode_datum(v) for k, v in body}
        if kind == "set":
            return [decode_datum(v) for v in body]
        if kind in ("uuid", "named-uuid"):
            return body
    return value


def portdata_arg(value: str) -> str:
    # ensure_ascii=False: non-ASCII stays one UTF-8 sequence instead of a
    # 6-12 byte \u escape, so big values stay under the argv element cap.
    return f"external_ids:{PORTDATA_KEY}=" + json.dumps(value, ensure_ascii=False)


class Transaction:
    """Commands that ovs-vsctl runs atomically in one process."""

    def __init__(self) -> None:
        self.commands: list[Command] = []

    def add(self, command: Command) -> Command:
        self.commands.append(command)
        return command

    def list_interfaces(self, records: Sequence[str]) -> Command:
        """These rows (by name or UUID, looked up directly, no scan)."""
        return self.add(
            Command("list", ("Interface", *records), options=(INTERFACE_COLUMNS,), table=True)
        )

    def set_portdata(self, record: str, value: str) -> Command:
        return self.add(Command("set", ("Interface", record, portdata_arg(value))))

    def remove_portdata(self, record: str) -> Command:
        return self.add(Command("remove", ("Interface", record, "external_ids", PORTDATA_KEY)))

    def argv_bytes(self) -> int:
        return sum(c.argv_bytes() for c in self.commands)


@dataclass(frozen=True, slots=True)
class VsctlConfig:
    binary: str = "ovs-vsctl"
    db: str | None = None
    no_wait: bool = False
    timeout: float = 5.0

    def base_argv(self) -> list[str]:
        # ovs-vsctl's --timeout is whole seconds; never round down to 0 (= forever).
        argv = [self.binary, f"--timeout={max(1, round(self.timeout))}"]
        if self.db:
            argv.append(f"--db={self.db}")
        if self.no_wait:
            argv.append("--no-wait")
        return [*argv, "--oneline", "--format=json"]


class VsctlRunner:
    """Runs one ovs-vsctl process per call and translates its failures."""

    def __init__(self, config: VsctlConfig) -> None:
        self.config = config
        #: processes spawned so far (for logs and benchmarks, not for logic)
        self.calls = 0

    async def run(self, commands: Sequence[Command]) -> None:
        """Run ``commands`` in one transaction; fill each command's ``output``."""
        if not commands:
            return
        argv = self.config.base_argv()
        for command in commands:
            argv += command.render()
        self.calls += 1
        stdout, stderr, rc = await self._exec(argv)
        if rc != 0:
            raise _translate(rc, stderr, self.config)
        lines = stdout.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if len(lines) != len(commands):
            raise VsctlError(
                f"ovs-vsctl printed {len(lines)} lines for {len(commands)} commands",
                returncode=rc,
                stderr=stderr,
            )
        for command, line in zip(commands, lines, strict=True):
            command.output = line

    async def _exec(self, argv: list[str]) -> tuple[str, str, int]:
        # ovs-vsctl enforces --timeout itself (SIGALRM); ours is the backstop
        # for a process that hangs anyway, e.g. stuck on a full pipe. Cancelled
        # or timed out, the process is killed: never an orphan ovs-vsctl.
        try:
            out, err, rc = await spawn.run(argv, self.config.timeout + 2.0)
        except OSError as exc:
            raise BackendUnavailable(f"cannot run {argv[0]}: {exc}") from exc
        except TimeoutError as exc:
            raise BackendTimeout(f"{argv[0]} ran past {self.config.timeout}s") from exc
        return out.decode("utf-8", "surrogateescape"), err.decode("utf-8", "replace"), rc


def _translate(rc: int, stderr: str, config: VsctlConfig) -> BackendError:
    return tool_failure(
        "ovs-vsctl", rc, stderr, config.timeout, _UNREACHABLE,
        lambda message: VsctlError(message, returncode=rc, stderr=stderr),
    )  # fmt: skip


def tool_failure(
    tool: str,
    rc: int,
    stderr: str,
    timeout: float,
    unreachable: Sequence[str],
    refused: Callable[[str], BackendError],
) -> BackendError:
    """What a failed OVS command-line tool (ovs-vsctl, ovsdb-client) means: a
    timeout, an unreachable server (``unreachable``: what the tool prints then),
    else the tool's own refusal (``refused``, given its last line of stderr)."""
    message = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {rc}"
    # --timeout fires SIGALRM: the shell's 142, Python's -14.
    if rc in (-14, 142) or "Alarm clock" in stderr:
        return BackendTimeout(f"{tool} timed out after {timeout}s")
    if any(marker in stderr for marker in unreachable):
        return BackendUnavailable(f"ovsdb-server unreachable: {message}")
    log.debug("%s failed rc=%s: %s", tool, rc, stderr.strip())
    return refused(message)
