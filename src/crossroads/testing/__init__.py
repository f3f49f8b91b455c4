"""Test doubles that are real servers: fake upstreams speaking each provider's wire format."""
