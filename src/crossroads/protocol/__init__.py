"""The OpenAI wire format plus Crossroads' extensions, as pydantic models."""
