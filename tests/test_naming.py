"""The bucket-name helper: the aws-panorama rule, S3's rules, and the worst-case length."""

from __future__ import annotations

import pytest

from panopipe.naming import BucketNameError, bucket_name, check_bucket_name


def test_fixed_account_and_region_give_a_literal_name() -> None:
    name = bucket_name("panopipe", "prod", "data", "123456789012", "us-east-1")
    assert name == "aws-panorama-panopipe-prod-data-123456789012-us-east-1"


def test_open_account_and_region_give_a_sub_template() -> None:
    name = bucket_name("panopipe", "dev", "logs", None, None)
    assert name == "aws-panorama-panopipe-dev-logs-${AWS::AccountId}-${AWS::Region}"


def test_open_region_is_checked_against_the_longest_panorama_region() -> None:
    # 63 characters in ap-southeast-1, so it fits only when the region is known to be shorter.
    assert bucket_name("panopipe", "qa", "artifacts", "123456789012", "us-east-1")
    with pytest.raises(BucketNameError, match="would be 64 characters"):
        bucket_name("panopipe", "prod", "artifacts", None, None)


def test_unknown_purpose() -> None:
    with pytest.raises(BucketNameError, match="purpose 'cache' is not one of data, artifacts, logs"):
        bucket_name("panopipe", "dev", "cache", None, None)


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("my-bucket", "must contain 'aws-panorama'"),
        ("aws-panorama-Upper", "lower-case letters, digits and single hyphens"),
        ("aws-panorama--double", "lower-case letters, digits and single hyphens"),
        ("aws-panorama-trailing-", "lower-case letters, digits and single hyphens"),
        ("aws-panorama-" + "x" * 51, "64 characters"),
    ],
)
def test_s3_and_marker_rules(name: str, rule: str) -> None:
    with pytest.raises(BucketNameError, match=rule):
        check_bucket_name(name)
