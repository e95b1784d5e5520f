"""Async Python client for the vifbroker API (see ``errors`` for what it raises)."""

from .answers import MigrationPage, ResultsTaken, UploadResult, UploadTaken
from .api import SETTLED_STATES, BrokerClient, upload_entry
from .errors import (
    BadResponse,
    ClientError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NoActiveMigration,
    NotFound,
    PreconditionFailed,
    ProblemError,
    TransportError,
    Unauthorized,
    Unavailable,
)
from .transport import RetryPolicy, tls_context

__all__ = [
    "SETTLED_STATES",
    "BadResponse",
    "BrokerClient",
    "ClientError",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "MigrationPage",
    "NoActiveMigration",
    "NotFound",
    "PreconditionFailed",
    "ProblemError",
    "ResultsTaken",
    "RetryPolicy",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "UploadResult",
    "UploadTaken",
    "tls_context",
    "upload_entry",
]
