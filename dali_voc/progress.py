"""Progress bars: tqdm when it is installed (it is a dependency), a silent stand-in otherwise,
so a bare GPU host without tqdm still runs the library and its tests."""

from __future__ import annotations

from typing import Any, Iterable, Optional


class _Silent:
    """The part of tqdm's interface this project uses, doing nothing."""

    def __init__(self, iterable: Optional[Iterable] = None, **_: Any):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable if self.iterable is not None else ())

    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> "_Silent":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def progress_bar(iterable: Optional[Iterable] = None, **kwargs: Any):
    """``tqdm(iterable, **kwargs)``, or a silent stand-in when tqdm is not importable."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _Silent(iterable, **kwargs)
    return tqdm(iterable, **kwargs)
