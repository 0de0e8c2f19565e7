"""Tests of lambda_networks.train.device_prefetch: batches a step ahead."""

import numpy as np

from lambda_networks.train import device_prefetch
from lambda_networks.train import distributed


def test_batches_come_in_order_sharded_and_one_step_ahead():
  mesh = distributed.create_mesh((-1,))
  batches = [{"image": np.full((4, 2), i, np.float32),
              "label": np.arange(4) + i} for i in range(3)]
  taken = []

  def host_batches():
    for batch in batches:
      taken.append(batch)
      yield batch

  on_devices = device_prefetch.to_devices(host_batches(), mesh)
  first = next(on_devices)
  assert len(taken) == 2  # The next batch is already on its way.
  got = [first, *on_devices]
  assert len(got) == 3
  for want, batch in zip(batches, got):
    assert batch["image"].sharding == distributed.batch_sharding(mesh)
    for key, value in want.items():
      np.testing.assert_array_equal(np.asarray(batch[key]), value)
