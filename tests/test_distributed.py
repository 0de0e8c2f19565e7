"""When --distributed=auto starts jax.distributed: as JAX's own cluster
detection says (the call itself is replaced by a recorder: no coordinator)."""

import os

import jax
import pytest

from lambda_networks.train import distributed

# A SLURM job step's variables (srun), as JAX's SlurmCluster reads them.
SLURM_STEP = {"SLURM_JOB_ID": "42", "SLURM_STEP_NODELIST": "node[001-002]",
              "SLURM_PROCID": "1", "SLURM_LOCALID": "0"}
OPEN_MPI = {"OMPI_MCA_orte_hnp_uri": "1531576320.0;tcp://10.0.0.1:34911",
            "OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_LOCAL_RANK": "1"}


@pytest.fixture
def initialize_calls(monkeypatch):
  """A clean cluster environment; jax.distributed.initialize's calls."""
  for name in list(os.environ):
    if (name.startswith(("SLURM_", "OMPI_", "TPU_", "MEGASCALE_"))
        or name == "KUBERNETES_SERVICE_HOST"):
      monkeypatch.delenv(name)
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize",
                      lambda **kwargs: calls.append(kwargs))
  return calls


@pytest.mark.parametrize("env, starts", [
    ({}, False),
    (dict(SLURM_STEP, SLURM_NTASKS="1"), False),  # One task: nothing to join.
    (dict(SLURM_STEP, SLURM_NTASKS="16"), True),
    ({"SLURM_NTASKS": "16"}, False),  # Outside a job step: JAX would not find it.
    (dict(OPEN_MPI, OMPI_COMM_WORLD_SIZE="2"), True),
    (dict(OPEN_MPI, OMPI_COMM_WORLD_SIZE="1"), False),
])
def test_auto_starts_only_in_a_cluster_jax_detects_with_several_processes(
    monkeypatch, initialize_calls, env, starts):
  for name, value in env.items():
    monkeypatch.setenv(name, value)
  distributed.initialize("auto")
  assert initialize_calls == ([{}] if starts else [])


def test_explicit_coordinator_on_and_off(initialize_calls):
  distributed.initialize("auto", "localhost:1234", 2, 1)
  distributed.initialize("on")
  distributed.initialize("off", "localhost:1234", 2, 1)
  assert initialize_calls == [
      dict(coordinator_address="localhost:1234", num_processes=2, process_id=1),
      {}]
  with pytest.raises(ValueError, match="--num_processes and --process_id"):
    distributed.initialize("auto", "localhost:1234")
