"""The documents a user reads point to what exists: every link of README.md, ARCHITECTURE.md
and docs/ to a file (and heading) of the repo, every document the code cites, and every
`launch.py --config` command they show to a config that parses and validates as typed.
"""

import re
import shlex
from pathlib import Path

import pytest
from fixtures import ROOT  # also puts the repo root on sys.path, for launch

import launch
from mer_jax.train import validation

DOCUMENTS = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]
# Where the product cites documents: the code, the configs, the tests, the notebook.
SOURCES = [
    path
    for folder in ("mer_jax", "data_builders", "configs", "benchmarks", "tests", "notebooks")
    for path in sorted((ROOT / folder).rglob("*"))
    if path.suffix in (".py", ".ipynb")
] + [ROOT / "launch.py", ROOT / "Makefile"]
_LINK = re.compile(r"\]\(([^)\s]+)\)")
# A document named in prose; a quoted or backticked name is a file a program writes
# (`results.md`, `results_table.md`), not a citation.
_CITED = re.compile(r"(?<![\w/.\-\"'`])((?:docs/)?[A-Za-z_]+\.md)\b")


def _slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _links() -> list[tuple[Path, str]]:
    return [
        (document, target)
        for document in DOCUMENTS
        for target in _LINK.findall(document.read_text())
        if not target.startswith(("http://", "https://"))
    ]


def test_there_are_documents_and_links():
    assert len(DOCUMENTS) >= 7
    assert len(_links()) > 30


@pytest.mark.parametrize("document, target", _links(), ids=lambda x: str(x).rsplit("/", 1)[-1])
def test_every_link_points_to_a_file_and_heading_of_the_repo(document, target):
    path, _, anchor = target.partition("#")
    linked = (document.parent / path).resolve() if path else document
    assert linked.is_file(), f"{document.name} links to {target}: no such file"
    assert linked.is_relative_to(ROOT), f"{document.name} links outside the repo: {target}"
    if anchor:
        headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.MULTILINE)
        assert anchor in {_slug(h) for h in headings}, f"{document.name}: no heading #{anchor}"


def test_every_document_the_code_cites_exists():
    """By its path from the repo root: `docs/methods.md`, not `methods.md`."""
    missing = [
        f"{source.relative_to(ROOT)}:{number}: {cited}"
        for source in SOURCES
        for number, line in enumerate(source.read_text().splitlines(), 1)
        for cited in _CITED.findall(line)
        if not (ROOT / cited).is_file()
    ]
    assert not missing, missing


def test_every_repo_path_the_documents_name_exists():
    """`mer_jax/models/fr.py`, `configs/protocols/`, ...: placeholders (`<name>`, `NNN`) and
    a protocol config's `:method` suffix aside."""
    folders = "mer_jax|data_builders|configs|benchmarks|tests|notebooks|docs|scripts"
    missing = [
        f"{document.name}: {path}"
        for document in DOCUMENTS
        for path in re.findall(rf"`((?:{folders})/[\w./-]*)", document.read_text())
        if not (ROOT / path.split(":")[0].rstrip("/.")).exists()
    ]
    assert not missing, missing


def _commands() -> list[str]:
    """Every `launch.py --config ...` line of the documents' bash blocks, as typed."""
    commands = []
    for document in DOCUMENTS:
        for block in re.findall(r"```bash\n(.*?)```", document.read_text(), re.DOTALL):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split("  #")[0].strip()
                if re.match(r"^(\.venv/bin/)?python launch\.py .*--config ", line):
                    commands.append(line)
    return sorted(set(commands))


def test_the_documents_show_commands():
    assert len(_commands()) >= 10


@pytest.mark.parametrize("command", _commands())
def test_every_documented_config_command_parses_and_validates(command, tmp_path):
    """The flags, the config file and every --config.* override as a user types them
    (the data and the workdirs are the user's: not checked here)."""
    parsed = launch.parse(shlex.split(command)[2:])
    if parsed.config.init_from:
        # A pre-training the documents make first, with its own command.
        pretrainings = [
            shlex.split(line)[shlex.split(line).index("--workdir") + 1]
            for line in _commands()
            if "configs/ma2mi_pretrain.py" in line and "--workdir" in line
        ]
        assert parsed.config.init_from in pretrainings, pretrainings
        with parsed.config.unlocked():
            parsed.config.init_from = str(tmp_path)
    validation.check_config(parsed.config)
