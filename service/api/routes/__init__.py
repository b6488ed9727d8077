"""Route modules: jobs (enqueue, inspect, change), monitoring (stats, health, workers, lists),
health (liveness and readiness for the load balancer)."""
