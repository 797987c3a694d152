"""The harness's checks; each returns a CheckResult (passed, compared, differences, timings)."""

from harness.checks.dual_logging import (
    IGNORED_TAG_PREFIXES,
    IGNORED_TAGS,
    SOURCE_RUN_TAG,
    check_dual_logging,
)
from harness.checks.endpoint_scoring import check_endpoint_scoring
from harness.checks.registry import check_registry_increments, verify_registry_versions
from harness.checks.result import CheckResult, Difference
from harness.checks.udf_scoring import check_udf_scoring

__all__ = [
    "CheckResult", "Difference", "check_dual_logging", "check_registry_increments",
    "verify_registry_versions", "check_udf_scoring", "check_endpoint_scoring", "IGNORED_TAGS", "IGNORED_TAG_PREFIXES", "SOURCE_RUN_TAG",
]
