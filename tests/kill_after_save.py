"""Test helper: runs a script and SIGKILLs itself right after the save of step N.

    python tests/kill_after_save.py N train.py [args...]

The kill lands while the asynchronous save of step N may still be writing,
like a machine that dies mid-checkpoint.
"""

import os
import runpy
import signal
import sys

import jax

from lambda_networks.train import checkpointing


def main():
  kill_step, script, *args = sys.argv[1:]
  original_save = checkpointing.save

  def save_then_die(manager, state, record, *, force=False):
    saved = original_save(manager, state, record, force=force)
    if saved and int(jax.device_get(state.step)) >= int(kill_step):
      os.kill(os.getpid(), signal.SIGKILL)
    return saved

  checkpointing.save = save_then_die
  sys.argv = [script, *args]
  runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
  main()
