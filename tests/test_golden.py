"""What einsgrad writes for the curated inputs equals the golden files (see tests/golden.py):
an explanation, a program's text or a generated source that changes shows in a diff."""

from __future__ import annotations

import difflib

import pytest

import golden


@pytest.mark.parametrize("kind", sorted(golden.KINDS))
def test_golden(kind):
    stored = golden.entries(golden.path(kind).read_text(encoding="utf-8"))
    now = golden.entries(golden.render(kind))
    assert sorted(now) == sorted(stored), "inputs added or removed: python tests/golden.py --update"
    for key, text in now.items():
        if text != stored[key]:
            diff = "\n".join(difflib.unified_diff(stored[key].splitlines(), text.splitlines(),
                                                  "golden", "now", lineterm=""))
            pytest.fail(f"{kind}: {key!r} changed (python tests/golden.py --update, if meant):\n{diff}")
