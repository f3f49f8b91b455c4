"""The `gemini` dialect: Google's Gemini API, translated to and from OpenAI's format."""
