"""The comment scanner JSONC and JavaScript share: comments go, string literals stay."""

from __future__ import annotations

import pytest

from edgeplane.wrangler.comments import string_end, strip_comments

JSON = {"quotes": '"', "multiline": '"'}
JS = {"quotes": "\"'`", "multiline": "`"}


@pytest.mark.parametrize(
    ("text", "i", "multiline", "end"),
    [
        ('"ab" x', 0, False, 4),
        ('"a\\"b" x', 0, False, 6),  # an escaped quote does not close
        ("'a\nb'", 0, False, 3),  # a one-line literal breaks off after its line
        ("`a\nb`", 0, True, 5),
        ('"open', 0, True, 6),  # unclosed: runs to the end
        ('x "y"', 2, False, 5),
    ],
)
def test_string_end(text: str, i: int, multiline: bool, end: int) -> None:
    assert string_end(text, i, multiline) == end


@pytest.mark.parametrize(
    ("text", "syntax", "expected"),
    [
        ("a // c\nb", JSON, ("a \nb", False)),
        ("a /* c */ b", JSON, ("a   b", False)),
        ("a /* c\nd */ b", JSON, ("a  \n b", False)),  # line breaks stay: errors say line N
        ("a /* c\nd", JSON, ("a  \n", True)),
        ('"//not" /* c', JSON, ('"//not"  ', True)),
        ('"a\n// in string"', JSON, ('"a\n// in string"', False)),  # JSON: no line break
        ("'// kept' x", JSON, ("'", False)),  # a single quote is no JSON string
        ("'// kept' x", JS, ("'// kept' x", False)),
        ("'a\n// gone", JS, ("'a\n", False)),  # a '...' literal ends at the line end
        ("`a\n// kept`", JS, ("`a\n// kept`", False)),
        ("x /* open", JS, ("x  ", True)),
        ("a/b", JS, ("a/b", False)),
    ],
)
def test_strip_comments(text: str, syntax: dict[str, str], expected: tuple[str, bool]) -> None:
    assert strip_comments(text, **syntax) == expected
