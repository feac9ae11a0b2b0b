"""The frontends' producer user: a SCRAM login that may write ``events`` and nothing else.

Shops' frontends publish events; they need not read anyone's recommendations or write anything
else. With ``SOCIALREC_KAFKA_FRONTEND_USERNAME`` (and its password) set, ``socialrec infra up``
creates that SCRAM user on the local broker (:func:`upsert_scram_user`, again on every start, so
a changed password takes effect) and ``socialrec topics apply`` grants it WRITE and DESCRIBE on
``events`` (:func:`grant_frontend`): all an idempotent producer needs since Kafka 3.0 (its
producer id comes with WRITE on any topic). The project's own user is the broker's super user.

aiokafka's admin client has no call for either, so this module sends Kafka's own requests:
AlterUserScramCredentials (which aiokafka lacks, defined here) and Create/Describe/DeleteAcls.
A renamed frontends' user does not keep its access: ``infra up`` deletes the former one's
credentials and ACLs (:func:`revoke_users`).
The password itself is never sent: the request carries SCRAM's salted password (PBKDF2 with a
fresh salt), over the admin client's SASL (usually TLS) connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from typing import Any

from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from streams.config import Settings
from streams.ops.infra_auth import AuthSetupError
from streams.security import kafka_client_kwargs, kafka_login_problem, read_secret

#: Kafka's codes for what an ACL names (org.apache.kafka.common.acl and .resource).
TOPIC, LITERAL, ALLOW = 2, 3, 3
ANY, WRITE, DESCRIBE = 1, 4, 8
FRONTEND_OPERATIONS = {"WRITE": WRITE, "DESCRIBE": DESCRIBE}
SCRAM_MECHANISMS = {"SCRAM-SHA-256": (1, "sha256"), "SCRAM-SHA-512": (2, "sha512")}
SCRAM_ITERATIONS = 8192  # Kafka accepts 4096 to 16384
#: The frontends' users ``infra up`` made, one name per line, in the broker's data directory.
FRONTEND_USERS_FILE = "frontend-users"
#: Kafka's ResourceNotFound: the user has no credential of that mechanism (nothing to delete).
RESOURCE_NOT_FOUND = 91
#: How long the broker may take to apply a user or an ACL the controller acknowledged.
APPLIED_TIMEOUT_S = 15.0
POLL_S = 0.05


class KafkaAclError(AuthSetupError):
    """The broker refused to create the user or grant its ACLs; the message says why."""


def frontend_password(settings: Settings) -> str:
    return read_secret(settings.kafka_frontend_password, settings.kafka_frontend_password_file)


def frontend_settings(settings: Settings) -> Settings:
    """The same brokers and TLS, logged in as the frontends' user (what a frontend runs with)."""
    return settings.model_copy(
        update={
            "kafka_username": settings.kafka_frontend_username,
            "kafka_password": settings.kafka_frontend_password,
            "kafka_password_file": settings.kafka_frontend_password_file,
        }
    )


class _AlterScramResponse(Response):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterScramStruct(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _AlterScramResponse
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(
                ("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields)
            ),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class AlterUserScramCredentials(Request[_AlterScramStruct]):  # type: ignore[misc]
    """Set one user's SCRAM credential (KIP-554), as ``kafka-configs --add-config`` does."""

    API_KEY = 51

    def __init__(self, mechanism: str, user: str, password: str) -> None:
        code, digest = SCRAM_MECHANISMS[mechanism]
        salt = os.urandom(32)
        # SCRAM's SaltedPassword: Hi(password, salt, i) of RFC 5802, which is PBKDF2.
        salted = hashlib.pbkdf2_hmac(digest, password.encode(), salt, SCRAM_ITERATIONS)
        self._upsertion: tuple[object, ...] = (user, code, SCRAM_ITERATIONS, salt, salted, {})

    def build(self, request_struct_class: type[_AlterScramStruct]) -> _AlterScramStruct:
        return request_struct_class([], [self._upsertion], {})


class DeleteUserScramCredentials(Request[_AlterScramStruct]):  # type: ignore[misc]
    """Delete one user's SCRAM credential of one mechanism (``kafka-configs --delete-config``)."""

    API_KEY = 51

    def __init__(self, mechanism: str, user: str) -> None:
        self._deletion: tuple[object, ...] = (user, SCRAM_MECHANISMS[mechanism][0], {})

    def build(self, request_struct_class: type[_AlterScramStruct]) -> _AlterScramStruct:
        return request_struct_class([self._deletion], [], {})


async def revoke_users(settings: Settings, users: list[str]) -> None:
    """Take every access from these former frontends' users: their SCRAM credentials (they
    can no longer log in) and every ACL that names them."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings), client_id="socialrec-infra")
    await admin.start()
    try:
        for user in users:
            for mechanism in SCRAM_MECHANISMS:
                reply = await admin._send_request(DeleteUserScramCredentials(mechanism, user))
                for _, code, message, _ in reply.results:
                    if code and code != RESOURCE_NOT_FOUND:
                        raise KafkaAclError(
                            f"kafka: cannot delete the former user {user!r}: {message} ({code})"
                        )
            # Any resource, pattern, host, operation and permission naming the user.
            request = DeleteAclsRequest(ANY, None, ANY, f"User:{user}", None, ANY, ANY)
            reply = await admin._send_request(request)
            for code, message, _ in reply.filter_responses:
                if code:
                    raise KafkaAclError(
                        f"kafka: cannot delete the ACLs of the former user {user!r}: "
                        f"{message} ({code})"
                    )
    finally:
        await admin.close()


async def create_frontend_user(settings: Settings) -> None:
    """Create (or update) the frontends' SCRAM user as the project's user, and wait until the
    broker accepts its login."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings), client_id="socialrec-infra")
    await admin.start()
    try:
        user, password = settings.kafka_frontend_username, frontend_password(settings)
        await upsert_scram_user(admin, settings.kafka_sasl_mechanism, user, password)
    finally:
        await admin.close()
    deadline = time.monotonic() + APPLIED_TIMEOUT_S
    while (problem := await kafka_login_problem(frontend_settings(settings))) is not None:
        if time.monotonic() > deadline:
            raise KafkaAclError(f"kafka: the frontends' user cannot log in: {problem}")
        await asyncio.sleep(POLL_S)


async def upsert_scram_user(admin: Any, mechanism: str, user: str, password: str) -> None:
    """Create ``user`` with ``password``, or change its password."""
    response = await admin._send_request(AlterUserScramCredentials(mechanism, user, password))
    for _, code, message, _ in response.results:
        if code:
            raise KafkaAclError(f"kafka: the broker refused to set {user!r}: {message} ({code})")


async def grant_frontend(admin: Any, settings: Settings, dry_run: bool = False) -> list[str]:
    """Grant the frontends' user what it lacks of WRITE and DESCRIBE on ``events``, and wait
    until the broker's authorizer holds it; return what was (in a dry run: would be) granted."""
    topic = settings.topic("events")
    principal = f"User:{settings.kafka_frontend_username}"
    held = await _granted(admin, topic, principal)
    missing = {name: op for name, op in FRONTEND_OPERATIONS.items() if op not in held}
    if dry_run or not missing:
        return list(missing)
    for name, operation in missing.items():
        request = CreateAclsRequest(TOPIC, topic, LITERAL, principal, "*", operation, ALLOW)
        response = await admin._send_request(request)
        for code, message in response.creation_responses:
            if code:
                raise KafkaAclError(
                    f"kafka: cannot grant {name} on {topic} to {principal}: {message} ({code})"
                )
    # The controller acknowledges ACLs before the broker applies them: wait, so a frontend
    # started right after `topics apply` is not refused.
    deadline = time.monotonic() + APPLIED_TIMEOUT_S
    while await _granted(admin, topic, principal) != set(FRONTEND_OPERATIONS.values()):
        if time.monotonic() > deadline:
            raise KafkaAclError(f"kafka: the ACLs on {topic} did not show within the deadline")
        await asyncio.sleep(POLL_S)
    return list(missing)


async def _granted(admin: Any, topic: str, principal: str) -> set[int]:
    """The operations ``principal`` is allowed on ``topic`` by literal ACLs."""
    request = DescribeAclsRequest(TOPIC, topic, LITERAL, principal, "*", ANY, ALLOW)
    response = await admin._send_request(request)
    if response.error_code:
        raise KafkaAclError(
            f"kafka: cannot read the ACLs on {topic}: {response.error_message} "
            f"({response.error_code}); the broker needs an authorizer (`socialrec infra up` "
            "starts one with SASL) and the project's user the right to describe and alter ACLs"
        )
    return {acl[2] for resource in response.resources for acl in resource[3]}
