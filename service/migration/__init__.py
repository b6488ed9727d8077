"""Moving work from other queues into this one (`jobqueue import-taskiq-redis`)."""
