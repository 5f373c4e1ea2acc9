"""Artifact URIs to root-relative paths, on their own."""

import pytest

from projects.sarif_uri import CommonDirectory, UriResolver, uri_path


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("src/app.py", "src/app.py"),
        ("pyapp/%C3%BCn.py", "pyapp/ün.py"),
        ("file:///home/u/a%20b.py", "/home/u/a b.py"),
        ("file://localhost/home/u/a.py", "/home/u/a.py"),
        ("file:/home/u/a.py", "/home/u/a.py"),
        ("FILE:///home/u/a.py", "/home/u/a.py"),
        ("file:///C:/x/y.py", "C:/x/y.py"),
        ("C:\\x\\y.py", "C:/x/y.py"),
        ("src\\a.py", "src/a.py"),
        ("https://example.com/a%20b.py", "https://example.com/a b.py"),
        ("src/a#b.py", "src/a#b.py"),
        ("file:///a/b%ff.py", "/a/b\ufffd.py"),
        ("http://[::1", "http://[::1"),
    ],
)
def test_uri_path_decodes_and_drops_the_file_scheme(uri, path):
    assert uri_path(uri) == path


def test_common_directory_is_the_longest_shared_directory():
    common = CommonDirectory()
    assert common.directory is None
    common.add("file:///home/u/proj/src/a.py")
    assert common.directory == "/home/u/proj/src/"
    common.add("file:///home/u/proj/src/pkg/b.py")
    assert common.directory == "/home/u/proj/src/"
    common.add("file:///home/u/proj/tests/test_a.py")
    assert common.directory == "/home/u/proj/"
    common.add("file:///home/u/project2/x.py")  # shares "/home/u/proj" as text only
    assert common.directory == "/home/u/"
    common.add("relative/ignored.py")
    assert common.directory == "/home/u/"


def _resolver(**kwargs):
    defaults = dict(
        base_ids={}, working_directories=[], common_directory=None, artifacts=[]
    )
    return UriResolver(**{**defaults, **kwargs})


def test_a_root_of_slash_or_a_bare_drive_is_no_root():
    assert _resolver(common_directory="/").path("file:///etc/x", None, None) == "/etc/x"
    resolver = _resolver(common_directory="C:/")
    assert resolver.path("file:///C:/x/y.cs", None, None) == "C:/x/y.cs"


def test_roots_are_tried_in_order_source_root_then_working_directory_then_common():
    resolver = _resolver(
        base_ids={"SRCROOT": ("file:///w/repo/", "")},
        working_directories=["file:///w/"],
        common_directory="/w/repo/src/",
    )
    assert resolver.path("file:///w/repo/src/a.py", None, None) == "src/a.py"
    assert resolver.path("file:///w/other/b.py", None, None) == "other/b.py"


def test_a_long_chain_of_base_ids_stops():
    base_ids = {f"B{i}": (f"d{i}/", f"B{i + 1}") for i in range(50)}
    path = _resolver(base_ids=base_ids).path("x.py", "B0", None)
    assert path.endswith("x.py") and path.count("/") <= 11


def test_an_artifact_index_out_of_range_names_no_file():
    resolver = _resolver(artifacts=[("a.py", "")])
    assert resolver.path(None, None, 0) == "a.py"
    assert resolver.path(None, None, 1) == ""
    assert resolver.path(None, None, -1) == ""


def test_results_share_a_bounded_cache():
    resolver = _resolver()
    for i in range(60_000):
        assert resolver.path(f"f{i}.py", None, None) == f"f{i}.py"
    assert len(resolver._cache) <= 50_000
