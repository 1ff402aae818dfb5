"""The documentation runs: every command and Python snippet in README.md and docs/*.md is
executed, and every relative link resolves.

Conventions for writers (docs/README.md repeats them):

- Shell commands go in ```console fences, each on a line starting with "$ ".  A line
  ending in a backslash continues the command; a command with a heredoc (<<'EOF') takes
  the lines up to the delimiter.  Every other line in the fence is sample output.
- A command that must not run here (needs root or systemd, runs until stopped, is the
  test suite itself) carries a trailing "# not run: REASON"; the reason is required.
- ```bash, ```sh and ```shell fences are refused: in a console fence the test can tell a
  command from its output.
- ```python fences run as scripts.  ```python xfail="REASON" marks a snippet that does not
  work yet: it must fail (strict), and REASON must name the issue that fixes it.
- The fences of one file run in document order, in one temporary directory per file that
  holds links to the checkout's configs/ and .venv/, with the venv's bin/ first on PATH:
  a command may use what an earlier one wrote (runs/sac/checkpoints/best).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_TIMEOUT = 120.0
"""Seconds one command or snippet may take (the whole file is meant to take under 60 s)."""

PENDING_LINKS: dict[str, str] = {}
"""Link targets that another branch adds.  Their links are expected to be broken (strict
xfail): once the file lands, the test fails until the entry is removed here."""

_FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)(.*)$")
_NOT_RUN = re.compile(r"#\s*not run:(.*)$", re.MULTILINE)
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1")
_XFAIL = re.compile(r'^\s*xfail="([^"]+)"\s*$')
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_INLINE_CODE = re.compile(r"`[^`\n]*`")


@dataclass
class Command:
    text: str
    line: int
    not_run: str | None = None
    """The reason given after "# not run:", or None if the command runs."""


@dataclass
class Block:
    doc: Path
    index: int
    line: int
    lang: str
    text: str
    info: str = ""
    commands: list[Command] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def xfail(self) -> str | None:
        m = _XFAIL.match(self.info)
        return m.group(1) if m else None


def fences(doc: Path) -> Iterator[tuple[int, str, str, str]]:
    """(first line number, language, info after the language, body) of every fence."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        marker, lang, info = m.group(1), m.group(2), m.group(3)
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].startswith(marker):
            body.append(lines[i])
            i += 1
        i += 1
        yield start, lang, info, "\n".join(body)


def console_commands(body: str, first_line: int) -> list[Command]:
    """The "$ " commands of a console fence, with continuations and heredocs."""
    lines = body.split("\n")
    out: list[Command] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            i += 1
            continue
        line_no = first_line + i
        parts = [lines[i][2:]]
        while parts[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            parts.append(lines[i])
        heredoc = _HEREDOC.search("\n".join(parts))
        if heredoc:
            delimiter = heredoc.group(2)
            while i + 1 < len(lines):
                i += 1
                parts.append(lines[i])
                if lines[i].strip() == delimiter:
                    break
        text = "\n".join(parts)
        m = _NOT_RUN.search(text)
        out.append(Command(text, line_no, m.group(1).strip() if m else None))
        i += 1
    return out


def blocks(doc: Path) -> list[Block]:
    found = []
    for line, lang, info, body in fences(doc):
        b = Block(doc, len(found), line, lang, body, info)
        if lang == "console":
            b.commands = console_commands(body, line + 1)
        found.append(b)
    return found


ALL_BLOCKS = [b for doc in DOCS for b in blocks(doc)]
RUNNABLE = [b for b in ALL_BLOCKS if b.lang in ("console", "python")]


class Workspace:
    """One temporary directory per doc; its fences run once each, in document order."""

    def __init__(self, base: Path):
        self.base = base
        self.results: dict[tuple[Path, int], list[str]] = {}

    def directory(self, doc: Path) -> Path:
        d = self.base / doc.relative_to(ROOT).as_posix().replace("/", "_")
        if not d.exists():
            d.mkdir()
            (d / "configs").symlink_to(ROOT / "configs")
            (d / ".venv").symlink_to(Path(sys.prefix))
        return d

    def run_through(self, block: Block) -> list[str]:
        """Run every earlier fence of the block's doc (once), then this one: its failures."""
        for b in blocks(block.doc)[: block.index + 1]:
            key = (b.doc, b.index)
            if key not in self.results and b.lang in ("console", "python"):
                self.results[key] = self._run(b)
        return self.results[(block.doc, block.index)]

    def _run(self, block: Block) -> list[str]:
        cwd = self.directory(block.doc)
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        if block.lang == "python":
            script = cwd / f"snippet_{block.line}.py"
            script.write_text(block.text + "\n", encoding="utf-8")
            return _check([sys.executable, script.name], cwd, env, f"{block.id} (python)")
        failures = []
        for cmd in block.commands:
            if cmd.not_run is None:
                where = f"{block.doc.relative_to(ROOT)}:{cmd.line}: $ {cmd.text}"
                failures += _check(["bash", "-e", "-o", "pipefail", "-c", cmd.text], cwd, env,
                                   where)  # fmt: skip
        return failures


def _check(argv: list[str], cwd: Path, env: dict[str, str], where: str) -> list[str]:
    """[] if the command exits 0 within the timeout, else a message with its output."""
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # `timeout` signals its process group, never pytest's
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return [f"{where}\n  timed out after {COMMAND_TIMEOUT:g} s\n{out[-3000:]}"]
    if proc.returncode != 0:
        return [f"{where}\n  exit {proc.returncode}\n{out[-3000:]}"]
    return []


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("docs"))


def _block_param(b: Block) -> object:
    marks = []
    if b.xfail:
        marks.append(pytest.mark.xfail(strict=True, reason=b.xfail))
    return pytest.param(b, id=b.id, marks=marks)


@pytest.mark.parametrize("block", [_block_param(b) for b in RUNNABLE])
def test_fence_runs(block: Block, workspace: Workspace) -> None:
    failures = workspace.run_through(block)
    assert not failures, "\n\n".join(failures)


def test_every_shell_command_is_in_a_console_fence_and_every_skip_has_a_reason() -> None:
    problems = []
    for b in ALL_BLOCKS:
        if b.lang in ("bash", "sh", "shell", "zsh"):
            problems.append(f"{b.id}: a ```{b.lang} fence; use ```console with '$ ' commands")
        if b.lang == "console" and not b.commands:
            problems.append(f"{b.id}: a console fence without a '$ ' command")
        problems += [
            f"{b.id}: line {c.line}: '# not run:' needs a reason"
            for c in b.commands
            if c.not_run == ""
        ]
        if b.info.strip() and not b.xfail:
            problems.append(f"{b.id}: unknown fence option {b.info.strip()!r}")
        if b.xfail and "issue" not in b.xfail:
            problems.append(f"{b.id}: xfail reason {b.xfail!r} names no issue")
    assert not problems, "\n".join(problems)


TOML = [pytest.param(b, id=b.id) for b in ALL_BLOCKS if b.lang == "toml"]


@pytest.mark.parametrize("block", TOML)
def test_toml_fence_parses_and_a_config_validates(block: Block) -> None:
    import dataclasses

    from marllbd.daemon.config import Config, from_dict

    tables = {f.name for f in dataclasses.fields(Config)} - {"source"}
    data = tomllib.loads(block.text)
    if data and set(data) <= tables:
        from_dict(data, source=block.id)


def test_the_docs_show_commands_that_run() -> None:
    """The conventions are in use: most commands run, only a few are shown alone."""
    commands = [c for b in ALL_BLOCKS for c in b.commands]
    ran = [c for c in commands if c.not_run is None]
    assert len(ran) >= 10 and len(ran) > len(commands) - len(ran), (len(ran), len(commands))
    assert any(b.lang == "python" for b in RUNNABLE)


def test_console_parsing_continuations_heredocs_and_skips() -> None:
    body = "\n".join([
        "$ marllbd eval --seeds 1 \\",
        "      --out runs/eval",
        "| policy | output, not a command",
        "$ cat > a.toml <<'EOF'",
        "$ not a command: inside the heredoc",
        "EOF",
        "$ make install   # not run: needs root",
        "$ make x  # not run:",
    ])  # fmt: skip
    cmds = console_commands(body, 10)
    assert [c.line for c in cmds] == [10, 13, 16, 17]
    assert cmds[0].text == "marllbd eval --seeds 1 \\\n      --out runs/eval"
    assert cmds[1].text.endswith("inside the heredoc\nEOF") and cmds[1].not_run is None
    assert (cmds[2].not_run, cmds[3].not_run) == ("needs root", "")


def test_a_failing_command_is_reported(tmp_path: Path) -> None:
    assert _check(["bash", "-c", "true"], tmp_path, dict(os.environ), "ok") == []
    (failure,) = _check(["bash", "-c", "echo oops; exit 3"], tmp_path, dict(os.environ), "w")
    assert "exit 3" in failure and "oops" in failure


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    text = doc.read_text(encoding="utf-8")
    body = re.sub(r"^(```+|~~~+).*?^\1", "", text, flags=re.MULTILINE | re.DOTALL)
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", body, flags=re.MULTILINE):
        slug = _slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links() -> list[tuple[Path, str]]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        text = re.sub(r"^(```+|~~~+).*?^\1", "", text, flags=re.MULTILINE | re.DOTALL)
        text = _INLINE_CODE.sub("", text)
        for m in _LINK.finditer(text):
            target = m.group(1)
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                found.append((doc, target))
    return found


def _link_param(doc: Path, target: str) -> object:
    path = target.split("#", 1)[0]
    resolved = (doc.parent / path).resolve() if path else doc
    rel = resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else ""
    marks = []
    if rel in PENDING_LINKS:
        marks.append(pytest.mark.xfail(strict=True, reason=PENDING_LINKS[rel]))
    return pytest.param(doc, target, id=f"{doc.relative_to(ROOT)}->{target}", marks=marks)


@pytest.mark.parametrize(("doc", "target"), [_link_param(d, t) for d, t in links()])
def test_relative_link_resolves(doc: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    resolved = (doc.parent / path).resolve() if path else doc
    assert resolved.exists(), f"{doc.relative_to(ROOT)}: link {target!r}: no {resolved}"
    assert resolved.is_relative_to(ROOT), f"{doc.relative_to(ROOT)}: {target!r} leaves the repo"
    if anchor and resolved.suffix == ".md":
        assert anchor in anchors(resolved), (
            f"{doc.relative_to(ROOT)}: link {target!r}: no heading with anchor #{anchor} "
            f"in {resolved.relative_to(ROOT)}"
        )


def test_links_are_checked() -> None:
    assert any(t.startswith("docs/") for d, t in links() if d.name == "README.md")


def test_readme_is_short() -> None:
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= 250, f"README.md has {n} lines; reference material belongs in docs/"
