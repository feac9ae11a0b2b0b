"""Test clean-up: delete every topic under the settings' topic prefix."""

from __future__ import annotations

from streams.config import Settings
from streams.ops.topics.broker import ADMIN_TIMEOUT_MS, admin_client
from streams.ops.topics.spec import TopicsFileError, load_topics


async def delete_topics_with_prefix(settings: Settings) -> list[str]:
    """Delete every topic whose name starts with ``settings.topic_prefix`` (test clean-up).

    The declared topics are deleted by name as well as everything listed under the prefix:
    a topic created moments ago may not be in the broker's metadata (and so the listing)
    yet, but the controller deletes it by name. Refuses an empty prefix, so it can never
    wipe a real deployment's topics.
    """
    prefix = settings.topic_prefix
    if not prefix:
        raise ValueError("refusing to delete topics without a topic_prefix")
    try:
        declared = {settings.topic(spec.name) for spec in load_topics(settings.topics_file)}
    except TopicsFileError:
        declared = set()
    admin = admin_client(settings)
    try:
        await admin.start()
        listed = {t for t in await admin.list_topics() if t.startswith(prefix)}
        response = await admin.delete_topics(sorted(declared | listed), timeout_ms=ADMIN_TIMEOUT_MS)
        return sorted(
            item["topic"]
            for item in response.to_object()["topic_error_codes"]
            if item["error_code"] == 0
        )
    finally:
        await admin.close()
