"""The `openai` dialect: any OpenAI-compatible upstream, with presets for the known ones."""
