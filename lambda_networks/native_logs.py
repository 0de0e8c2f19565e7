"""Keeps TensorFlow's C++ notices off the console of train.py and eval.py.

TensorFlow (the input pipeline) prints C++ notices at start-up and while
reading: oneDNN and CPU-feature notices, TFDS's "did not fully read the
dataset being cached". None asks the user to act. `quiet()` turns them off
before JAX or TensorFlow load (importing JAX sets TF_CPP_MIN_LOG_LEVEL=1 if
it is unset, so this module imports neither); C++ errors still print, and a
value the user set in the environment wins.
"""

import os

DEFAULTS = {
    "TF_CPP_MIN_LOG_LEVEL": "2",  # C++ INFO and WARNING off, ERROR kept.
    # oneDNN's custom CPU kernels off: their notice prints whatever the log
    # level, and the input pipeline's image ops gain nothing from them.
    "TF_ENABLE_ONEDNN_OPTS": "0",
}


def quiet() -> None:
  """Sets DEFAULTS where the environment does not; call before importing JAX."""
  for name, value in DEFAULTS.items():
    os.environ.setdefault(name, value)
