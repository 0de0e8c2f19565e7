"""Sweeps: a grid (or list) over config fields, expanded into train.py runs.

Each run gets its own workdir (ROOT/NAME/RUN) and its exact command; the
sweep writes a manifest (JSON: every run's workdir, overrides, model, image
size and command) and then runs the commands here one after another, prints
them for a cluster (`--print`), or only shows what it would do (`--dry-run`,
which writes nothing). Every field is checked against the config first, so
a typo fails here, not hours later on a cluster.

From the command line (values split on commas outside brackets, or on
semicolons when there are any, e.g. for config arguments that hold commas):

  python -m scripts.sweep --config=configs/resnet50_90ep.py:resnet50_lambda \\
      --grid model_overrides.query_depth=8,16 --grid image_size=160,224 \\
      --set num_train_steps=100 --root=/tmp/sweeps --name=qd --dry-run

From a small JSON file (`runs` × `grid`, with `set` under both; a `config`
key may be set per run; `name` names a run):

  {"name": "table3", "config": "configs/resnet50_90ep.py", "root": "runs",
   "set": {"global_batch_size": 1024},
   "runs": [{"config": "configs/resnet50_90ep.py:resnet50"},
            {"config": "configs/resnet50_90ep.py:resnet50_lambda"},
            {"config": "configs/resnet50_90ep.py:resnet50_lambda",
             "model_overrides.intra_depth": 4,
             "model_overrides.receptive_field": 7, "name": "lambda_u4_r7"}]}

  python -m scripts.sweep --file=sweep.json --print --launcher=slurm \\
      --launcher-args="--nodes 4 --gpus-per-node 8"

Launchers wrap each command: `local` runs `python train.py ...`; `slurm`
and `tpu` call scripts/launch_slurm.sh / scripts/launch_tpu_pod.sh with the
same train.py arguments after `--`.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib.util
import itertools
import json
import pathlib
import re
import shlex
import subprocess
import sys
from typing import Any

import ml_collections

from scripts import reporting

REPO_ROOT = reporting.REPO_ROOT
LAUNCHERS = {
    "local": None,
    "slurm": "scripts/launch_slurm.sh",
    "tpu": "scripts/launch_tpu_pod.sh",
}
RESERVED = ("config", "name")


class SweepError(ValueError):
  """A sweep specification that cannot be expanded."""


# ---------------------------------------------------------------- parsing


def split_values(text: str) -> list[str]:
  """'8,16' -> ['8', '16']; '(1,1),(2,2)' -> ['(1,1)', '(2,2)'].

  Values that hold commas themselves (config arguments such as
  'configs/lambda_resnet.py:50,160') are separated by semicolons instead.
  """
  if ";" in text:
    values = [v.strip() for v in text.split(";")]
    if any(v == "" for v in values):
      raise SweepError(f"cannot split {text!r} into values: an empty value.")
    return values
  values, depth, current = [], 0, ""
  for char in text:
    if char in "([{":
      depth += 1
    elif char in ")]}":
      depth -= 1
    if char == "," and depth == 0:
      values.append(current)
      current = ""
    else:
      current += char
  values.append(current)
  values = [v.strip() for v in values]
  if depth != 0 or any(v == "" for v in values):
    raise SweepError(f"cannot split {text!r} into values: unbalanced brackets "
                     "or an empty value.")
  return values


def parse_assignment(text: str, flag: str) -> tuple[str, str]:
  key, sep, value = text.partition("=")
  key = key.strip().removeprefix("config.")
  if not sep or not key:
    raise SweepError(f"{flag} {text!r} must look like field=value(s), e.g. "
                     f"{flag} model_overrides.query_depth=8,16.")
  return key, value.strip()


def format_value(value: Any) -> str:
  """A JSON/CLI value as config_flags reads it after --config.field=."""
  if isinstance(value, bool):
    return str(value)
  if isinstance(value, (list, tuple)):
    return "(" + ",".join(format_value(v) for v in value) + ("," if len(value) == 1 else "") + ")"
  return str(value)


def spec_from_args(args: argparse.Namespace) -> dict[str, Any]:
  """The sweep as a dict, from --file and the command-line flags."""
  spec: dict[str, Any] = {}
  if args.file:
    try:
      spec = json.loads(pathlib.Path(args.file).read_text())
    except json.JSONDecodeError as error:
      raise SweepError(f"{args.file} is not valid JSON: {error}") from None
    unknown = sorted(set(spec) - {"name", "config", "root", "set", "grid", "runs"})
    if unknown:
      raise SweepError(f"{args.file}: unknown key(s) {unknown}; a sweep file has "
                       "name, config, root, set, grid and runs.")
  spec.setdefault("set", {})
  spec.setdefault("grid", {})
  spec.setdefault("runs", [])
  for key, default in (("config", args.config), ("root", args.root),
                       ("name", args.name)):
    if default is not None:
      spec[key] = default
  for item in args.set:
    key, value = parse_assignment(item, "--set")
    spec["set"][key] = value
  for item in args.grid:
    key, values = parse_assignment(item, "--grid")
    spec["grid"][key] = split_values(values)
  if not spec.get("config") and not any("config" in r for r in spec["runs"]) \
      and "config" not in spec["grid"]:
    raise SweepError("no config: pass --config=configs/<file>.py[:arg] or a "
                     "'config' key in the sweep file.")
  spec.setdefault("name", "sweep")
  spec.setdefault("root", "results/sweeps")
  for key, values in spec["grid"].items():
    if not isinstance(values, list) or not values:
      raise SweepError(f"grid field {key!r} needs a non-empty list of values, "
                       f"got {values!r}.")
  return spec


# ---------------------------------------------------------------- expansion


def expand(spec: dict[str, Any]) -> list[dict[str, Any]]:
  """runs × grid combinations, `set` underneath; the order is stable."""
  grid_keys = list(spec["grid"])
  combos = [dict(zip(grid_keys, values))
            for values in itertools.product(*(spec["grid"][k] for k in grid_keys))]
  runs = []
  for entry in spec["runs"] or [{}]:
    for combo in combos:
      fields = {**spec["set"], **entry, **combo}
      config = fields.pop("config", spec.get("config"))
      name = fields.pop("name", None)
      varying = {**{k: v for k, v in entry.items() if k not in RESERVED}, **combo}
      if "config" in combo or ("config" in entry and len(spec["runs"]) > 1):
        varying = {"config": config, **varying}
      runs.append(dict(config=config, overrides=fields, name=name, varying=varying))
  names = set()
  for index, run in enumerate(runs):
    run["index"] = index
    run["name"] = run["name"] or f"{index:03d}_{_slug(run['varying'])}"
    if run["name"] in names:
      raise SweepError(f"two runs are both named {run['name']!r}; names must be "
                       "unique (they are the workdirs).")
    names.add(run["name"])
  return runs


def _slug(varying: dict[str, Any]) -> str:
  parts = []
  for key, value in varying.items():
    if key == "config":
      value = pathlib.Path(str(value).split(":")[0]).stem + (
          "-" + str(value).split(":", 1)[1] if ":" in str(value) else "")
      parts.append(value)
    else:
      parts.append(f"{key.split('.')[-1]}-{format_value(value)}")
  slug = "_".join(parts) or "run"
  return re.sub(r"[^A-Za-z0-9_.=-]+", "", slug.replace(",", "-"))[:120]


# ---------------------------------------------------------------- configs


def load_config(config_arg: str) -> ml_collections.ConfigDict:
  """configs/<file>.py[:arg] -> its get_config([arg]), as train.py sees it."""
  path_text, _, arg = config_arg.partition(":")
  path = (REPO_ROOT / path_text) if not pathlib.Path(path_text).is_absolute() \
      else pathlib.Path(path_text)
  if not path.exists():
    raise SweepError(f"config file {path_text!r} does not exist (relative to "
                     f"the repository root {REPO_ROOT}).")
  spec = importlib.util.spec_from_file_location(f"_sweep_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()
  except Exception as error:  # pylint: disable=broad-except
    raise SweepError(f"config {config_arg!r} does not load: "
                     f"{type(error).__name__}: {error}") from None


def resolve(run: dict[str, Any], cache: dict[str, ml_collections.ConfigDict]
            ) -> ml_collections.ConfigDict:
  """The run's config with its overrides applied; unknown fields are errors."""
  if run["config"] not in cache:
    cache[run["config"]] = load_config(run["config"])
  config = copy.deepcopy(cache[run["config"]])
  config.lock()  # Unknown fields raise KeyError, values of the wrong type TypeError.
  for key, value in run["overrides"].items():
    try:
      config.update_from_flattened_dict(
          {key: reporting.parse_value(value) if isinstance(value, str) else value})
    except KeyError:
      node = config
      for part in key.split(".")[:-1]:
        if not (isinstance(node.get(part), ml_collections.ConfigDict)):
          break
        node = node[part]
      raise SweepError(
          f"run {run['name']!r}: {run['config']} has no field {key!r} "
          f"(--config.{key} would fail in train.py). Fields there: "
          f"{', '.join(sorted(node.keys()))}.") from None
    except (TypeError, ValueError) as error:
      raise SweepError(f"run {run['name']!r}: cannot set {key}={value!r}: "
                       f"{error}") from None
  return config


# ---------------------------------------------------------------- commands


def train_arguments(run: dict[str, Any]) -> list[str]:
  return ([f"--config={run['config']}", f"--workdir={run['workdir']}"]
          + [f"--config.{key}={format_value(value)}"
             for key, value in run["overrides"].items()])


def commands(run: dict[str, Any], launcher: str, launcher_args: list[str],
             python: str, with_eval: bool) -> list[list[str]]:
  """The run's command(s): train, then eval if asked."""
  entries = ["train.py"] + (["eval.py"] if with_eval else [])
  result = []
  for entry in entries:
    if LAUNCHERS[launcher] is None:
      result.append([python, entry] + train_arguments(run))
    else:
      extra = ["--job-name", run["job_name"]] if launcher == "slurm" else []
      result.append([LAUNCHERS[launcher], *extra, *launcher_args,
                     "--entry", entry, "--"] + train_arguments(run))
  return result


def is_local(path: str) -> bool:
  return "://" not in path


def finished(workdir: str) -> bool:
  return is_local(workdir) and (pathlib.Path(workdir) / "final_metrics.json").exists()


def build_manifest(spec: dict[str, Any], args: argparse.Namespace
                   ) -> dict[str, Any]:
  runs = expand(spec)
  cache: dict[str, ml_collections.ConfigDict] = {}
  root = spec["root"].rstrip("/")
  launcher_args = shlex.split(args.launcher_args or "")
  for run in runs:
    run["workdir"] = f"{root}/{spec['name']}/{run['name']}"
    run["job_name"] = f"{spec['name']}-{run['name']}"[:64]
    if args.no_validate:
      run.update(model=None, image_size=None)
    else:
      config = resolve(run, cache)
      run.update(model=config.get("model"), image_size=config.get("image_size"),
                 dataset=config.get("dataset"),
                 global_batch_size=config.get("global_batch_size"))
    run["commands"] = commands(run, args.launcher, launcher_args, args.python,
                               args.with_eval)
    run["command_lines"] = [shlex.join(c) for c in run["commands"]]
    run["status"] = "finished before" if finished(run["workdir"]) else "pending"
    run.pop("varying")
  return dict(
      name=spec["name"], root=root, launcher=args.launcher,
      created=datetime.datetime.now(datetime.timezone.utc).strftime(
          "%Y-%m-%dT%H:%M:%SZ"),
      git_commit=reporting.git_commit(short=False), spec=spec,
      runs=runs)


def manifest_path(manifest: dict[str, Any], override: str | None) -> pathlib.Path:
  if override:
    return pathlib.Path(override)
  if is_local(manifest["root"]):
    return pathlib.Path(manifest["root"]) / manifest["name"] / "manifest.json"
  return REPO_ROOT / "results" / "sweeps" / manifest["name"] / "manifest.json"


def write_manifest(manifest: dict[str, Any], path: pathlib.Path) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def run_locally(manifest: dict[str, Any], path: pathlib.Path, *,
                rerun: bool, keep_going: bool) -> int:
  """Runs each pending run's commands in turn; returns the failures."""
  failures = 0
  for run in manifest["runs"]:
    if run["status"] == "finished before" and not rerun:
      print(f"[{run['index']}] {run['name']}: finished before, skipped")
      continue
    for command in run["commands"]:
      print(f"[{run['index']}] $ {shlex.join(command)}", flush=True)
      code = subprocess.run(command, cwd=REPO_ROOT, check=False).returncode
      if code:
        break
    run["status"] = "done" if code == 0 else f"failed (exit {code})"
    write_manifest(manifest, path)
    if code:
      failures += 1
      if not keep_going:
        print(f"stopping: run {run['name']} failed (--keep-going to go on)")
        break
  return failures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = reporting.parser(__doc__)
  parser.add_argument("--config", help="configs/<file>.py[:arg], as for train.py")
  parser.add_argument("--file", help="a JSON sweep file (see above)")
  parser.add_argument("--grid", action="append", default=[],
                      metavar="FIELD=V1,V2,...", help="a grid axis (repeatable)")
  parser.add_argument("--set", action="append", default=[],
                      metavar="FIELD=VALUE", help="a field for every run (repeatable)")
  parser.add_argument("--root", help="workdirs go to ROOT/NAME/RUN "
                      "(local or gs://; default results/sweeps)")
  parser.add_argument("--name", help="sweep name (default: 'sweep')")
  parser.add_argument("--manifest", help="manifest path (default: ROOT/NAME/"
                      "manifest.json, or results/sweeps/NAME/ for bucket roots)")
  parser.add_argument("--launcher", choices=list(LAUNCHERS), default="local")
  parser.add_argument("--launcher-args", default="",
                      help="extra arguments for the launcher script, one string")
  parser.add_argument("--python", default="python",
                      help="interpreter for local commands")
  mode = parser.add_mutually_exclusive_group()
  for flag, text in (
      ("--dry-run", "show the runs and commands; write and run nothing"),
      ("--print", "write the manifest and print one command per line (for a "
       "cluster); run nothing")):
    mode.add_argument(flag, action="store_true", help=text)
  for flag, text in (
      ("--with-eval", "also run eval.py after each train.py"),
      ("--rerun", "also run runs whose workdir has final_metrics.json"),
      ("--keep-going", "go on after a failed run"),
      ("--no-validate", "do not load the configs to check the fields")):
    parser.add_argument(flag, action="store_true", help=text)
  return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
  args = parse_args(argv)
  try:
    manifest = build_manifest(spec_from_args(args), args)
  except SweepError as error:
    raise SystemExit(f"sweep: {error}") from None
  path = manifest_path(manifest, args.manifest)
  if args.dry_run:
    print(f"# dry run: {len(manifest['runs'])} runs; the manifest would be {path}")
  else:
    write_manifest(manifest, path)
  if args.dry_run or args.print:
    for run in manifest["runs"]:
      if args.dry_run:
        print(f"# [{run['index']}] {run['name']} ({run['status']}): model "
              f"{run['model']}, image size {run['image_size']}")
      print(*run["command_lines"], sep="\n")
    if args.print:
      print(f"# manifest: {path}", file=sys.stderr)
    return manifest
  print(f"manifest: {path}")
  failures = run_locally(manifest, path, rerun=args.rerun,
                         keep_going=args.keep_going)
  if failures:
    raise SystemExit(f"{failures} run(s) failed; see {path}")
  return manifest


if __name__ == "__main__":
  main()
