"""The Bytewax layer of the two calculators (ray-calc, syi-calc): a thin shell around the
Bytewax-free step in `syi_shared.streaming` (docs/streaming.md).

* `source` — one Kafka consumer over every input partition, from the restored positions;
* `sink` — one Kafka transaction per `Commit` (a bucket's outputs, dead letters, checkpoint);
* `flow` — restore from Kafka, then source -> decode -> the stateful step -> sink;
* `run` — a calculator's whole life (telemetry, signals, Bytewax's runner);
* `compat` — the Bytewax version this layer is written for.
"""
