"""Making and scoring models: the Trainer, the optimizer and schedule, devices and precision,
the allocator settings of a CPU run, the ETA, and full-pass evaluation. The top of the core:
may import every other room (it samples at evaluations through generation)."""
