"""Artifact locations in SARIF, turned into paths relative to the scanned source tree.

SARIF §3.4 (artifactLocation), §3.14.14 (run.originalUriBaseIds). A result names its
file by a URI, either absolute (`file:///home/ci/checkout/src/app.py`) or relative to a
base id (`"uri": "src/app.py", "uriBaseId": "%SRCROOT%"`) whose meaning the run may
define in `originalUriBaseIds`, possibly through other base ids. The same code scanned
in two checkout directories must give the same paths (they are part of a finding's
identity), so a path is made relative to the run's source root:

1. a URI under a source-root base id (`%SRCROOT%`, `SRCROOT`, `PROJECT_ROOT`, ...; see
   `SOURCE_ROOT_ID`) is relative to the root by definition, whatever the base means;
2. an absolute `file:` URI is made relative to, in order: the absolute URI given for a
   source-root base id, the working directory of one of the run's invocations, and the
   longest common directory of all the run's absolute `file:` URIs (`CommonDirectory`);
3. a relative URI without a base id, or with a base id the run does not define, is taken
   as relative to the root already (what Bandit, Semgrep and Checkov write).

Paths are percent-decoded (`pyapp/%C3%BCn.py` is `pyapp/ün.py`), use `/`, and have no
`.` segments. A file outside every root keeps its absolute path.
"""

import posixpath
import re
from urllib.parse import unquote, urlsplit

# Base ids naming the root of the scanned sources, compared without "%" and case.
SOURCE_ROOT_ID = re.compile(
    r"%?(?:SRC|SOURCE|PROJECT|REPO|REPOSITORY|WORKSPACE|CHECKOUT)_?ROOT%?",
    re.IGNORECASE,
)
# originalUriBaseIds may chain ("SUB" -> "SRCROOT" -> absolute); cycles end here.
MAX_BASE_DEPTH = 10
# Paths resolved per run are memoised; results share few distinct files.
_CACHE_LIMIT = 50_000
_WINDOWS_DRIVE = re.compile(r"/?[A-Za-z]:/")


def uri_path(uri: str) -> str:
    """The percent-decoded path of `uri`, with `/` separators.

    `file:` URIs lose their scheme and host (`file:///srv/a.py` is `/srv/a.py`,
    `file:///C:/a.py` is `C:/a.py`); other absolute URIs (`https://...`) are kept
    whole, decoded; relative references are decoded as they are.
    """
    uri = uri.strip()
    split = _split(uri)
    if split is None:
        return unquote(uri).replace("\\", "/")
    if split.scheme.lower() == "file":
        path = split.path + (f"?{split.query}" if split.query else "")
        path = unquote(path).replace("\\", "/")
        if _WINDOWS_DRIVE.match(path):
            path = path.lstrip("/")
        return path
    if len(split.scheme) > 1:
        return unquote(uri)
    # A relative reference, or a Windows path ("C:\\src\\a.py") a tool wrote as one.
    return unquote(uri).replace("\\", "/")


def _split(uri: str):
    try:
        return urlsplit(uri, allow_fragments=False)
    except ValueError:  # e.g. "http://[::1" (an unclosed IPv6 host)
        return None


def _scheme(uri: str) -> str:
    split = _split(uri)
    return "" if split is None else split.scheme


def _is_absolute(path: str) -> bool:
    return path.startswith("/") or bool(_WINDOWS_DRIVE.match(path))


def _directory(path: str) -> str:
    """`path`'s directory with a trailing slash ("/a/b/c.py" -> "/a/b/")."""
    return path[: path.rfind("/") + 1]


class CommonDirectory:
    """The longest directory shared by every absolute path added (None before any).

    `add` is cheap when the path is already under the current directory, which is
    the common case: one comparison per result.
    """

    __slots__ = ("directory", "_seen")

    def __init__(self):
        self.directory: str | None = None
        self._seen: set[str] = set()

    def add(self, uri: str) -> None:
        if uri in self._seen:
            return
        if len(self._seen) >= _CACHE_LIMIT:
            self._seen.clear()
        self._seen.add(uri)
        path = uri_path(uri)
        if not _is_absolute(path):
            return
        directory = self.directory
        if directory is None:
            self.directory = _directory(path)
        elif not path.startswith(directory):
            common = posixpath.commonprefix([directory, path])
            self.directory = _directory(common)


class UriResolver:
    """Turns one run's artifact locations into root-relative display paths."""

    def __init__(
        self,
        *,
        base_ids: dict[str, tuple[str, str]],
        working_directories: list[str],
        common_directory: str | None,
        artifacts: list[tuple[str, str] | None],
    ):
        # base_ids: id -> (uri, uriBaseId); artifacts: index -> (uri, uriBaseId).
        self._base_ids = base_ids
        self._artifacts = artifacts
        roots = []
        for name, (uri, _base) in base_ids.items():
            if SOURCE_ROOT_ID.fullmatch(name) and uri:
                roots.append(uri_path(uri))
        roots.extend(uri_path(uri) for uri in working_directories)
        roots.append(common_directory or "")
        self._roots = [
            root if root.endswith("/") else root + "/"
            for root in roots
            if _is_absolute(root) and root.strip("/") and not _is_drive_only(root)
        ]
        self._cache: dict[tuple, str] = {}

    def path(self, uri: str | None, base_id: str | None, index: int | None) -> str:
        """The root-relative path of an artifactLocation ("" when it names no file)."""
        key = (uri, base_id, index)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        path = self._cache[key] = self._resolve(uri, base_id, index)
        return path

    def _resolve(self, uri, base_id, index) -> str:
        if uri is None and index is not None and 0 <= index < len(self._artifacts):
            entry = self._artifacts[index]
            if entry is not None:
                uri, base_id = entry[0], base_id or entry[1]
        if not uri:
            return ""
        full, under_root = self._expand(uri, base_id)
        path = uri_path(full)
        if under_root:
            return _normalise(path.lstrip("/"))
        if _is_absolute(path):
            for root in self._roots:
                if path.startswith(root):
                    return _normalise(path[len(root) :])
            return _normalise(path)
        return _normalise(path)

    def _expand(self, uri: str, base_id: str | None) -> tuple[str, bool]:
        """`uri` prefixed with what its base ids stand for, and whether a source-root
        base id was met on the way (the path is then relative to the root)."""
        seen = set()
        for _depth in range(MAX_BASE_DEPTH):
            if not base_id or _has_scheme(uri) or uri.startswith("/"):
                return uri, False
            if SOURCE_ROOT_ID.fullmatch(base_id):
                return uri, True
            if base_id in seen or base_id not in self._base_ids:
                # Unknown (or circular) base: relative to the root, as tools mean it.
                return uri, True
            seen.add(base_id)
            base_uri, base_id = self._base_ids[base_id]
            if not base_uri:
                return uri, True
            if not base_uri.endswith("/"):
                base_uri += "/"
            uri = base_uri + uri
        return uri, True


def _has_scheme(uri: str) -> bool:
    return len(_scheme(uri)) > 1


def _is_drive_only(root: str) -> bool:
    return bool(re.fullmatch(r"/?[A-Za-z]:/", root))


def _normalise(path: str) -> str:
    if not path:
        return ""
    if len(_scheme(path)) > 1:
        return path  # https://... and the like, shown as given
    absolute = path.startswith("/")
    normal = posixpath.normpath(path)
    if normal == ".":
        return ""
    if absolute and normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    return normal
