"""The error a user can fix: a bad flag, config value, path or dataset.

`train.py` and `eval.py` print a `UserError` as one line (what is wrong, why,
how to fix it) and exit with status 2; any other exception is a bug and keeps
its traceback. A subclass of ValueError, so callers of the library that catch
ValueError keep working.
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

_Function = TypeVar("_Function", bound=Callable)


class UserError(ValueError):
  """A mistake in what the user asked for, with a message that says the fix."""


def raise_as_user_errors(*kinds: type[Exception]) -> Callable[[_Function], _Function]:
  """Decorator: exceptions of `kinds` raised by the function become UserErrors.

  For functions whose failures of these kinds all come from the config (e.g.
  building the data, model and mesh it names). The original exception stays
  attached as `__cause__`, so a traceback shows where it came from.
  """

  def decorate(function: _Function) -> _Function:
    @functools.wraps(function)
    def wrapped(*args, **kwargs):
      try:
        return function(*args, **kwargs)
      except UserError:
        raise
      except kinds as error:
        raise UserError(str(error)) from error
    return wrapped  # type: ignore[return-value]

  return decorate
