"""Test helper: runs a script and sends itself a signal while step N trains.

    python tests/signal_at_step.py N SIGINT train.py [args...]

The signal arrives just before step N (counted from 1 in this process) is
dispatched, when the loop puts the batch of step N + `device_prefetch.AHEAD`
on the devices, as a Ctrl-C pressed mid-step would.
"""

import os
import runpy
import signal
import sys

from lambda_networks.train import device_prefetch
from lambda_networks.train import distributed


def main():
  at_step, name, script, *args = sys.argv[1:]
  original = distributed.global_batch
  calls = 0

  def global_batch_then_signal(*call_args, **kwargs):
    nonlocal calls
    calls += 1
    if calls == int(at_step) + device_prefetch.AHEAD:
      os.kill(os.getpid(), signal.Signals[name])
    return original(*call_args, **kwargs)

  distributed.global_batch = global_batch_then_signal
  sys.argv = [script, *args]
  runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
  main()
