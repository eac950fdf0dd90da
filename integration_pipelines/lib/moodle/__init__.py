"""The Moodle Web Services (REST) client, split by concern.

- ``client``: :class:`MoodleClient`, the one call path (bracket encoding, typed errors,
  retries, warnings, request counts) and the typed readers;
- ``crawl``: the snapshot crawl (:meth:`MoodleClient.crawl_snapshot`);
- ``errors``: the typed errors; ``records``: what the readers yield; ``params``: the PHP
  bracket encoding and small answer parsers.
"""

from integration_pipelines.lib.moodle.client import REST_PATH, MoodleClient
from integration_pipelines.lib.moodle.errors import (
    MoodleAccessError,
    MoodleAuthError,
    MoodleError,
    MoodleHTTPError,
    MoodleInvalidParameter,
    MoodleNotFound,
    MoodlePermissionError,
    MoodleResponseError,
    MoodleServerError,
    MoodleTransportError,
    MoodleWSError,
)
from integration_pipelines.lib.moodle.params import encode_params, parse_assign_grade
from integration_pipelines.lib.moodle.records import (
    CompletionMode,
    MoodleAssignGrade,
    MoodleAssignment,
    MoodleCompletion,
    MoodleCourse,
    MoodleEnrolment,
    MoodleGrade,
    MoodleUser,
    MoodleWarning,
    SnapshotRecord,
)

__all__ = [
    "REST_PATH",
    "CompletionMode",
    "MoodleAccessError",
    "MoodleAssignGrade",
    "MoodleAssignment",
    "MoodleAuthError",
    "MoodleClient",
    "MoodleCompletion",
    "MoodleCourse",
    "MoodleEnrolment",
    "MoodleError",
    "MoodleGrade",
    "MoodleHTTPError",
    "MoodleInvalidParameter",
    "MoodleNotFound",
    "MoodlePermissionError",
    "MoodleResponseError",
    "MoodleServerError",
    "MoodleTransportError",
    "MoodleUser",
    "MoodleWSError",
    "MoodleWarning",
    "SnapshotRecord",
    "encode_params",
    "parse_assign_grade",
]
