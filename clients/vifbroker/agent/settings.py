"""The agent's settings and the dependencies every migration worker is given."""

from __future__ import annotations

from dataclasses import dataclass, field

from vifbroker.client import BrokerClient

from .domainxml import DomainSource
from .metrics import AgentMetrics
from .portwatch import PortWatch
from .registrar import ResumeBook
from .resultsbatch import ResultsBatcher
from .router import Router
from .uploadbatch import UploadBatcher


@dataclass(frozen=True, slots=True)
class AgentSettings:
    host: str
    #: longest inbox long-poll (seconds)
    poll_wait: float = 25.0
    heartbeat_interval: float = 15.0
    #: once some ports of a domain exist, how long to wait for the rest before
    #: applying those that do (the rest follow when they appear)
    port_grace: float = 1.0
    #: on SIGTERM, how long in-flight applies and uploads may take to finish
    drain_timeout: float = 10.0
    agent_version: str | None = None
    #: register arriving migrations, complete/cancel them (no controller; the broker
    #: runs with --agent-migrations)
    register_migrations: bool = False
    #: an agent-registered migration's source asks libvirt this long for the
    #: domain's outgoing job before it refuses and cancels
    leaving_window: float = 15.0


@dataclass(frozen=True, slots=True)
class Deps:
    """What a worker talks to; built once by :class:`.service.Agent`."""

    client: BrokerClient
    router: Router
    watch: PortWatch
    domains: DomainSource
    settings: AgentSettings
    metrics: AgentMetrics = field(default_factory=AgentMetrics)
    #: when each domain last resumed on this host (fed by the agent's lifecycle listener)
    resumes: ResumeBook = field(default_factory=ResumeBook)
    #: where workers post results (together when they finish together)
    results: ResultsBatcher = field(init=False)
    #: where workers upload (together when they collect together)
    uploads: UploadBatcher = field(init=False)

    def __post_init__(self) -> None:
        # Frozen: set once here, from the client and host above.
        object.__setattr__(self, "results", ResultsBatcher(self.client, self.settings.host))
        object.__setattr__(self, "uploads", UploadBatcher(self.client, self.settings.host))
