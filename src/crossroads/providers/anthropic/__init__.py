"""The `anthropic` dialect: Anthropic's Messages API, translated to and from OpenAI's format."""
