#!/usr/bin/env bash
# Qwen Code (qwen -p, OpenAI-compatible) against cairn serve: a shell command run, the final answer printed.
exec bash tests/clients/client.sh qwen_code
