"""The one error hierarchy of Kraken.

Every error a user can see is a ``KrakenError``; each class carries the HTTP status
and the RFC 7807 problem ``type`` slug it maps to. The manager turns them into
``application/problem+json`` in exactly one place (``manager.api.problems``); the
agent sends them over the wire as ``ErrorReply(error_type=slug, ...)`` and the
manager rebuilds the same class with ``error_from_wire``. Library errors (aiodocker,
zmq, SQLAlchemy) are translated into these at the boundary where they occur.

    KrakenError (500 internal-error)
    ├── InvalidAPIParameters (400 invalid-api-params)
    │   ├── MalformedJSON (400 malformed-json)
    │   ├── BadJobRequest (400 invalid-job-request): an atlas job form it does not take
    │   ├── InvalidVideo (400 invalid-video): an upload outside the model's limits
    │   ├── ModelNotInstalled (400 model-not-installed): a known model no image offers
    │   ├── HostNotAllowed (400 host-not-allowed)
    │   ├── VFolderAlreadyExists (400 vfolder-already-exists)
    │   ├── NotRegularFile (400 not-a-regular-file): a FIFO, socket or device
    │   └── PathNotAllowed (400 path-not-allowed): leaves its directory or via a symlink
    │       └── VFolderPathNotAllowed (400 vfolder-path-not-allowed)
    ├── AuthenticationFailed (401 unauthorized)
    │   ├── StrictSigningRequired (401 strict-signing-required)
    │   ├── ReplayedRequest (401 replayed-request)
    │   └── BodyDigestMismatch (401 body-digest-mismatch)
    ├── Forbidden (403 forbidden)
    │   ├── VFolderPermissionDenied (403 vfolder-permission-denied)
    │   └── EmailNotVerified (403 email-not-verified): atlas sign-in before confirming
    ├── NotFound (404 not-found)
    │   ├── KernelNotFound (404 kernel-not-found)
    │   ├── ImageNotFound (404 image-not-found)
    │   ├── VFolderNotFound (404 vfolder-not-found)
    │   ├── PathNotFound (404 path-not-found)
    │   │   └── VFolderPathNotFound (404 vfolder-path-not-found)
    │   ├── InvitationNotFound (404 vfolder-invitation-not-found)
    │   ├── ServiceNotFound (404 service-not-found): no such service, terminal or run
    │   ├── AccountNotFound (404 account-not-found): no atlas account with that e-mail
    │   ├── ItemNotFound (404 item-not-found): no atlas job of that id for the caller
    │   ├── NotOffered (404 not-offered): a seed route this manager does not offer
    │   └── UnsupportedAPIVersion (404 unsupported-api-version)
    ├── MethodNotAllowed (405 method-not-allowed)
    ├── ResourceLimitExceeded (406 resource-limit-exceeded)
    │   └── VFolderLimitExceeded (406 vfolder-limit-exceeded)
    ├── SessionAlreadyExists (409 session-already-exists)
    ├── KernelNotRunning (409 kernel-not-running): a stream to a session not RUNNING
    ├── AgentIdConflict (409 agent-id-conflict): a live agent already holds that agent id
    ├── EmailAlreadyRegistered (409 email-already-registered): atlas sign-up
    ├── QuotaExceeded (412 quota-exceeded)
    ├── PayloadTooLarge (413 payload-too-large)
    ├── RateLimitExceeded (429 too-many-requests)
    │   ├── SignInThrottled (429 sign-in-throttled)
    │   └── TooManyTransfers (429 too-many-transfers)
    ├── KernelCreationFailed (500 kernel-creation-failed)
    ├── KernelCreationCancelled (409 kernel-creation-cancelled)
    ├── KernelExecutionFailed (500 kernel-execution-failed)
    ├── InvalidImageLabel (500 invalid-image-label): an image label the agent cannot use
    ├── EmailDeliveryFailed (500 email-delivery-failed): the SMTP server refused or is down
    ├── AgentError (502 agent-error)
    │   ├── ProtocolError (502 protocol-error)
    │   └── ServiceStartFailed (502 service-start-failed): a service did not come up
    └── ServiceUnavailable (503 service-unavailable)
        ├── NoAgentAvailable (503 no-agent-available)
        ├── SessionQueueTimeout (503 session-queue-timeout): queued past maxWaitSeconds
        ├── AgentUnavailable (503 agent-unavailable)
        ├── DatabaseUnavailable (503 database-unavailable)
        ├── RedisUnavailable (503 redis-unavailable)
        └── AgentTimeout (504 agent-timeout)
"""
from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_TYPE_PREFIX = "https://api.backend.ai/probs/"


class KrakenError(Exception):
    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal server error"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.extra = extra

    @property
    def problem_type(self) -> str:
        return PROBLEM_TYPE_PREFIX + self.slug

    def to_problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.problem_type, "title": self.title}
        if self.detail:
            body["detail"] = self.detail
        body.update(self.extra)
        return body


class InvalidAPIParameters(KrakenError):
    status, slug, title = 400, "invalid-api-params", "Missing or invalid API parameters"


class MalformedJSON(InvalidAPIParameters):
    slug, title = "malformed-json", "Malformed JSON in the request body"


# the seed 000 job API's message for every refused request (its problems carry `message`)
INVALID_REQUEST_SYNTAX = "Invalid request syntax"


class BadJobRequest(InvalidAPIParameters):
    """A job-creation form the API does not take (fields, spellings, values)."""

    slug, title = "invalid-job-request", "Invalid request syntax"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, message=INVALID_REQUEST_SYNTAX)


class InvalidVideo(InvalidAPIParameters):
    slug, title = "invalid-video", "The uploaded video does not meet the model's limits"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, message=INVALID_REQUEST_SYNTAX)


class ModelNotInstalled(InvalidAPIParameters):
    """A known model that no kernel image offers."""

    slug, title = "model-not-installed", "This model is not installed on this cluster"


class HostNotAllowed(InvalidAPIParameters):
    slug, title = "host-not-allowed", "The Host header names no host this manager serves"


class VFolderAlreadyExists(InvalidAPIParameters):
    slug, title = "vfolder-already-exists", "A virtual folder with this name exists"


class NotRegularFile(InvalidAPIParameters):
    slug, title = "not-a-regular-file", "Only regular files and directories can be used"


class PathNotAllowed(InvalidAPIParameters):
    slug, title = "path-not-allowed", "The path leaves its directory or is invalid"


class VFolderPathNotAllowed(PathNotAllowed):
    slug, title = "vfolder-path-not-allowed", "The path leaves the virtual folder or is invalid"


class AuthenticationFailed(KrakenError):
    status, slug, title = 401, "unauthorized", "Unauthorized access"


class StrictSigningRequired(AuthenticationFailed):
    slug, title = "strict-signing-required", "This keypair must sign requests in strict mode"


class ReplayedRequest(AuthenticationFailed):
    slug, title = "replayed-request", "This nonce was already used"


class BodyDigestMismatch(AuthenticationFailed):
    slug, title = "body-digest-mismatch", "The body does not match its signed SHA-256"


class Forbidden(KrakenError):
    status, slug, title = 403, "forbidden", "Forbidden operation"


class VFolderPermissionDenied(Forbidden):
    slug, title = "vfolder-permission-denied", "Your permission on this virtual folder is too low"


class EmailNotVerified(Forbidden):
    slug, title = "email-not-verified", "Email authentication has not been completed"


class NotFound(KrakenError):
    status, slug, title = 404, "not-found", "Not found"


class KernelNotFound(NotFound):
    slug, title = "kernel-not-found", "No such kernel session"


class RunNotFound(NotFound):
    slug, title = "run-not-found", "No such run, or its streamed output is no longer kept"


class ImageNotFound(NotFound):
    slug, title = "image-not-found", "No such kernel image"


class VFolderNotFound(NotFound):
    slug, title = "vfolder-not-found", "No such virtual folder"


class NotOffered(NotFound):
    """A seed route this manager does not offer (answered, never a 5xx)."""

    slug, title = "not-offered", "Not offered by this server"


class ItemNotFound(NotFound):
    slug, title = "item-not-found", "No such item"


class PathNotFound(NotFound):
    slug, title = "path-not-found", "No such file or directory"


class VFolderPathNotFound(PathNotFound):
    slug, title = "vfolder-path-not-found", "No such file or directory in the virtual folder"


class InvitationNotFound(NotFound):
    slug, title = "vfolder-invitation-not-found", "No such virtual folder invitation"


class ServiceNotFound(NotFound):
    slug, title = "service-not-found", "The session offers no such service"


class AccountNotFound(NotFound):
    slug, title = "account-not-found", "No member with this email"


class UnsupportedAPIVersion(NotFound):
    slug, title = "unsupported-api-version", "Unsupported API major version"


class MethodNotAllowed(KrakenError):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"


class ResourceLimitExceeded(KrakenError):
    status, slug, title = 406, "resource-limit-exceeded", "Requested resources exceed the limits"


class VFolderLimitExceeded(ResourceLimitExceeded):
    slug, title = "vfolder-limit-exceeded", "A virtual folder limit would be exceeded"


class SessionAlreadyExists(KrakenError):
    status, slug, title = 409, "session-already-exists", "A session with this token exists"


class KernelNotRunning(KrakenError):
    status, slug, title = 409, "kernel-not-running", "The session is not RUNNING"


class AgentIdConflict(KrakenError):
    status, slug, title = 409, "agent-id-conflict", "This ID has already been registered"


class EmailAlreadyRegistered(KrakenError):
    status, slug, title = 409, "email-already-registered", "This email is already registered"


class QuotaExceeded(KrakenError):
    status, slug, title = 412, "quota-exceeded", "Keypair quota exceeded"


class PayloadTooLarge(KrakenError):
    status, slug, title = 413, "payload-too-large", "Request payload too large"


class RateLimitExceeded(KrakenError):
    status, slug, title = 429, "too-many-requests", "Rate limit exceeded"


class SignInThrottled(RateLimitExceeded):
    """Carries ``retry_after`` (seconds) in ``extra``; the response adds Retry-After."""

    slug, title = "sign-in-throttled", "Too many failed sign-ins; wait before retrying"


class TooManyTransfers(RateLimitExceeded):
    slug, title = "too-many-transfers", "Too many file transfers at once; retry shortly"


class KernelCreationFailed(KrakenError):
    slug, title = "kernel-creation-failed", "Kernel creation failed"


class KernelCreationCancelled(KrakenError):
    status, slug, title = (409, "kernel-creation-cancelled",
                           "The session was destroyed while it was being created")


class KernelExecutionFailed(KrakenError):
    slug, title = "kernel-execution-failed", "Kernel execution failed"


class InvalidImageLabel(KrakenError):
    slug, title = "invalid-image-label", "The session's image has an invalid label"


class EmailDeliveryFailed(KrakenError):
    slug, title = "email-delivery-failed", "Email external module error"


class AgentError(KrakenError):
    status, slug, title = 502, "agent-error", "The agent reported an error"


class ProtocolError(AgentError):
    slug, title = "protocol-error", "Malformed or unexpected wire message"


class ServiceStartFailed(AgentError):
    slug, title = "service-start-failed", "The session's service did not start"


class ServiceUnavailable(KrakenError):
    status, slug, title = 503, "service-unavailable", "Service unavailable"


class NoAgentAvailable(ServiceUnavailable):
    slug, title = "no-agent-available", "No agent can host this session now"


class SessionQueueTimeout(ServiceUnavailable):
    slug, title = "session-queue-timeout", "No room freed for this session in time"


class AgentUnavailable(ServiceUnavailable):
    slug, title = "agent-unavailable", "The session's agent is not reachable now; retry"


class DatabaseUnavailable(ServiceUnavailable):
    slug, title = "database-unavailable", "The database is not reachable now; retry"


class RedisUnavailable(ServiceUnavailable):
    slug, title = "redis-unavailable", "Redis is not reachable now; retry"


class AgentTimeout(ServiceUnavailable):
    status, slug, title = 504, "agent-timeout", "The agent did not answer in time"


def _all_subclasses(cls: type[KrakenError]) -> list[type[KrakenError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


def error_from_wire(slug: str, detail: str | None) -> KrakenError:
    """Rebuild the error class an agent reported by its slug (unknown → AgentError)."""
    for cls in _all_subclasses(KrakenError):
        if cls.slug == slug:
            return cls(detail)
    return AgentError(detail)
