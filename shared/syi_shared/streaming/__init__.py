"""The calculators' streaming logic, without Bytewax (docs/streaming.md):

* `clock` — when may a minute bucket close (pure);
* `progress` — a tape player's progress markers on `syi.progress`;
* `step` — clock + engine adapter: input items in, one transaction per closed bucket out;
* `decode` — Kafka message -> flow item (a bad one carries its dead letter);
* `restore` — where a run starts: the Kafka checkpoint, inputs re-read to the last close;
* `transactions` — the transactional producer that writes each bucket exactly once;
* `telemetry`, `settings` — metrics, health and settings both calculators share.

The Bytewax shell around it is the `syi_dataflow` package (dataflow/).
"""
