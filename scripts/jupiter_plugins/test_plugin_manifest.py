"""The manifest create-worker leaves behind, and what remove-worker accepts as one."""

from __future__ import annotations

import json

import pytest

from jupiter_plugins.manifest import Manifest, ManifestError, sha256_of


def test_a_manifest_survives_a_round_trip_through_its_file() -> None:
    manifest = Manifest.of("pdf-render", "basic", {"BUILD": b"x", "src/a.py": b"y"})

    assert Manifest.from_json(manifest.to_json()) == manifest
    assert manifest.files["BUILD"] == sha256_of(b"x")


def test_the_manifest_file_is_stable_sorted_json() -> None:
    content = Manifest.of("pdf-render", "basic", {"z": b"", "a": b""}).to_json()

    assert list(json.loads(content)["files"]) == ["a", "z"]
    assert content.endswith(b"\n")


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        b'{"version": 99, "files": {}}',
        b'{"version": 1, "files": []}',
    ],
)
def test_what_is_not_a_manifest_is_refused(content: bytes) -> None:
    with pytest.raises(ManifestError):
        Manifest.from_json(content)


@pytest.mark.parametrize("path", ["../other-app/BUILD", "/etc/passwd", "a//b", ".generated.json"])
def test_a_manifest_cannot_point_outside_its_folder(path: str) -> None:
    content = json.dumps({"version": 1, "files": {path: sha256_of(b"")}}).encode()

    with pytest.raises(ManifestError, match="invalid path"):
        Manifest.from_json(content)
