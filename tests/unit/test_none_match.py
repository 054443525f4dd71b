"""`If-None-Match` as RFC 9110 13.1.2 reads it: `*`, lists, weak comparison, several lines."""

from __future__ import annotations

import pytest

from capsvc.router.planner import none_match

TAG = '"abc"'


@pytest.mark.parametrize(
    "lines,matches",
    [
        ([TAG], True),
        (['W/"abc"'], True),
        (['"x", "abc"'], True),
        (['"x",W/"abc"'], True),
        (['"x"', '"abc"'], True),
        (["*"], True),
        (['"x"'], False),
        (['"abcd"'], False),
        (["abc"], False),
        ([], False),
    ],
)
def test_if_none_match(lines, matches):
    assert none_match(lines, TAG) is matches
