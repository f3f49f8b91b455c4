"""OpenTelemetry for the gateway: GenAI-convention spans and metrics over OTLP/HTTP.

Off by default (`[telemetry] enabled = false`), and then nothing of OpenTelemetry is even
imported: the pipeline's hooks are `if trace is not None` checks on a field that stays None.
"""
