"""chatml.py: the Python side of the default model's chat format (no third-party modules).

render_segments(messages) gives the conversation as (text, train) pieces whose concatenation is
exactly what tools/chat_template.jinja renders for system/user/assistant messages without tools
(add_generation_prompt false); train is true for the assistant replies and their <|im_end|>,
the tokens the finishing pass puts loss on. As in Qwen3, assistant turns before the last user
message are rendered without a think block, the final one with an empty one.

Check against the template (needs jinja2):  python3 tools/chatml.py
"""
import json
import os

GEN_PROMPT = "<|im_start|>assistant\n<think>\n\n</think>\n\n"


def render_segments(messages):
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    segs = []
    for i, m in enumerate(messages):
        c = m["content"]
        if m["role"] == "system":
            segs.append((f"<|im_start|>system\n{c}<|im_end|>\n", False))
        elif m["role"] == "user":
            segs.append((f"<|im_start|>user\n{c}<|im_end|>\n", False))
        elif m["role"] == "assistant":
            if i > last_user and i == len(messages) - 1:
                segs.append((GEN_PROMPT, False))
            else:
                segs.append(("<|im_start|>assistant\n", False))
            segs.append((c.lstrip("\n") + "<|im_end|>", True))
            segs.append(("\n", False))
        else:
            raise ValueError(f"role {m['role']!r} not used in training data")
    return segs


def template_path():
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "chat_template.jinja")


def load_template():
    with open(template_path()) as f:
        return f.read().rstrip("\n")


def _hf_like_env():
    """A jinja2 environment set up as transformers sets up its chat-template one."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def _self_test():
    env = _hf_like_env()
    t = env.from_string(load_template())
    convs = [
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "A?"},
         {"role": "assistant", "content": "B."}, {"role": "user", "content": "C?"},
         {"role": "assistant", "content": "D."}],
    ]
    for c in convs:
        want = "".join(s for s, _ in render_segments(c))
        got = t.render(messages=c, add_generation_prompt=False)
        assert got == want, (got, want)
        gp = t.render(messages=c[:-1], add_generation_prompt=True, enable_thinking=False)
        assert gp == "".join(s for s, _ in render_segments(c[:-1])) + GEN_PROMPT, gp
    tools = [{"type": "function", "function": {"name": "get_time", "description": "Now.",
                                                "parameters": {"type": "object",
                                                               "properties": {}}}}]
    msgs = [{"role": "user", "content": "Time?"},
            {"role": "assistant", "content": "",
             "tool_calls": [{"type": "function",
                             "function": {"name": "get_time", "arguments": {"tz": "UTC"}}}]},
            {"role": "tool", "content": "12:00"},
            {"role": "assistant", "content": "<think>\nok\n</think>\n\nIt is 12:00."}]
    print(t.render(messages=msgs, tools=tools, add_generation_prompt=False))
    print(repr(t.render(messages=msgs[:1], add_generation_prompt=True)))
    print(repr(t.render(messages=msgs[:1], add_generation_prompt=True, enable_thinking=True)))
    print("template agrees with render_segments")


if __name__ == "__main__":
    _self_test()
