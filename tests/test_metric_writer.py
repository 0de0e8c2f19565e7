"""Tests of lambda_networks.train.metric_writer: what TensorBoard reads back."""

import numpy as np
import tensorflow as tf
from absl import logging
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.hparams import plugin_data_pb2

from conftest import run
from lambda_networks.train import metric_writer


def _write(logdir):
  writer = metric_writer.MetricWriter(logdir)
  writer.write_hparams({"model": "lambda_resnet50", "learning_rate": "0.1"})
  writer.write_scalars(1, {"train/loss": np.float32(6.5), "train/top1": 0.25})
  writer.write_scalars(2, {"train/loss": 6.25, "train/top1": 0.5})
  writer.flush()
  writer.write_scalars(3, {"eval/top1": 0.75})
  writer.close()


def test_tensorflow_reads_every_record(tmp_path):
  _write(tmp_path / "run")
  files = list((tmp_path / "run").glob(metric_writer.EVENT_FILE_PREFIX + "*"))
  assert len(files) == 1
  # TensorFlow's reader checks each record's length and data checksums.
  events = [event_pb2.Event.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(str(files[0]))]
  assert events[0].file_version == "brain.Event:2"
  scalars = [(e.step, v.tag, v.simple_value)
             for e in events for v in e.summary.value if v.HasField("simple_value")]
  assert scalars == [(1, "train/loss", 6.5), (1, "train/top1", 0.25),
                     (2, "train/loss", 6.25), (2, "train/top1", 0.5),
                     (3, "eval/top1", 0.75)]


def test_tensorboard_sees_scalars_and_hyperparameters(tmp_path):
  _write(tmp_path)
  events = event_accumulator.EventAccumulator(str(tmp_path)).Reload()
  assert sorted(events.Tags()["scalars"]) == ["eval/top1", "train/loss", "train/top1"]
  assert [(s.step, s.value) for s in events.Scalars("train/loss")] == [(1, 6.5), (2, 6.25)]
  content = events.PluginTagToContent("hparams")
  session = plugin_data_pb2.HParamsPluginData.FromString(
      content["_hparams_/session_start_info"]).session_start_info
  assert session.hparams["model"].string_value == "lambda_resnet50"
  assert session.hparams["learning_rate"].string_value == "0.1"


def test_without_logdir_it_only_logs(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # Where a stray relative file would land.
  lines = []
  monkeypatch.setattr(logging, "info", lambda form, *args: lines.append(form % args))
  writer = metric_writer.MetricWriter(None)
  writer.write_scalars(7, {"train/top1": 0.125, "train/steps": 7})
  writer.close()
  assert lines == ["[7] train/steps=7, train/top1=0.125"]
  assert not list(tmp_path.iterdir())


def test_train_py_starts_without_tensorflow():
  code = ("import sys; import train; "
          "from lambda_networks.train import experiment, periodic, trainer; "
          "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'))")
  _, output = run(["-c", code], devices=1)
  assert output.strip().splitlines()[-1] == "[]", output
