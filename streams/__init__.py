"""Everything in socialrec that does I/O: Kafka, Redis, the Faust worker, HTTP, the CLI."""
