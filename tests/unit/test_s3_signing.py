"""The S3 media store's request signing against AWS's published Signature Version 4 example ("GET Object")."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from medspa.settings import ConfigurationError, Settings
from worker.integrations.s3_media import EMPTY_SHA256, S3MediaStore, sigv4_authorization


def test_signature_matches_the_aws_documentation_example():
    # https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html, "Example: GET Object"
    authorization = sigv4_authorization(
        "GET",
        "https://examplebucket.s3.amazonaws.com/test.txt",
        {
            "Host": "examplebucket.s3.amazonaws.com",
            "Range": "bytes=0-9",
            "x-amz-content-sha256": EMPTY_SHA256,
            "x-amz-date": "20130524T000000Z",
        },
        payload_sha256=EMPTY_SHA256,
        access_key_id="AKIAIOSFODNN7EXAMPLE",
        secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        region="us-east-1",
        now=datetime(2013, 5, 24, tzinfo=UTC),
    )
    assert authorization == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_s3_storage_without_its_settings_fails_closed():
    settings = Settings(_env_file=None, media_storage="s3", media_s3_bucket="photos")
    with pytest.raises(ConfigurationError, match="MEDIA_S3_ENDPOINT_URL"):
        S3MediaStore.from_settings(settings)


def test_keys_stay_inside_the_bucket_prefix():
    store = S3MediaStore(
        bucket="b", endpoint_url="http://127.0.0.1:9", region="us-east-1", access_key_id="a", secret_access_key="s"
    )
    assert store.location("1/2/3.jpg") == "s3://b/1/2/3.jpg"
    with pytest.raises(ValueError):
        store.location("../../etc/passwd")


def test_every_process_refuses_to_start_with_incomplete_media_storage():
    from medspa.secrets import check_startup

    with pytest.raises(ConfigurationError, match="MEDIA_S3_BUCKET"):
        check_startup(Settings(_env_file=None, media_storage="s3"), "worker")
    with pytest.raises(ConfigurationError, match="local or s3"):
        check_startup(Settings(_env_file=None, media_storage="ftp"), "webhooks")
    check_startup(Settings(_env_file=None), "worker")  # the default: a local folder
