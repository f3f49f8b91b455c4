"""Fine-tuning jobs on an upstream's OpenAI-compatible API (`/files`, `/fine_tuning/jobs`)."""
