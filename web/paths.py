"""Which local paths a web request (the Train tab, the /train API) may name as its dataset or base model:
a file or folder under the app's own data folder, runs folder or upload folder. Anything else that is
a local path is refused with one message, the same whether or not it exists, so that a caller cannot
probe the server's files. Hub ids pass (the Hub check comes later); the command line takes any path."""
from __future__ import annotations

from pathlib import Path

from core.errors import UserError, looks_like_path


class WebPaths:
    """The folders a web request may name paths in; `check()` refuses any other local path."""

    def __init__(self, data_dir: str | Path, *roots: str | Path):
        self.data_dir = Path(data_dir)
        self.roots = [Path(r).expanduser().resolve() for r in (data_dir, *roots) if str(r)]

    def refusal(self, what: str) -> str:
        return (f"{what}: give a Hub id, upload a file, or name a file in the app's data folder "
                f"({self.data_dir}); other paths on the server are not accepted from the web")

    def check(self, what: str, value: str) -> str:
        """`value` itself, or the path under the data folder it names; a UserError for any other local path."""
        if not isinstance(value, str):
            return value  # the config's own checks say what is wrong with it
        inside = self._inside(value)
        if inside is not None:
            return inside
        if looks_like_path(value) or _exists(Path(value).expanduser()):
            raise UserError(self.refusal(what))
        return value  # a Hub id

    def _inside(self, value: str) -> str | None:
        """The path `value` names under one of the folders (a name relative to the data folder first)."""
        candidates = [self.data_dir / value, Path(value).expanduser()] if not Path(value).is_absolute() \
            else [Path(value)]
        for path in candidates:
            if not _exists(path):
                continue
            resolved = path.resolve()
            if any(resolved == root or root in resolved.parents for root in self.roots):
                return str(resolved)
        return None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a NUL byte, a name too long: not a file anyone can use
        return False
