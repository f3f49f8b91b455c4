"""The `llamacpp` dialect: GGUF models run in-process by llama.cpp (via xllamacpp)."""
