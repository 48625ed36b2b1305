"""The README and the docs against the code (issue 31): every `python -m bench` example in a
code block parses, the README's zoo table is the registry (names, input shapes, trainable
parameters), the nox sessions it names are noxfile.py's, and its links lead to files."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
import torch

import zoo
from bench.cli import build_parser
from data.__main__ import _parser as data_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# The documents whose shell examples a user copies: the README, CONTRIBUTING and docs/.
DOCUMENTS = (README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md")))
SHELLS = ("bash", "sh", "shell", "console")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def shell_lines(text: str) -> list[str]:
    """The commands of the text's shell code blocks, a backslash-continued command as one line."""
    commands: list[str] = []
    language: str | None = None  # None: outside a block
    pending = ""
    for line in text.splitlines():
        fence = re.match(r"^\s*```(\w*)", line)
        if fence:
            language = fence.group(1) if language is None else None
            pending = ""
            continue
        if language is None or language not in SHELLS:
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        commands.append(pending + line)
        pending = ""
    return commands


def cli_argv(command: str) -> tuple[str, list[str]] | None:
    """(``"bench"`` or ``"data"``, its arguments) for a command that runs either CLI: `python -m
    bench`, `cnn-zoo-bench`, `torchrun ... -m bench`, `python -m data`; shell comments and
    leading VAR=value assignments dropped. None for any other command; ``("shell", [command])``
    for one that names a CLI but does not split as shell words."""
    try:
        tokens = shlex.split(command, comments=True)
    except ValueError:  # an unclosed quote: a broken example, if it runs either CLI
        names_a_cli = re.search(r"-m (bench|data)\b|cnn-zoo-bench", command)
        return ("shell", [command]) if names_a_cli else None
    while tokens and ENV_ASSIGNMENT.match(tokens[0]):
        tokens = tokens[1:]
    if tokens[:3] in (["python", "-m", "bench"], ["python3", "-m", "bench"]):
        return "bench", tokens[3:]
    if tokens[:1] == ["cnn-zoo-bench"]:
        return "bench", tokens[1:]
    if tokens[:1] == ["torchrun"]:
        for i in range(len(tokens) - 1):
            if tokens[i : i + 2] == ["-m", "bench"]:
                return "bench", tokens[i + 2 :]
    if tokens[:3] in (["python", "-m", "data"], ["python3", "-m", "data"]):
        return "data", tokens[3:]
    return None


EXAMPLES = [
    pytest.param(cli, argv, id=f"{doc.name}: {cli} {' '.join(argv)[:60]}")
    for doc in DOCUMENTS
    for line in shell_lines(doc.read_text(encoding="utf-8"))
    if (found := cli_argv(line)) is not None
    for cli, argv in [found]
]


def test_the_readme_has_cli_examples():
    readme = [line for line in shell_lines(README.read_text(encoding="utf-8")) if cli_argv(line)]
    assert len(readme) >= 10, readme  # the extraction found the README's command block


@pytest.mark.parametrize("cli, argv", EXAMPLES)
def test_every_example_parses(cli, argv, capsys):
    assert cli != "shell", f"not a shell command: {argv[0]}"
    parser = build_parser() if cli == "bench" else data_parser()
    try:
        parser.parse_args(argv)
    except SystemExit as stop:
        pytest.fail(f"{cli} refused {argv} (exit {stop.code}): {capsys.readouterr().err.strip()}")


def _section(text: str, heading: str) -> str:
    """The text under the Markdown heading ``heading`` up to the next heading of its level."""
    level = heading.split(" ")[0]
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    ahead = re.search(rf"^{level} ", text[start:], flags=re.MULTILINE)
    return text[start : start + ahead.start()] if ahead else text[start:]


def zoo_table() -> list[tuple[str, str, str]]:
    """(name, input, trainable params) for each model of the README's zoo table; a row that
    names several models (`vgg16`, `vgg19`) gives their parameters as `A / B`."""
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in _section(README.read_text(encoding="utf-8"), "## The zoo").splitlines()
        if line.startswith("|")
    ]
    assert rows[0][0] == "name" and set(rows[1][0]) <= set("-: "), rows[:2]
    entries = []
    for cells in rows[2:]:
        names = re.findall(r"`([^`]+)`", cells[0])
        params = [p.strip() for p in cells[-1].split("/")]
        assert len(params) == len(names), cells
        entries += [(name, cells[-2], count) for name, count in zip(names, params)]
    return entries


def test_the_zoo_table_lists_the_registry():
    names = [name for name, _, _ in zoo_table()]
    assert len(names) == len(set(names)), names
    assert sorted(names) == zoo.list_models()


@pytest.mark.parametrize(
    "name, shape, params", [pytest.param(*row, id=row[0]) for row in zoo_table()]
)
def test_the_zoo_tables_shapes_and_parameters(name, shape, params):
    card = zoo.get_card(name)
    assert shape == "×".join(str(d) for d in card.input_shape)
    with torch.device("meta"):  # counts without allocating VGG's weights
        model = zoo.get_model(name)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert params == f"{trainable:,}"


def nox_sessions() -> set[str]:
    """The sessions noxfile.py defines: its functions decorated with ``nox.session`` (or
    ``nox.session(...)``, whose ``name=`` renames it)."""
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    sessions = set()
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            target = call.func if call else decorator
            if ast.unparse(target) not in ("nox.session", "session"):
                continue
            renamed = [k.value for k in (call.keywords if call else ()) if k.arg == "name"]
            sessions.add(renamed[0].value if renamed else node.name)
    return sessions


def test_the_readme_names_noxfiles_sessions():
    text = " ".join(README.read_text(encoding="utf-8").split())
    said = re.search(r"`nox -l` lists (\w+) sessions: (.+?)\.", text)
    assert said, "the README says what `nox -l` lists: '`nox -l` lists N sessions: `a`, `b`.'"
    listed = re.findall(r"`([\w-]+)`", said.group(2))
    assert set(listed) == nox_sessions()
    assert said.group(1) in (NUMBERS[len(listed)], str(len(listed))), said.group(0)


@pytest.mark.parametrize("doc", [README, ROOT / "CONTRIBUTING.md"], ids=lambda p: p.name)
def test_every_nox_session_named_exists(doc):
    named = set(re.findall(r"nox (?:-R )?-s (\w+)", doc.read_text(encoding="utf-8")))
    assert named and named <= nox_sessions(), named - nox_sessions()


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda p: p.name)
def test_relative_links_lead_to_files(doc):
    links = re.findall(r"\]\(([^)\s]+)\)", doc.read_text(encoding="utf-8"))
    local = [link.split("#")[0] for link in links if "://" not in link and not link.startswith("#")]
    missing = [link for link in local if link and not (doc.parent / link).exists()]
    assert not missing, missing
