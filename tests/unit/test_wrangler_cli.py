"""`edgeplane import` arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgeplane.wrangler import main
from edgeplane.wrangler.cli import _parser, target_label


@pytest.mark.parametrize(
    ("item", "label"),
    [
        ("tier=edge", ("tier", "edge")),
        ("edgeplane.io/region=eu-central", ("edgeplane.io/region", "eu-central")),
        ("tier=", ("tier", "")),
        ("a=b=c", ("a", "b=c")),
        ("region=not a value", ("region", "not a value")),  # values: checked with the Worker
    ],
)
def test_target_label(item: str, label: tuple[str, str]) -> None:
    assert target_label(item) == label


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("no-equals-sign", "--target 'no-equals-sign': expected LABEL=VALUE"),
        ("=v", "--target '=v': expected LABEL=VALUE"),
        ("bad key=x", "--target 'bad key=x': 'bad key' is not a valid label key"),
        ("a/b/c=x", "'a/b/c' is not a valid label key"),
    ],
)
def test_target_label_refuses(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        target_label(item)


JS = "export default { fetch() { return new Response('ok'); } };\n"


@pytest.mark.parametrize(
    ("cwd", "config", "main_arg", "module"),
    [
        # Relative to the current directory, wherever the project is.
        ("", "project", "project/dist/out.js", "out.js"),
        ("project", ".", "dist/out.js", "out.js"),
        ("elsewhere", "../project", "../project/dist/out.js", "out.js"),
        ("project/src", "..", "../dist/out.js", "out.js"),
        # An absolute path stays what it is.
        ("elsewhere", "../project", "{root}/project/dist/out.js", "out.js"),
    ],
)
def test_main_flag_is_read_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    cwd: str, config: str, main_arg: str, module: str,
) -> None:
    project = tmp_path / "project"
    for name in ("src/index.js", "dist/out.js"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(JS)
    (project / "wrangler.toml").write_text(
        'name = "w"\nmain = "src/index.js"\ncompatibility_date = "2024-09-23"\n'
    )
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / cwd)
    assert main([config, "--main", main_arg.format(root=tmp_path)]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    worker = next(d for d in docs if d["kind"] == "Worker")
    assert worker["spec"]["mainModule"] == module


def test_main_flag_not_found_names_the_path_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "wrangler.toml").write_text(
        'name = "w"\nmain = "index.js"\ncompatibility_date = "2024-09-23"\n'
    )
    monkeypatch.chdir(tmp_path)
    # Read as wrangler reads it (Node's path.resolve): relative to here, `..` taken off.
    assert main(["p", "--main", "p/../dist/out.js"]) == 1
    assert capsys.readouterr().err == (
        f"edgeplane import: error: w: --main {tmp_path / 'dist' / 'out.js'} not found\n"
    )


def test_help_says_where_main_is_read_from() -> None:
    text = " ".join(_parser().format_help().split())
    assert "a relative path is from the current directory, as wrangler reads it" in text


def test_help_documents_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    parser = _parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for action in parser._actions:
        assert action.help, action.dest
        for flag in action.option_strings:
            assert flag in text, flag
    for phrase in ("bundled as `wrangler deploy` bundles it", "--allow-incomplete",
                   "--check", "Exit status: 0"):
        assert phrase in text, phrase
