"""Choosing among deployments: strategies, live stats, circuit breakers, retries."""
