#!/usr/bin/env bash
# Black-box test of how `cairn serve` treats the chat template at start-up (issue 20 item 2):
#  - a tokenizer_config.json as transformers writes it (model_max_length 1000000000000000019884624838656,
#    a NaN) loads, and chat works;
#  - a template that does not compile stops start-up: exit non-zero, with the template's own error;
#  - with --no-chat-template the same model serves /v1/completions, and /health and /v1/models say so;
#  - --chat-template FILE (or the Jinja text itself) replaces the model's template: the rendered
#    prompt is the given template's (count_tokens = /tokenize of its output); a name that is neither
#    a file nor Jinja stops start-up.
# Uses the built-in default model (models/default) on the cpu backend.
. tests/server/serve_lib.sh

model() {   # $1: dir; copies models/default, then $2 edits tokenizer_config.json (python expression on d)
    mkdir -p "$1"
    for f in models/default/*; do ln -s "$(realpath "$f")" "$1/"; done
    rm "$1/tokenizer_config.json"
    python3 - "$1/tokenizer_config.json" "$2" <<'PY'
import json, sys
d = json.load(open("models/default/tokenizer_config.json"))
exec(sys.argv[2])
open(sys.argv[1], "w").write(json.dumps(d, allow_nan=True))
PY
}

# 1. transformers' huge model_max_length and a NaN: the template loads, chat answers
model "$tmp/huge" 'd["model_max_length"] = 1000000000000000019884624838656; d["some_ratio"] = float("nan")'
if serve "$tmp/huge.log" "$tmp/huge"; then
    out=$(curl -s "http://127.0.0.1:$port/v1/chat/completions" -H 'content-type: application/json' \
          -d '{"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"big":100000000000000000000000}')
    check "huge model_max_length: chat works" '[[ "$out" == *chat.completion* ]]'
    stop
else check "huge model_max_length: serve starts" false; tail -5 "$tmp/huge.log"; fi

# 2. a template that does not compile: serve exits non-zero with the template's error
model "$tmp/broken" 'd["chat_template"] = "{% for m in messages %}{{ m.content }"'
start=$(date +%s)
serve "$tmp/broken.log" "$tmp/broken"
check "broken template: serve refuses to start" '[ -z "$pid" ] && [ "${rc:-0}" -ne 0 ]'
check "broken template: the template's own error is printed" 'grep -q "chat template does not parse" "$tmp/broken.log"'
check "broken template: the message names --no-chat-template" 'grep -q -- "--no-chat-template" "$tmp/broken.log"'
check "broken template: fails before loading weights" '[ $(( $(date +%s) - start )) -lt 30 ]'
stop

# 3. the same with --no-chat-template: completions only, and /health, /v1/models say so
if serve "$tmp/nochat.log" "$tmp/broken" --no-chat-template; then
    health=$(curl -s "http://127.0.0.1:$port/health")
    models=$(curl -s "http://127.0.0.1:$port/v1/models")
    comp=$(curl -s "http://127.0.0.1:$port/v1/completions" -H 'content-type: application/json' -d '{"prompt":"hi","max_tokens":2}')
    chat=$(curl -s -w ' %{http_code}' "http://127.0.0.1:$port/v1/chat/completions" -H 'content-type: application/json' \
           -d '{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}')
    check "--no-chat-template: /health says completions_only" '[[ "$health" == *completions_only* ]]'
    check "--no-chat-template: /v1/models says completions_only" '[[ "$models" == *completions_only* ]]'
    check "--no-chat-template: /v1/completions answers" '[[ "$comp" == *text_completion* ]]'
    check "--no-chat-template: chat is refused with the reason" '[[ "$chat" == *no-chat-template*" 400" ]]'
    stop
else check "--no-chat-template: serve starts" false; tail -5 "$tmp/nochat.log"; fi

# 4. a model without any template also needs the flag
model "$tmp/none" 'd.pop("chat_template")'
serve "$tmp/none.log" "$tmp/none"
check "no template: serve refuses to start" '[ -z "$pid" ] && [ "${rc:-0}" -ne 0 ] && grep -q "no chat template" "$tmp/none.log"'
stop
# 5. --chat-template: a file (replacing even a broken template of the model's), or the Jinja text
printf '%s' '{% for m in messages %}<<{{ m.role }}>>{{ m.content }}{% endfor %}' > "$tmp/mine.jinja"
for how in file inline; do
    arg="$tmp/mine.jinja"; [ $how = inline ] && arg=$(cat "$tmp/mine.jinja")
    if serve "$tmp/ct_$how.log" "$tmp/broken" --chat-template "$arg"; then
        n=$(curl -s "http://127.0.0.1:$port/v1/messages/count_tokens" -H 'content-type: application/json' \
            -d '{"messages":[{"role":"user","content":"hi there"}]}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["input_tokens"])')
        want=$(curl -s "http://127.0.0.1:$port/tokenize" -H 'content-type: application/json' \
            -d '{"prompt":"<<user>>hi there","add_special_tokens":false}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
        check "--chat-template ($how): the prompt is the given template's ($n tokens = $want)" '[ -n "$n" ] && [ "$n" = "$want" ]'
        stop
    else check "--chat-template ($how): serve starts" false; tail -5 "$tmp/ct_$how.log"; fi
done
serve "$tmp/ct_missing.log" "$tmp/broken" --chat-template "$tmp/no-such-template"
check "--chat-template of a missing file: serve refuses, naming it" '[ -z "$pid" ] && grep -q "no-such-template: no such file" "$tmp/ct_missing.log"'
stop
exit $fail
