"""docs/paper.md is the repository's own account of the paper: the repository
names no file outside itself, and every section of docs/paper.md it cites
exists."""

import pathlib
import re
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[1]
PAPER_DOC = REPO / "docs" / "paper.md"
# Split so that this file does not match itself.
OUTSIDE = ("PAPER" + ".md", "../" + "shared")
CITATION = re.compile(r"paper\.md#([\w-]+)")
OWN_LINK = re.compile(r"\]\(#([\w-]+)\)")  # docs/paper.md's links to itself.


def _text_files() -> dict[str, str]:
  """Tracked and untracked (not ignored) text files: path -> contents."""
  names = subprocess.run(
      ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
      cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\n")
  files = {}
  for name in filter(None, names):
    path = REPO / name
    if not path.is_file():
      continue
    try:
      files[name] = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
      continue  # Binary: images, weights.
  return files


def _anchor(heading: str) -> str:
  """GitHub's anchor of a heading: lower case, punctuation dropped, '-' for spaces."""
  return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(markdown: str) -> set[str]:
  return {_anchor(line.lstrip("#")) for line in markdown.splitlines()
          if re.match(r"#{1,6} ", line)}


def test_no_file_names_the_paper_notes_outside_the_repository():
  found = [f"{name}:{number}" for name, text in _text_files().items()
           for number, line in enumerate(text.splitlines(), 1)
           if any(outside in line for outside in OUTSIDE)]
  assert not found, "pointers outside the repository:\n" + "\n".join(found)


def test_every_cited_section_of_the_paper_doc_exists():
  paper_doc = PAPER_DOC.read_text(encoding="utf-8")
  anchors = _anchors(paper_doc)
  cited = {(name, anchor) for name, text in _text_files().items()
           for anchor in CITATION.findall(text)}
  cited |= {("docs/paper.md", anchor) for anchor in OWN_LINK.findall(paper_doc)}
  assert len(cited) > 10  # The code, configs, docs and the numbers file cite it.
  missing = sorted(f"{name}: #{anchor}" for name, anchor in cited
                   if anchor not in anchors)
  assert not missing, "sections missing from docs/paper.md:\n" + "\n".join(missing)


def test_anchor_follows_github():
  assert _anchor(" Table 4") == "table-4"
  assert _anchor("The LambdaResNet family (`lambda_resnet*`)") == (
      "the-lambdaresnet-family-lambda_resnet")
  assert "how-sure-each-fact-is" in _anchors("# x\n\n## How sure each fact is\n")
