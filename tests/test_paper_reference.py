"""The paper's numbers live in docs/paper_reference.csv only; scripts read it."""

import io
import pathlib
import tokenize

import pytest

from lambda_networks import paper
from lambda_networks.models import get_spec
from scripts import benchmark_models

REPO = pathlib.Path(__file__).resolve().parents[1]
CODE_DIRS = ("lambda_networks", "scripts", "configs", "train.py", "eval.py")


def _paper_numbers() -> set[float]:
  """Accuracies and parameter counts (in millions) the file holds."""
  numbers = set()
  for row in paper.rows():
    for column in ("top1", "params_m"):
      if row[column]:
        numbers.add(float(row[column]))
  return numbers


def _literals(path: pathlib.Path):
  """(line, value) of every numeric literal, and of strings that are a number."""
  tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
  for token in tokens:
    text = token.string
    if token.type == tokenize.STRING:
      text = text.strip("\"'rbfu").strip("≈M ")
    elif token.type != tokenize.NUMBER:
      continue
    try:
      yield token.start[0], float(text)
    except ValueError:
      continue


def _code_files():
  for name in CODE_DIRS:
    path = REPO / name
    yield from ([path] if path.is_file() else sorted(path.rglob("*.py")))


def test_no_paper_number_is_written_in_code():
  """A top-1 or parameter count of the paper as a literal in code (not a
  docstring's prose) is a second copy: read the file instead."""
  numbers = _paper_numbers()
  found = [f"{path.relative_to(REPO)}:{line}: {value}"
           for path in _code_files() for line, value in _literals(path)
           if value in numbers and not float(value).is_integer()]
  assert not found, "paper numbers copied into code:\n" + "\n".join(found)


def test_the_check_catches_a_copy(tmp_path):
  copy = tmp_path / "copy.py"
  copy.write_text('PAPER = {"resnet50_lambda": ("15.0M", "78.4")}\nX = 84.9\n')
  values = {value for _, value in _literals(copy)}
  assert {15.0, 78.4, 84.9} <= values & _paper_numbers()


def test_model_table_reads_the_paper_file():
  assert not hasattr(benchmark_models, "PAPER")
  numbers = paper.model_numbers()
  lambda50 = numbers["resnet50_lambda", "", 224]
  assert (lambda50["params"], lambda50["top1"]) == ("15.0M", "78.4")
  assert "Table 3" in lambda50["source"] and "Table 4" in lambda50["source"]
  augmented = numbers["resnet50_augmented", "", 224]
  assert augmented["params"] == "25.8M" and "(quoted)" in augmented["source"]
  assert numbers["lambda_resnet420", "", 320]["top1"] == "84.9"


def test_registry_paper_sizes_come_from_the_file():
  sizes = {int(r["image_size"]) for r in paper.rows()
           if r["model"] == "lambda_resnet152" and not r["overrides"]
           and r["image_size"]}
  assert get_spec("lambda_resnet152").paper_image_sizes == tuple(sorted(sizes))
  assert get_spec("resnet26").paper_image_sizes == (224,)  # Not in the paper.


def test_quoted_rows_are_marked():
  """Rows the paper quotes from other setups say so, with the original size."""
  quoted = {(r["table"], r["row"]): r for r in paper.rows()
            if r["origin"] == "quoted"}
  for key in (("table3", "conv + relative self-attention"),
              ("table3", "local relative self-attention (SASA)"),
              ("table4", "axial self-attention"),
              ("table4", "local self-attention 7×7")):
    assert key in quoted, key
  assert quoted["table4", "axial self-attention"]["params_m"] == "12.4"
  own = {(r["table"], r["row"]) for r in paper.rows() if r["origin"] == "paper"}
  assert ("table3", "lambda layer") in own


def test_table4_measures_the_shared_embedding_row(tmp_path):
  rows = benchmark_models.main(["table4", "--analytic-only", "--rows",
                                "lambda layer, shared embeddings", "lambda layer",
                                "--out", str(tmp_path / "t4")])
  by_layer = {row["layer"]: row for row in rows}
  shared = by_layer["lambda layer, shared embeddings"]
  plain = by_layer["lambda layer"]
  assert shared["model"] == "resnet50_lambda_shared"
  assert shared["status"] == plain["status"] == "analytic only"
  assert shared["analytic_as_run_gib"] is not None
  assert shared["analytic_paper_convention_gib"] == pytest.approx(0.63, rel=0.03)


def test_missing_file_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="paper's numbers"):
    paper.rows(tmp_path / "missing.csv")
