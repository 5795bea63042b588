#!/usr/bin/env bash
# The SDKs and frameworks (openai, @anthropic-ai/sdk, AI SDK, LangChain JS, OpenAI Agents JS) against cairn serve.
exec bash tests/clients/client.sh sdks
