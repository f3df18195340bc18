"""The shape of the ``workers`` package itself: small modules."""

from __future__ import annotations

from pathlib import Path

import workers

PACKAGE = Path(workers.__file__).parent
#: Most lines a module of the package may have; split a longer one by concept.
MAX_MODULE_LINES = 400


def test_no_module_of_the_workers_package_is_longer_than_400_lines() -> None:
    # Given every Python module of the package
    lengths = {str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines())
               for p in PACKAGE.rglob("*.py")}
    # Then none is longer than the limit
    assert {name: n for name, n in lengths.items() if n > MAX_MODULE_LINES} == {}
