"""Every code block in docs/*.md runs (the conventions are stated in docs/index.md).

* ```python (or ```py) -- the block is a complete program: it runs in a fresh
  ``python`` subprocess whose cwd is an empty temporary directory, and must exit 0.
* ```console -- the lines starting with ``$ `` are commands (a trailing ``\\`` continues a
  command on the next line); they run, in order, in one ``bash -e -o pipefail`` script in
  an empty temporary directory with the venv's ``bin`` first on PATH.  Other lines are the
  output shown to the reader and are not checked.
* ```sh (or ```bash / ```shell) -- every line is a command: the block runs as a bash script
  (``-e -o pipefail``), same directory and PATH rules.
* ```text -- output or a diagram: shown, never run.
* ```json / ```toml -- data: must parse (``json.loads`` / ``tomllib.loads``).
* Any other language (```c, ```yaml ...) is shown, not run; a block with **no language** is
  a failing test: say what it is (``text`` for output).

Python blocks are independent programs.  A page whose python blocks are pieces of one
program (e.g. a module shown section by section) says so with the line
``<!-- test_docs: python blocks share state -->``: then each python block runs after all the
python blocks above it on that page (block k runs blocks 1..k concatenated, in a fresh
process), so every prefix of the page must run.

Each block is one test, named ``<file>:<line>``, bounded by ``BLOCK_TIMEOUT`` seconds.  A
block that cannot run as written fails: nothing is skipped.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BLOCK_TIMEOUT = 180  # s per block
BIN = Path(sys.executable).parent

PYTHON = {"python", "py", "python3"}
CONSOLE = {"console", "shell-session"}
SHELL = {"sh", "bash", "shell"}
DATA = {"json": json.loads, "toml": tomllib.loads}
SHOWN = {"text", "c", "cpp", "yaml", "ini", "diff", "make", "makefile", "md", "markdown"}

SHARE_MARK = "<!-- test_docs: python blocks share state -->"
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)[^`]*$")


@dataclass
class Block:
    path: Path
    line: int       # 1-based line of the opening fence
    lang: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.name}:{self.line}"


def parse_blocks(path: Path) -> list[Block]:
    """Fenced code blocks of a Markdown file (indented fences, e.g. in lists, included)."""
    blocks: list[Block] = []
    text = path.read_text()
    lines = text.splitlines()
    shared = SHARE_MARK in text
    prefix = ""   # shared pages: the python blocks above this one
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m.group("indent"), m.group("fence"), m.group("info").lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            stripped = lines[j].strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
                break
            ln = lines[j]
            body.append(ln[len(indent):] if ln.startswith(indent) else ln.lstrip())
            j += 1
        code = "\n".join(body) + "\n"
        if shared and info in PYTHON:
            code = prefix + code
            prefix = code + "\n"
        blocks.append(Block(path, i + 1, info, code))
        i = j + 1
    return blocks


def all_blocks() -> list[Block]:
    return [b for p in sorted(DOCS.glob("*.md")) for b in parse_blocks(p)]


def console_commands(code: str) -> list[str]:
    """The ``$ `` commands of a console block, continuation lines joined."""
    cmds: list[str] = []
    lines = code.splitlines()
    k = 0
    while k < len(lines):
        ln = lines[k]
        if ln.startswith("$ "):
            cmd = ln[2:]
            while cmd.rstrip().endswith("\\") and k + 1 < len(lines):
                k += 1
                cmd = cmd.rstrip() + "\n" + lines[k]   # bash joins backslash-newline
            cmds.append(cmd)
        k += 1
    return cmds


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(args: list[str], cwd: Path, what: str) -> None:
    try:
        proc = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True,
                              timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{what}: did not finish in {BLOCK_TIMEOUT} s\n{exc.stdout or ''}{exc.stderr or ''}")
    if proc.returncode != 0:
        pytest.fail(f"{what}: exit status {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
                    f"\n--- stderr\n{proc.stderr[-4000:]}")


def run_block(block: Block, tmp: Path) -> None:
    shown = block.path.relative_to(ROOT) if block.path.is_relative_to(ROOT) else block.path
    where = f"{shown} line {block.line} ({block.lang or 'no language'})"
    if block.lang in PYTHON:
        script = tmp / "block.py"
        script.write_text(block.code)
        _run([sys.executable, str(script)], tmp, where)
    elif block.lang in CONSOLE:
        cmds = console_commands(block.code)
        assert cmds, f"{where}: a console block without any '$ ' command (use text for output)"
        script = tmp / "block.sh"
        script.write_text("set -e -o pipefail\n" + "\n".join(cmds) + "\n")
        _run(["bash", str(script)], tmp, where)
    elif block.lang in SHELL:
        script = tmp / "block.sh"
        script.write_text("set -e -o pipefail\n" + block.code)
        _run(["bash", str(script)], tmp, where)
    elif block.lang in DATA:
        try:
            DATA[block.lang](block.code)
        except ValueError as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
            pytest.fail(f"{where}: not valid {block.lang}: {exc}")
    elif block.lang in SHOWN:
        pass  # shown to the reader only (text = output)
    elif not block.lang:
        pytest.fail(f"{where}: code block without a language: write ```text for output or a "
                    f"diagram, ```python / ```console / ```sh for something to run")
    else:
        pytest.fail(f"{where}: unknown code block language {block.lang!r}; use python, console, "
                    f"sh, text, json or toml (see docs/index.md)")


BLOCKS = all_blocks()


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_doc_block(block: Block, tmp_path: Path) -> None:
    run_block(block, tmp_path)


# ---- the runner itself ---------------------------------------------------------------------
def test_parser_and_conventions(tmp_path: Path) -> None:
    md = tmp_path / "x.md"
    md.write_text("intro\n\n```python\nprint(1)\n```\n\n* item\n\n  ```console\n  $ echo a \\\n"
                  "    b\n  a b\n  ```\n\n````text\n```\nnot a fence end\n````\n\n```\nbare\n```\n")
    blocks = parse_blocks(md)
    assert [(b.line, b.lang) for b in blocks] == [(3, "python"), (9, "console"), (15, "text"),
                                                   (20, "")]
    assert blocks[0].code == "print(1)\n"
    assert console_commands(blocks[1].code) == ["echo a \\\n  b"]
    assert blocks[2].code == "```\nnot a fence end\n"
    run_block(blocks[0], tmp_path)
    run_block(blocks[1], tmp_path)
    run_block(blocks[2], tmp_path)
    with pytest.raises(pytest.fail.Exception, match="without a language"):
        run_block(blocks[3], tmp_path)
    shared = tmp_path / "shared.md"
    shared.write_text(f"{SHARE_MARK}\n```python\nx = 2\n```\n\n```python\nassert x == 2\n```\n")
    first, second = parse_blocks(shared)
    assert second.code == "x = 2\n\nassert x == 2\n"
    run_block(second, tmp_path)
    assert parse_blocks(md)[0].code == "print(1)\n"   # not shared without the mark
    bad = Block(md, 1, "python", "import sys\nsys.exit(3)\n")
    with pytest.raises(pytest.fail.Exception, match="exit status 3"):
        run_block(bad, tmp_path)
    bad_sh = Block(md, 1, "console", "$ false\n$ echo never\n")
    with pytest.raises(pytest.fail.Exception, match="exit status 1"):
        run_block(bad_sh, tmp_path)
    with pytest.raises(pytest.fail.Exception, match="not valid json"):
        run_block(Block(md, 1, "json", "{nope"), tmp_path)


def test_every_doc_page_is_listed_in_the_index() -> None:
    index = (DOCS / "index.md").read_text()
    for page in sorted(DOCS.glob("*.md")):
        if page.name != "index.md":
            assert f"({page.name})" in index, f"docs/index.md does not link {page.name}"


_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    """Every relative link of a page points at a file that exists (external links unchecked)."""
    missing = [target for target in _LINK.findall(page.read_text())
               if "://" not in target and not target.startswith("mailto:")
               and not (page.parent / target).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"
