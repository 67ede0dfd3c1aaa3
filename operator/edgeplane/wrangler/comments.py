"""Comments out of JSON-with-comments and JavaScript: one scanner for both, so a `//` or
`/*` inside a string literal (a URL, a glob) is never taken for a comment in either."""

from __future__ import annotations


def string_end(text: str, i: int, multiline: bool) -> int:
    """Where the string literal opened by the quote at text[i] ends: just past its closing
    quote. An unclosed literal runs to the end of the text or, unless it may span lines,
    to the end of its line."""
    quote, j, n = text[i], i + 1, len(text)
    while j < n and text[j] != quote:
        if text[j] == "\\":
            j += 1
        elif not multiline and text[j] == "\n":
            break
        j += 1
    return j + 1


def strip_comments(text: str, quotes: str, multiline: str) -> tuple[str, bool]:
    """`text` without // and /* */ comments (a block comment becomes one space and its
    line breaks, a line comment leaves its newline), and whether a /* comment was never
    closed (it then runs to the end). String literals open with any of `quotes`; only those
    in `multiline` may span lines."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in quotes:
            j = string_end(text, i, c in multiline)
            out.append(text[i:j])
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            # Its line breaks stay, so a parser's "line N" still points into the file.
            out.append(" " + "\n" * text.count("\n", i, n if j < 0 else j))
            if j < 0:
                return "".join(out), True
            i = j + 2
        else:
            out.append(c)
            i += 1
    return "".join(out), False
