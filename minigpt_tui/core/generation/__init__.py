"""Text out of a trained model: sampling settings and the Sampler, the stateful ChatSession
(state kept between turns), conversations, chat templates, the Chat that ties them together,
and the sampler process the app replies from. Imports core's top modules, data, models and
runs; never training."""
