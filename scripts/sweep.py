"""Sweeps: the train.py runs a JSON sweep file lists, checked, then launched.

A sweep file (docs/sweeps/ holds the paper's) crosses its `runs` with a
`grid` of config fields, `set` under both; `config` is the runs' config
unless a run names its own, and `name` names a run (else: its index and what
varies). Each run gets the workdir ROOT/NAME/RUN and its command in a
manifest (JSON); the commands run here in turn (runs whose workdir holds
final_metrics.json are skipped), or `--print` prints them for a cluster, or
`--dry-run` only shows them. Every field is first set on its config as
train.py sets it, so a typo fails here, not hours later on a cluster.
`--root`, `--name` and `--set FIELD=VALUE` go over the file's.

  {"name": "table3", "root": "runs", "set": {"global_batch_size": 1024},
   "config": "configs/resnet50_90ep.py:resnet50_lambda",
   "runs": [{"config": "configs/resnet50_90ep.py:resnet50"},
            {"model_overrides.intra_depth": 4, "name": "lambda_u4"}]}

  python -m scripts.sweep --file=docs/sweeps/table3.json --dry-run \\
      --root=gs://B/runs --set data_dir=gs://B/tensorflow_datasets
  python -m scripts.sweep --file=sweep.json --print --launcher=slurm \\
      --launcher-args="--nodes 4 --gpus-per-node 8"

Launchers: `local` runs `python train.py ...`; `slurm` and `tpu` call
scripts/launch_slurm.sh and scripts/launch_tpu_pod.sh with the same train.py
arguments after `--`.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import functools
import itertools
import json
import pathlib
import re
import runpy
import shlex
import subprocess
import sys
from typing import Any

import ml_collections

from lambda_networks.benchmarks import reporting

LAUNCHERS = {"local": None, "slurm": "scripts/launch_slurm.sh",
             "tpu": "scripts/launch_tpu_pod.sh"}
DEFAULTS = {"set": {}, "grid": {}, "runs": [], "name": "sweep",
            "root": "results/sweeps"}
MODEL = "model_overrides."  # Fields of the model's config (train.model_flags).


class SweepError(ValueError):
  """A sweep file that cannot be expanded."""


def read_spec(args: argparse.Namespace) -> dict[str, Any]:
  """The sweep file, with --root, --name and --set over it."""
  try:
    spec = json.loads(pathlib.Path(args.file).read_text())
  except (OSError, json.JSONDecodeError) as error:
    raise SweepError(f"cannot read {args.file}: {error}") from None
  if unknown := sorted(set(spec) - {"config", *DEFAULTS}):
    raise SweepError(f"{args.file}: unknown key(s) {unknown}; a sweep file "
                     f"has config, {', '.join(DEFAULTS)}.")
  for key, default in DEFAULTS.items():
    spec.setdefault(key, copy.deepcopy(default))
  spec.update((key, getattr(args, key)) for key in ("root", "name")
              if getattr(args, key) is not None)
  spec["set"].update((field.removeprefix("config."), value)
                     for field, value in args.set)
  if bad := [k for k, v in spec["grid"].items() if not v or not isinstance(v, list)]:
    raise SweepError(f"grid field(s) {bad} need a non-empty list of values.")
  return spec


def expand(spec: dict[str, Any]) -> list[dict[str, Any]]:
  """runs × grid combinations, `set` underneath; the order is stable."""
  runs = []
  for entry, values in itertools.product(
      spec["runs"] or [{}], itertools.product(*spec["grid"].values())):
    combo = dict(zip(spec["grid"], values))
    overrides = {**spec["set"], **entry, **combo}
    config = overrides.pop("config", spec.get("config"))
    name = overrides.pop("name", None)
    varying = {k: v for k, v in {**entry, **combo}.items()
               if k not in ("config", "name")}
    if "config" in combo or ("config" in entry and len(spec["runs"]) > 1):
      varying = {"config": config, **varying}
    name = name or f"{len(runs):03d}_{_slug(varying)}"
    if not config:
      raise SweepError(f"run {name!r} has no config: give the file (or the run) a "
                       "'config', configs/<file>.py[:arg].")
    runs.append(dict(config=config, overrides=overrides, name=name, index=len(runs)))
  names = [run["name"] for run in runs]
  if duplicate := next((n for n in names if names.count(n) > 1), None):
    raise SweepError(f"two runs are both named {duplicate!r}; names must be "
                     "unique (they are the workdirs).")
  return runs


def _slug(varying: dict[str, Any]) -> str:
  """{'config': 'configs/a.py:x', 'm.depth': 4} -> 'a-x_depth-4'."""
  parts = []
  for key, value in varying.items():
    if key == "config":
      path, sep, arg = str(value).partition(":")
      parts.append(pathlib.Path(path).stem + (f"-{arg}" if sep else ""))
    else:
      parts.append(f"{key.split('.')[-1]}-{reporting.format_value(value)}")
  slug = "_".join(parts) or "run"
  return re.sub(r"[^A-Za-z0-9_.=-]+", "", slug.replace(",", "-"))[:120]


@functools.cache
def load_config(config_arg: str) -> ml_collections.ConfigDict:
  """configs/<file>.py[:arg] -> its get_config([arg]), as train.py sees it."""
  path, _, arg = config_arg.partition(":")
  try:  # Relative to the repository root; an absolute path stays as it is.
    module = runpy.run_path(str(reporting.REPO_ROOT / path))
    return module["get_config"](*filter(None, [arg]))
  except Exception as error:  # pylint: disable=broad-except
    raise SweepError(f"config {config_arg!r} does not load: "
                     f"{type(error).__name__}: {error}") from None


def resolve(run: dict[str, Any]) -> ml_collections.ConfigDict:
  """The run's config with its fields set as train.py sets them; bad ones fail."""
  config = copy.deepcopy(load_config(run["config"]))
  config.lock()  # Unknown fields raise KeyError, values of the wrong type TypeError.
  fields = {key: reporting.parse_value(value) if isinstance(value, str) else value
            for key, value in run["overrides"].items() if not key.startswith(MODEL)}
  model_fields = [(key.removeprefix(MODEL), reporting.format_value(value))
                  for key, value in run["overrides"].items() if key.startswith(MODEL)]
  try:
    config.update_from_flattened_dict(fields)
    if model_fields:  # Typed by the model's config class, as train.py types them.
      from lambda_networks.train import model_flags  # pylint: disable=g-import-not-at-top
      model_flags.apply(config, model_fields)
  except (KeyError, TypeError, ValueError) as error:
    text, hint = str(error.args[0]), re.search("Did you mean .*", str(error.args[0]))
    text = text.split(" Other fields present")[0] + (f" {hint[0]}" if hint else "")
    raise SweepError(f"run {run['name']!r} ({run['config']}): {text}") from None
  return config


def build_manifest(spec: dict[str, Any], args: argparse.Namespace
                   ) -> dict[str, Any]:
  """Every run's workdir, fields and commands (train, then eval if asked)."""
  runs, root = expand(spec), spec["root"].rstrip("/")
  launcher = LAUNCHERS[args.launcher]
  for run in runs:
    run["workdir"] = f"{root}/{spec['name']}/{run['name']}"
    run["job_name"] = f"{spec['name']}-{run['name']}"[:64]
    config = resolve(run)
    run.update({key: config.get(key) for key in (
        "model", "image_size", "dataset", "global_batch_size")})
    train_args = [f"--config={run['config']}", f"--workdir={run['workdir']}",
                  *(f"--config.{key}={reporting.format_value(value)}"
                    for key, value in run["overrides"].items())]
    job = ["--job-name", run["job_name"]] if args.launcher == "slurm" else []
    run["commands"] = [
        [args.python, entry, *train_args] if launcher is None else
        [launcher, *job, *shlex.split(args.launcher_args), "--entry", entry, "--",
         *train_args] for entry in ["train.py", "eval.py"][:1 + args.with_eval]]
    run["command_lines"] = [shlex.join(c) for c in run["commands"]]
    finished = "://" not in root and (
        pathlib.Path(run["workdir"]) / "final_metrics.json").exists()
    run["status"] = "finished before" if finished else "pending"
  created = datetime.datetime.now(datetime.timezone.utc)
  return dict(name=spec["name"], root=root, launcher=args.launcher,
              created=created.strftime("%Y-%m-%dT%H:%M:%SZ"),
              git_commit=reporting.git_commit(short=False), spec=spec, runs=runs)


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
      code = subprocess.run(command, cwd=reporting.REPO_ROOT, check=False).returncode
      if code:
        break
    run["status"] = f"failed (exit {code})" if code else "done"
    write_manifest(manifest, path)
    failures += bool(code)
    if code and not keep_going:
      print(f"stopping: run {run['name']} failed (--keep-going to go on)")
      break
  return failures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = reporting.parser(__doc__)
  add = parser.add_argument
  add("--file", required=True, help="the JSON sweep file (see above)")
  add("--set", action="append", default=[], type=reporting.field_value,
      metavar="FIELD=VALUE", help="a field for every run (repeatable)")
  add("--root", help="workdirs go to ROOT/NAME/RUN (local or gs://; default: "
      "the file's, else results/sweeps)")
  add("--name", help="sweep name (default: the file's, else 'sweep')")
  add("--manifest", type=pathlib.Path, help="manifest path (default: ROOT/NAME/"
      "manifest.json, or results/sweeps/NAME/ for bucket roots)")
  add("--launcher", choices=list(LAUNCHERS), default="local")
  add("--launcher-args", default="",
      help="extra arguments for the launcher script, one string")
  add("--python", default="python", help="interpreter for local commands")
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--dry-run", action="store_true",
                    help="show the runs and commands; write and run nothing")
  mode.add_argument("--print", action="store_true", help="write the manifest "
                    "and print one command per line (for a cluster); run nothing")
  for flag, text in (
      ("--with-eval", "also run eval.py after each train.py"),
      ("--rerun", "also run runs whose workdir has final_metrics.json"),
      ("--keep-going", "go on after a failed run")):
    add(flag, action="store_true", help=text)
  return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
  args = parse_args(argv)
  try:
    manifest = build_manifest(read_spec(args), args)
  except SweepError as error:
    raise SystemExit(f"sweep: {error}") from None
  root = manifest["root"] if "://" not in manifest["root"] else (
      reporting.REPO_ROOT / "results" / "sweeps")
  path = args.manifest or pathlib.Path(root) / manifest["name"] / "manifest.json"
  if args.dry_run:
    print(f"# dry run: {len(manifest['runs'])} runs; the manifest would be {path}")
    for run in manifest["runs"]:
      print(f"# [{run['index']}] {run['name']} ({run['status']}): model "
            f"{run['model']}, image size {run['image_size']}",
            *run["command_lines"], sep="\n")
    return manifest
  write_manifest(manifest, path)
  if args.print:
    print(*(line for run in manifest["runs"] for line in run["command_lines"]),
          sep="\n")
    print(f"# manifest: {path}", file=sys.stderr)
    return manifest
  print(f"manifest: {path}")
  if failures := run_locally(manifest, path, rerun=args.rerun,
                             keep_going=args.keep_going):
    raise SystemExit(f"{failures} run(s) failed; see {path}")
  return manifest


if __name__ == "__main__":
  main()
