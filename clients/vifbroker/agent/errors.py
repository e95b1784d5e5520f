"""What the agent itself raises (backend and client errors keep their own roots).

Errors (tree)::

    AgentError
    ├── DomainXmlError      the domain's XML could not be read or parsed
    │   └── DomainNotFound  no such domain on this host (yet)
    └── ConfigError         a command-line or file setting is unusable
"""

from __future__ import annotations


class AgentError(Exception):
    """Root of the agent's own errors."""


class DomainXmlError(AgentError):
    pass


class DomainNotFound(DomainXmlError):
    pass


class ConfigError(AgentError):
    pass
