"""The rooms keep their shape: modules, classes and functions of a readable size, the
transport apart from the learner, and each thing declared once (the run settings, the
environment suites) with its copies checked against the declaration."""

import ast
import dataclasses
import pathlib

import yaml
from conftest import ROOT
from google.protobuf.descriptor import FieldDescriptor as F

from impala import presets, suites
from impala.config import PRESETS, RUN_SETTINGS, Config, default, flags
from impala.config.flags import env_name
from impala.transport.proto import impala_pb2 as pb

PACKAGE = pathlib.Path(ROOT, "impala")
MODULE_LINES, CLASS_LINES, FUNCTION_LINES = 330, 160, 60


def sources():
  for path in sorted(PACKAGE.rglob("*.py")):
    if "proto" not in path.relative_to(PACKAGE).parts:
      yield path, ast.parse(path.read_text())


def lines(node) -> int:
  return node.end_lineno - node.lineno + 1


def declares_only_fields(node: ast.ClassDef) -> bool:
  """A dataclass whose body is its fields, a docstring and at most a few short methods."""
  dataclass = any("dataclass" in ast.unparse(d) for d in node.decorator_list)
  methods = [n for n in node.body if not isinstance(n, (ast.AnnAssign, ast.Expr))]
  return dataclass and sum(lines(n) for n in methods) <= FUNCTION_LINES


def test_modules_classes_and_functions_stay_readable():
  too_long = []
  for path, tree in sources():
    name = str(path.relative_to(ROOT))
    count = len(path.read_text().splitlines())
    if count > MODULE_LINES:
      too_long.append(f"{name}: {count} lines")
    for node in ast.walk(tree):
      if isinstance(node, ast.ClassDef) and lines(node) > CLASS_LINES:
        if not declares_only_fields(node):
          too_long.append(f"{name}: class {node.name}: {lines(node)} lines")
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and lines(node) > FUNCTION_LINES:
        too_long.append(f"{name}: {node.name}(): {lines(node)} lines")
  assert not too_long, too_long


def imported(tree: ast.AST) -> set[str]:
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
      names.update(f"{node.module}.{alias.name}" for alias in node.names)
  return names


def test_the_transport_imports_nothing_of_the_learner():
  """The server sees the learner through transport/port.py alone."""
  seen = {
    str(path.relative_to(ROOT)): sorted(n for n in imported(tree) if n.startswith("impala.learner"))
    for path, tree in sources()
    if path.relative_to(PACKAGE).parts[0] == "transport"
  }
  assert seen and not any(seen.values()), seen


def outermost_functions(tree: ast.Module):
  """(node, the name of the module-level function or class it is in, or "") for each node."""
  for top in tree.body:
    name = top.name if isinstance(top, (ast.FunctionDef, ast.ClassDef)) else ""
    for node in ast.walk(top):
      yield node, name


def test_os_exit_only_in_the_programs_entry_functions():
  """A hidden exit is a run loop nobody can read: os._exit is called only inside the
  programs' entry functions (where the reason is written beside it)."""
  exits = [
    (str(path.relative_to(ROOT)), entry)
    for path, tree in sources()
    for node, entry in outermost_functions(tree)
    if isinstance(node, ast.Call) and ast.unparse(node.func) == "os._exit"
  ]
  assert sorted(exits) == [
    ("impala/actor/program.py", "run_actor"),
    ("impala/learner/program.py", "run_learner"),
  ]


def test_the_handshake_carries_every_run_setting_with_its_type():
  """protos/impala.proto copies the run settings by hand: a test holds them together."""
  fields = pb.RunSettings.DESCRIPTOR.fields_by_name
  assert set(fields) == set(RUN_SETTINGS)
  wire = {
    str: {F.TYPE_STRING},
    dict: {F.TYPE_STRING},  # as JSON
    int: {F.TYPE_UINT32, F.TYPE_UINT64, F.TYPE_INT32},
    float: {F.TYPE_DOUBLE},
    tuple: {F.TYPE_INT32},
  }
  config_fields = {f.name: f for f in dataclasses.fields(Config)}
  for name in RUN_SETTINGS:
    kind = type(default(config_fields[name]))
    assert fields[name].type in wire[kind], (name, kind, fields[name].type)
    assert fields[name].is_repeated == (kind is tuple), name


def test_every_suite_has_a_preset_and_the_docs_list_every_suite():
  docs = pathlib.Path(ROOT, "docs", "configuration.md").read_text()
  assert suites.SUITES[-1].ids == ".*", "the catch-all suite comes last"
  for suite in suites.SUITES:
    assert suite.preset in PRESETS, suite
    row = f"| `{suite.name}` | `{suite.ids}` | `{suite.preset}` | {suite.maker} | {suite.about} |"
    assert row in docs, f"docs/configuration.md lacks the row of {suite.name}: {row}"
  assert presets.family("MinAtar/Breakout-v1") == "minatar"
  assert presets.family("examples.corridor:Corridor-v0") == "classic"


# Values of the manifest's ConfigMap that differ from Config's defaults on purpose.
DEPLOYED = {"queue_size", "health_port", "auth_token_file", "metrics_port", "run_dir"}


def test_the_manifest_restates_only_defaults_that_are_still_the_defaults():
  """impala.yml's ConfigMap shows the main knobs; one that repeats a default must repeat
  today's (DEPLOYED: those that differ from it on purpose)."""
  docs = list(yaml.safe_load_all(pathlib.Path(ROOT, "impala.yml").read_text()))
  data = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
  by_env = {env_name(f): f for f in dataclasses.fields(Config)}
  stale = []
  for key, text in data.items():
    field = by_env.get(key)
    if field is None or field.name in DEPLOYED:
      continue
    if flags.parse_value(field, text) != default(field):
      stale.append(f"{key}={text} (default {default(field)!r})")
  assert not stale, stale
  assert DEPLOYED <= {by_env[k].name for k in data if k in by_env}
