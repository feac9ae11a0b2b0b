"""topics.yaml and the broker: the typed specs (``spec``), how long topics keep a user's
events (``retention``), drift between the file and the broker (``drift``), the admin
requests (``broker``), ``socialrec topics apply`` (``apply``) and test clean-up (``cleanup``).
"""

from streams.ops.topics.apply import apply_topics, replicated_for, run_apply
from streams.ops.topics.broker import TopicsApplyError
from streams.ops.topics.cleanup import delete_topics_with_prefix
from streams.ops.topics.retention import TOPICS_WITH_USER_EVENTS, erasure_mark_ttl_s, kept_for_ms
from streams.ops.topics.spec import load_topics

__all__ = [
    "TOPICS_WITH_USER_EVENTS",
    "TopicsApplyError",
    "apply_topics",
    "delete_topics_with_prefix",
    "erasure_mark_ttl_s",
    "kept_for_ms",
    "load_topics",
    "replicated_for",
    "run_apply",
]
