"""Worker processes: RQ jobs (outbox relay, schedules, mail) and the Kafka consumer."""
