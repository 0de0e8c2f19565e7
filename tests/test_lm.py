"""Tests of the byte-level language models, their decoding and the sampler."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lambda_networks import models, sampling
from lambda_networks.models import lm, lm_decoding

MIXERS = [("lambda", 15), ("lambda", "global"), ("attention", None)]


def small_model(mixer, receptive_field, sequence_length=300, seed=0):
  config = lm.LanguageModelConfig(
      mixer=mixer, width=32, num_blocks=2, heads=4, query_depth=8,
      intra_depth=2, receptive_field=receptive_field,
      sequence_length=sequence_length)
  return lm.LanguageModel(config, rngs=nnx.Rngs(seed))


@pytest.mark.parametrize("mixer,receptive_field", MIXERS)
def test_no_information_flows_backwards(mixer, receptive_field):
  model = small_model(mixer, receptive_field, sequence_length=12)
  inputs = model.embedding(jnp.arange(12)[None] * 7)
  weights = jax.random.normal(jax.random.key(1), (256,))

  def outputs(x):  # One number per position: [T].
    return model.head(model.hidden(x[None]))[0] @ weights

  jacobian = jax.jit(jax.jacrev(outputs))(inputs[0])  # [T out, T in, C]
  influence = np.asarray(jnp.linalg.norm(jacobian, axis=-1))
  future = np.triu(np.ones((12, 12), bool), k=1)
  assert np.all(influence[future] == 0)
  # The past does reach the present: position 11 depends on position 0 (the
  # content lambda or attention spans the whole prefix).
  assert np.all(np.diag(influence) > 0) and influence[11, 0] > 0


@pytest.mark.parametrize("mixer,receptive_field", MIXERS)
def test_recurrent_decoding_equals_parallel_pass(mixer, receptive_field):
  model = small_model(mixer, receptive_field)
  tokens = jax.random.randint(jax.random.key(2), (2, 300), 0, 256)
  decoder = lm_decoding.Decoder(model)
  recurrent, state = decoder.run(decoder.init(2), tokens)
  parallel = nnx.jit(lambda model, tokens: model(tokens))(model, tokens)
  np.testing.assert_allclose(recurrent, parallel, atol=5e-5, rtol=1e-5)
  # Step by step from the state after 299 bytes gives the last logits too.
  _, state = decoder.run(decoder.init(2), tokens[:, :299])
  last, _ = decoder.step(state, tokens[:, 299])
  np.testing.assert_allclose(last, parallel[:, 299], atol=5e-5, rtol=1e-5)


def test_local_lambda_state_does_not_grow_with_context():
  def size(mixer, receptive_field, sequence_length):
    model = nnx.eval_shape(lambda: small_model(mixer, receptive_field,
                                               sequence_length))
    return lm_decoding.state_size(jax.eval_shape(
        lambda: lm_decoding.init_state(model, 1)))

  assert size("lambda", 15, 300) == size("lambda", 15, 30_000)
  assert size("lambda", "global", 30_000) > 50 * size("lambda", "global", 300)
  assert size("attention", None, 30_000) > 50 * size("attention", None, 300)
  assert lm_decoding.max_length(small_model("lambda", 15).config) is None


def fake_step(state, tokens):
  """A fake model: the next token is likely (token + 1) mod 8."""
  logits = 5.0 * jax.nn.one_hot((tokens + 1) % 8, 8) + 0.1 * jnp.arange(8)
  return logits, state + 1


def test_sampler_drives_a_step_function():
  prompt = np.array([[3], [6]])
  key = jax.random.key(0)
  greedy = sampling.sample(fake_step, 0, prompt, 5, key=key, temperature=0)
  np.testing.assert_array_equal(greedy, [[4, 5, 6, 7, 0], [7, 0, 1, 2, 3]])
  top1 = sampling.sample(fake_step, 0, prompt, 5, key=key, temperature=3.0,
                         top_k=1)
  np.testing.assert_array_equal(top1, greedy)
  first = sampling.sample(fake_step, 0, prompt, 40, key=key, temperature=5.0)
  again = sampling.sample(fake_step, 0, prompt, 40, key=key, temperature=5.0)
  np.testing.assert_array_equal(first, again)
  assert len(np.unique(first)) > 2  # A hot temperature leaves the greedy path.


def test_top_k_only_draws_the_k_most_likely():
  logits = jnp.tile(jnp.arange(8.0), (400, 1))
  drawn = sampling.choose(logits, jax.random.key(3), 100.0, 3)
  assert set(np.unique(drawn)) == {5, 6, 7}


@pytest.mark.parametrize("options,message", [
    (dict(temperature=-1.0), "temperature"), (dict(top_k=0), "top_k")])
def test_sampler_refuses_bad_options(options, message):
  with pytest.raises(ValueError, match=message):
    sampling.sample(fake_step, 0, np.array([[1]]), 2, key=jax.random.key(0),
                    **options)


def count(name, **overrides):
  """Parameters of a registry model, built abstractly (nothing allocated)."""
  return models.count_parameters(nnx.eval_shape(lambda: models.get_model(
      name, num_classes=256, rngs=nnx.Rngs(0), **overrides)))


@pytest.mark.parametrize("receptive_field", [127, 15, "global"])
def test_both_families_have_equal_parameters_at_each_size(receptive_field):
  """The lambda blocks' wider MLP (lm.mlp_hidden) makes up for the lambda
  layer's fewer weights, whatever its position table."""
  for size in ("tiny", "small", "base"):
    lambda_count = count(f"lambda_lm_{size}", receptive_field=receptive_field)
    transformer_count = count(f"transformer_lm_{size}")
    assert lambda_count == pytest.approx(transformer_count, rel=0.01), size


def test_without_equal_parameters_the_lambda_model_is_smaller():
  assert (count("lambda_lm_tiny", equal_parameters=False)
          < 0.9 * count("transformer_lm_tiny"))


@pytest.mark.parametrize("fields,message", [
    (dict(mixer="conv"), "mixer"), (dict(width=30), "divisible"),
    (dict(receptive_field=16), "odd")])
def test_bad_configs_get_one_clear_error(fields, message):
  with pytest.raises((ValueError, TypeError), match=message):
    models.get_model("lambda_lm_tiny", num_classes=256, rngs=nnx.Rngs(0),
                     **fields)


def test_too_long_input_is_refused():
  model = small_model("lambda", 15, sequence_length=8)
  with pytest.raises(ValueError, match="sequence_length"):
    model(jnp.zeros((1, 9), jnp.int32))


def test_the_position_table_starts_the_mixer_at_unit_scale():
  """With the default position_stddev a global lambda layer's output starts
  at about the scale of its input at every position; with the paper's unit
  table it starts √(k·L) (45) times larger at the end of the context."""
  inputs = jax.random.normal(jax.random.key(0), (1, 128, 128))

  def output_scale(**fields):
    config = lm.LanguageModelConfig(receptive_field="global",
                                    sequence_length=128, **fields)
    return float(jnp.std(lm.make_mixer(config, rngs=nnx.Rngs(0))(inputs)[0, -16:]))

  assert output_scale() < 2 < 10 < output_scale(position_stddev=1.0)
