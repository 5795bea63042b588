#!/usr/bin/env bash
# Codex CLI (codex exec) against cairn's Responses API: a shell command run, the final answer printed.
exec bash tests/clients/client.sh codex
