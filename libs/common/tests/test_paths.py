"""Path confinement: inside a root passes; outside, traversal, symlinks out and no roots fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from hindsight.common.errors import InvalidInputError
from hindsight.common.paths import resolve_in_roots

pytestmark = pytest.mark.unit


@pytest.fixture
def roots(tmp_path: Path) -> list[Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x.png").write_bytes(b"png")
    (b / "y.png").write_bytes(b"png")
    (tmp_path / "secret.txt").write_text("no")
    return [a, b]


def test_inside_any_root_resolves(roots: list[Path]) -> None:
    assert resolve_in_roots(roots[0] / "x.png", roots) == (roots[0] / "x.png").resolve()
    assert resolve_in_roots(roots[1] / "y.png", roots) == (roots[1] / "y.png").resolve()
    assert resolve_in_roots("x.png", roots) == (roots[0] / "x.png").resolve()


@pytest.mark.parametrize("path", ["../secret.txt", "/etc/passwd"])
def test_outside_is_refused_naming_the_field(roots: list[Path], path: str) -> None:
    with pytest.raises(InvalidInputError, match="outside the allowed roots") as info:
        resolve_in_roots(path, roots, field="image_path")
    assert info.value.field == "image_path"


def test_symlink_out_of_a_root_is_refused(roots: list[Path]) -> None:
    link = roots[0] / "link.png"
    link.symlink_to(roots[0].parent / "secret.txt")
    with pytest.raises(InvalidInputError, match="outside"):
        resolve_in_roots(link, roots)


def test_missing_file_and_no_roots(roots: list[Path]) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        resolve_in_roots(roots[0] / "nope.png", roots)
    assert resolve_in_roots(roots[0] / "nope.png", roots, must_exist=False).name == "nope.png"
    with pytest.raises(InvalidInputError, match="no image roots"):
        resolve_in_roots("x.png", [])


def test_vector_ids_are_stable_and_distinct() -> None:
    from hindsight.common.record_ids import doc_vector_id, image_vector_id

    assert image_vector_id("/a/x.png") == image_vector_id("/a/x.png")
    assert image_vector_id("/a/x.png") != image_vector_id("/a/y.png")
    assert image_vector_id("/a/x.png").startswith("img-")
    assert doc_vector_id("k") != doc_vector_id("k", chunk=1)
    assert doc_vector_id("k") == doc_vector_id("k", chunk=0)
