#!/usr/bin/env bash
# Claude Code (claude -p) against cairn serve: a Bash and a Write tool call run, the follow-up answered.
exec bash tests/clients/client.sh claude_code
