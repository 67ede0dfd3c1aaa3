"""Validation errors as field paths the apiserver's way (edgeplane.fieldpath)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field, ValidationError

from edgeplane.fieldpath import describe, duplicate, field_error, field_errors


@pytest.mark.parametrize(
    ("loc", "msg", "path", "rest"),
    [
        (("spec", "modules", 0), "Value error, modules[].sha256: needs url",
         "spec.modules[0].sha256", "needs url"),
        (("spec",), "Value error, bindings[1]: Duplicate value: x", "spec.bindings[1]",
         "Duplicate value: x"),
        ((), "Value error, metadata.name: too long", "metadata.name", "too long"),
        (("spec", "rollout"), "Value error, rollout.steps: none", "spec.rollout.steps", "none"),
        (("spec", "pattern"), "Value error, pattern: '*' only", "spec.pattern", "'*' only"),
        (("spec", "targets", "matchLabels", "edgeplane.io/region"), "String should match",
         "spec.targets.matchLabels.edgeplane.io/region", "String should match"),
        (("versions", 0, "modules", 1, "name"), "Field required",
         "versions[0].modules[1].name", "Field required"),
        (("spec", "modules", 0, "name"), "Value error, module name 'a//b' must not",
         "spec.modules[0].name", "module name 'a//b' must not"),
    ],
)
def test_field_error_joins_the_location_and_the_field_a_message_names(
    loc: tuple[str | int, ...], msg: str, path: str, rest: str
) -> None:
    assert field_error(loc, msg) == (path, rest)


class _Item(BaseModel):
    name: str = Field(pattern="^[a-z]+$")


class _List(BaseModel):
    items: tuple[_Item, ...] = Field(min_length=1)


def test_a_list_with_a_bad_item_is_not_also_called_too_short() -> None:
    with pytest.raises(ValidationError) as e:
        _List.model_validate({"items": [{"name": "A"}]})
    assert [p for p, _ in field_errors(e.value)] == ["items[0].name"]
    with pytest.raises(ValidationError) as e:
        _List.model_validate({"items": []})
    assert [p for p, _ in field_errors(e.value)] == ["items"]


def test_describe_is_one_line_without_the_values() -> None:
    with pytest.raises(ValidationError) as e:
        _List.model_validate({"items": [{"name": f"S3CRET{i}"} for i in range(7)]})
    text = describe(e.value, limit=2)
    assert text.startswith("items[0].name: String should match pattern")
    assert text.endswith("(and 5 more)") and "S3CRET" not in text and "\n" not in text
    with pytest.raises(ValidationError) as e:
        _List.model_validate_json(b"{")
    assert describe(e.value).startswith("body: Invalid JSON")


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["a", "b"], None),
        (["a", "b", "a"], "x[2]: Duplicate value: item 'a' is already x[0]; each may appear once"),
        ([], None),
    ],
)
def test_duplicate_names_the_repeat_and_the_first(items: list[str], expected: str | None) -> None:
    assert duplicate(items, "x", "item") == expected
