"""validate_input's raw image forms: ``<class>/`` folders or a Ground Truth manifest → ``prepare``."""

from __future__ import annotations

from typing import Any

from lambda_handlers.settings import install
from tests.handlers.conftest import make_settings
from tests.handlers.test_validate_input import DATA, refused, run
from tests.handlers.test_validate_input import s3 as s3  # the fixture

__all__ = ["s3"]


def test_class_folders_of_images_are_a_raw_data_set_to_prepare(s3: Any) -> None:
    for key in ("datasets/raw/person/a.jpg", "datasets/raw/empty/b.PNG", "datasets/raw/notes/readme.txt"):
        s3.put_object(Bucket=DATA, Key=key, Body=b"x")

    state = run({"dataset": f"s3://{DATA}/datasets/raw/"})

    assert state["source"] == {
        "kind": "dataset",
        "uri": f"s3://{DATA}/datasets/raw/",
        "bucket": DATA,
        "prefix": "datasets/raw/",
        "s3_data_type": "S3Prefix",
        "channels": {},
        "train_records": None,
        "prepare": True,
    }


def test_a_ground_truth_manifest_is_a_raw_data_set_to_prepare(s3: Any) -> None:
    s3.put_object(Bucket=DATA, Key="datasets/gt/output.manifest", Body=b'{"source-ref": "s3://x/a.jpg", "class": 0}\n')

    source = run({"dataset": f"s3://{DATA}/datasets/gt/output.manifest"})["source"]

    assert source["prepare"] is True
    assert source["raw_manifest"] == "output.manifest"
    assert source["prefix"] == "datasets/gt/"


def test_prepared_channels_win_over_class_folders(s3: Any) -> None:
    s3.put_object(Bucket=DATA, Key="datasets/d1/person/a.jpg", Body=b"x")  # d1 has train/ and validation/

    source = run({"dataset": f"s3://{DATA}/datasets/d1/"})["source"]

    assert "prepare" not in source
    assert source["train_records"] == 3


def test_raw_images_are_refused_when_preparation_is_off(s3: Any) -> None:
    s3.put_object(Bucket=DATA, Key="datasets/raw/person/a.jpg", Body=b"x")
    install(make_settings({"preparation.enabled": False}))

    assert refused({"dataset": f"s3://{DATA}/datasets/raw/"}) == (
        f"input.dataset = 's3://{DATA}/datasets/raw/': the data set holds raw images in <class>/ folders, which "
        "needs the preparation step, and preparation.enabled is false: enable it, or give a prepared data set "
        "with train/ and validation/ channels"
    )


def test_folders_without_images_are_neither_form(s3: Any) -> None:
    s3.put_object(Bucket=DATA, Key="datasets/odd/notes/readme.txt", Body=b"x")

    assert "a raw one, <class>/ folders of .jpg/.jpeg/.png images" in refused({"dataset": f"s3://{DATA}/datasets/odd/"})
