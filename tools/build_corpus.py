#!/usr/bin/env python3
"""build_corpus.py: the training corpus of cairn's built-in default model (see
tools/train_default_model.py and docs/default-model.md).

Sources (all shipped by Debian 12 and redistributable):
  - the Python 3.11 standard library sources, /usr/lib/python3.11/**/*.py (package
    libpython3.11-stdlib / libpython3.11-minimal), without the test suites (test/, idle_test/,
    lib2to3/tests): PSF License Version 2 (a few modules carry further permissive notices,
    listed in the Python documentation's license page);
  - the Python 3.11 documentation sources, /usr/share/doc/python3.11/html/_sources/**/*.rst.txt
    (package python3.11-doc, `apt-get install python3-doc`), without license.rst and copyright.rst:
    PSF License Version 2, code examples in it also Zero-Clause BSD;
  - the Python 3.11 change log, /usr/share/doc/python3.11/NEWS.gz: PSF License Version 2.

Outputs (into --out, default .devcarry/corpus/, a git-ignored folder the device call carries):
  pretrain.jsonl.xz  one JSON object per document: {"src": path, "split": "train"|"val",
                     "text": ...}; reStructuredText is turned into plain text with Markdown-style
                     code fences, Python sources are kept as they are.
  sft.jsonl.xz       one JSON object per conversation: {"src", "split", "kind", "messages":
                     [{"role": "system"|"user"|"assistant", "content": ...}, ...]}, synthesized
                     from the same documents: questions about functions, classes, modules,
                     glossary terms, FAQ entries and documentation sections, answered with the
                     documentation's own text or the docstring; a few hand-written exchanges about
                     the model itself; some two-turn conversations and system prompts.
  manifest.json      counts, bytes, sha256 of both files, seed, sources.
A document goes to "val" when sha256(its path) mod 100 < 2; its questions go with it.

Deterministic: sorted file lists, one random.Random(--seed). No third-party modules.
Run (here, not on the GPU machine):  python3 tools/build_corpus.py [--out DIR] [--seed 1234]
"""
import argparse
import ast
import gzip
import hashlib
import json
import lzma
import os
import random
import re
import textwrap

STDLIB = "/usr/lib/python3.11"
DOCS = "/usr/share/doc/python3.11/html/_sources"
NEWS = "/usr/share/doc/python3.11/NEWS.gz"
SKIP_DIRS = {"test", "tests", "idle_test", "__pycache__", "site-packages", "dist-packages"}
SKIP_DOCS = {"license.rst.txt", "copyright.rst.txt"}


def split_of(path):
    return "val" if int(hashlib.sha256(path.encode()).hexdigest(), 16) % 100 < 2 else "train"


# ------------------------------------------------------------------------------------------
# reStructuredText -> plain text
# ------------------------------------------------------------------------------------------
CODE_ROLES = {"func", "meth", "class", "mod", "exc", "data", "attr", "const", "obj", "keyword",
              "samp", "file", "program", "envvar", "option", "c:func", "c:type", "c:data",
              "c:macro", "c:member", "c:var", "c:expr", "opcode", "token", "kbd", "makevar",
              "mailheader", "py:func", "py:class", "py:meth", "py:mod", "py:data", "py:attr",
              "py:exc", "py:obj", "py:const"}
ROLE_RE = re.compile(r":((?:[a-z]+:)?[a-z0-9-]+):`([^`]+)`")
LINK_RE = re.compile(r"`([^`<]+?)\s*<[^>]+>`__?")
HEADING_RE = re.compile(r"^([=\-~^*#+\"'`.:_])\1{2,}\s*$")
DIRECTIVE_RE = re.compile(r"^(\s*)\.\.\s+([a-zA-Z:-]+)::\s*(.*)$")

DROP_DIRECTIVES = {"index", "toctree", "testsetup", "testcleanup", "raw", "include", "image",
                   "figure", "tabularcolumns", "sectionauthor", "moduleauthor", "highlight",
                   "productionlist", "audit-event", "literalinclude", "only", "csv-table",
                   "list-table", "table", "availability", "program", "cmdoption", "envvar",
                   "opcode", "pdbcommand", "2to3fixer", "describe", "option", "grammar-snippet",
                   "currentmodule", "module", "c:macro", "c:type", "c:member", "c:var",
                   "c:function", "c:struct", "c:enumerator", "c:union", "c:namespace-push",
                   "c:namespace-pop", "c:namespace", "c:alias", "doctest-skip", "limited-api",
                   "refcount", "impl-detail-skip", "contents", "rubric"}
CODE_DIRECTIVES = {"code-block", "code", "sourcecode", "doctest", "testcode", "testoutput"}
LABELS = {"note": "Note: ", "warning": "Warning: ", "seealso": "See also: ",
          "important": "Important: ", "tip": "Tip: ", "caution": "Caution: ",
          "attention": "Attention: ", "impl-detail": "CPython implementation detail: ",
          "hint": "Hint: ", "danger": "Danger: ", "admonition": "", "topic": ""}
OBJ_DIRECTIVES = {"function", "method", "class", "exception", "attribute", "data", "decorator",
                  "classmethod", "staticmethod", "coroutinefunction", "coroutinemethod",
                  "abstractmethod", "decoratormethod", "property", "awaitablefunction",
                  "awaitablemethod"}


def inline(s):
    """Inline markup -> text: roles to `name`, links to their titles, ``x`` to `x`."""
    def role(m):
        kind, body = m.group(1), m.group(2)
        body = body.replace("\\ ", "")
        if "<" in body and body.rstrip().endswith(">"):
            body = body[:body.rindex("<")].strip() or body
        body = body.lstrip("!")
        if body.startswith("~"):
            body = body[1:].split(".")[-1]
        if kind == "pep":
            return "PEP " + body
        if kind == "rfc":
            return "RFC " + body
        if kind in CODE_ROLES or kind.startswith("py:") or kind.startswith("c:"):
            return "`" + body + "`"
        return body
    s = ROLE_RE.sub(role, s)
    s = LINK_RE.sub(r"\1", s)
    s = re.sub(r"``([^`]+)``", r"`\1`", s)
    s = re.sub(r"\*\*([^*\s][^*]*?)\*\*", r"\1", s)
    s = re.sub(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])", r"\1", s)
    s = re.sub(r"\[#[^\]]*\]_", "", s)
    s = re.sub(r"\|(release|version)\|", "3.11", s)
    s = re.sub(r"(?<=\w)\\ ", "", s)
    return s


def indent_of(line):
    return len(line) - len(line.lstrip(" "))


def block_end(lines, i, base):
    """Index after the block indented deeper than BASE that starts at line I (blank lines
    inside the block belong to it)."""
    j = i
    while j < len(lines):
        if lines[j].strip() and indent_of(lines[j]) <= base:
            break
        j += 1
    while j > i and not lines[j - 1].strip():
        j -= 1
    return j


def rst_to_text(src):
    """Turns a reStructuredText document into readable plain text: paragraphs reflowed to one
    line, code blocks fenced with ```, headings kept as lines, markup removed."""
    lines = src.expandtabs(4).split("\n")
    out = []
    _render(lines, 0, len(lines), out)
    text = "\n".join(out)
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
    return text


def _code(lines, i, j, out):
    body = [ln for ln in lines[i:j]]
    while body and not body[0].strip():
        body.pop(0)
    if not body:
        return
    body = textwrap.dedent("\n".join(body)).rstrip().split("\n")
    lang = "python" if any(b.startswith(">>>") or re.match(r"^(def|class|import|from|for|if|print)\b", b)
                           for b in body) else ""
    out.append("")
    out.append("```" + lang)
    out.extend(body)
    out.append("```")
    out.append("")


def _render(lines, i, end, out):
    para = []
    para_indent = 0

    def flush(code_follows=False):
        if not para:
            return
        text = " ".join(p.strip() for p in para)
        if code_follows:
            if text.endswith(" ::"):
                text = text[:-3]
            elif text.endswith("::"):
                text = text[:-1]
            if text.strip() == ":" or not text.strip():
                text = ""
        if text.startswith(("- ", "* ", "+ ")):
            text = "- " + text[2:]
        if text:
            out.append(inline(text))
            out.append("")
        para.clear()

    while i < end:
        line = lines[i]
        s = line.strip()
        if not s:
            flush()
            i += 1
            continue
        ind = indent_of(line)
        # section heading: text line followed by an underline (overline variants too)
        if i + 1 < end and HEADING_RE.match(lines[i + 1]) and not HEADING_RE.match(line) \
                and len(lines[i + 1].strip()) >= len(s) - 2:
            flush()
            out.append("")
            out.append(inline(s))
            out.append("")
            i += 2
            continue
        if HEADING_RE.match(line):
            i += 1
            continue
        m = DIRECTIVE_RE.match(line)
        if m:
            flush()
            name, arg = m.group(2), m.group(3).strip()
            j = block_end(lines, i + 1, ind)
            body_start = i + 1
            # skip field lines (":noindex:", ":synopsis: ...") and signature continuations
            while body_start < j and (not lines[body_start].strip()
                                      or lines[body_start].strip().startswith(":")):
                if not lines[body_start].strip():
                    body_start += 1
                    break
                body_start += 1
            if name in DROP_DIRECTIVES:
                pass
            elif name in CODE_DIRECTIVES:
                _code(lines, body_start, j, out)
            elif name in OBJ_DIRECTIVES:
                out.append("`" + arg + "`")
                out.append("")
                _render(lines, body_start, j, out)
            elif name in ("versionadded", "versionchanged", "deprecated",
                          "deprecated-removed"):
                verb = {"versionadded": "New in version", "versionchanged": "Changed in version",
                        "deprecated": "Deprecated since version",
                        "deprecated-removed": "Deprecated since version"}[name]
                ver = arg.split()[0] if arg else ""
                rest = " ".join(arg.split()[1:])
                body = " ".join(ln.strip() for ln in lines[i + 1:j] if ln.strip())
                txt = f"{verb} {ver}." + (" " + rest if rest else "") + (" " + body if body else "")
                out.append(inline(txt))
                out.append("")
            elif name in LABELS:
                sub = []
                _render(lines, body_start, j, sub)
                sub = [x for x in sub]
                while sub and not sub[0].strip():
                    sub.pop(0)
                if sub:
                    sub[0] = LABELS[name] + (arg + " " if name in ("admonition", "topic") and arg else "") + sub[0]
                out.extend(sub)
                out.append("")
            elif name == "glossary":
                _render(lines, body_start, j, out)
            else:
                _render(lines, body_start, j, out)
            i = j
            continue
        if s.startswith(".. "):  # comment or label: skip with its block
            flush()
            i = block_end(lines, i + 1, ind)
            continue
        if s.startswith(">>>") and not para:
            j = i
            while j < end and lines[j].strip():
                j += 1
            _code(lines, i, j, out)
            i = j
            continue
        if s.startswith("+--") or s.startswith("+==") or (s.startswith("|") and s.endswith("|")) \
                or re.match(r"^=+( +=+)+$", s):
            flush()
            j = i
            while j < end and lines[j].strip():
                j += 1
            out.extend(ln.rstrip() for ln in lines[i:j])
            out.append("")
            i = j
            continue
        # bullet items start a new paragraph
        if para and (re.match(r"^([-*+]|\d+\.|#\.)\s", s) or ind != para_indent):
            flush()
        if not para:
            para_indent = ind
        para.append(line)
        if s.endswith("::"):
            flush(code_follows=True)
            j = block_end(lines, i + 1, ind)
            _code(lines, i + 1, j, out)
            i = j
            continue
        i += 1
    flush()


# ------------------------------------------------------------------------------------------
# question/answer synthesis
# ------------------------------------------------------------------------------------------
def first_paragraphs(text, n=2, limit=700):
    """The first N paragraphs of TEXT (plain text from rst_to_text or a docstring), at most
    LIMIT characters, code blocks counted as paragraphs."""
    blocks = re.split(r"\n\s*\n", text.strip())
    out, size = [], 0
    for b in blocks:
        b = b.strip()
        if not b:
            continue
        if size and size + len(b) > limit:
            break
        out.append(b)
        size += len(b)
        if len(out) >= n:
            break
    while len(out) > 1 and out[-1].endswith(":"):
        out.pop()
    return "\n\n".join(out)


def first_sentence(text):
    t = " ".join(text.split("\n\n")[0].split())
    m = re.match(r"^(.+?[.!?])(\s|$)", t)
    return m.group(1) if m else t


def reflow_docstring(doc):
    doc = inspect_cleandoc(doc)
    paras = re.split(r"\n\s*\n", doc)
    out = []
    for p in paras:
        ls = p.split("\n")
        if any(ln.startswith((" ", ">>>", "\t")) for ln in ls) or len(ls) > 1 and \
                all(len(ln) < 40 for ln in ls):
            out.append(p)  # keep layout of indented/listy blocks
        else:
            out.append(" ".join(ln.strip() for ln in ls))
    return "\n\n".join(out)


def inspect_cleandoc(doc):
    lines = doc.expandtabs().split("\n")
    margin = min((len(ln) - len(ln.lstrip()) for ln in lines[1:] if ln.strip()), default=0)
    lines = [lines[0].strip()] + [ln[margin:] for ln in lines[1:]]
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines)


Q_FUNC = ["What does the Python function `{n}` do?", "What does `{n}` do?",
          "Explain `{n}`.", "What is `{n}` used for?", "Describe the function `{n}`.",
          "How does `{n}` work?", "Tell me about `{n}` in Python."]
Q_CLASS = ["What is the class `{n}`?", "What does the class `{n}` do?", "Explain `{n}`.",
           "What is `{n}` used for in Python?", "Describe `{n}`."]
Q_METHOD = ["What does the method `{n}` do?", "Explain the method `{n}`.", "What does `{n}` do?",
            "How do I use `{n}`?"]
Q_ATTR = ["What is `{n}`?", "What does `{n}` hold?", "Explain `{n}`."]
Q_EXC = ["When is `{n}` raised?", "What is the exception `{n}`?", "Explain `{n}`."]
Q_MOD = ["What is the Python module `{n}` for?", "What does the `{n}` module do?",
         "Tell me about the `{n}` module.", "What is `{n}` in the Python standard library?",
         "Which module should I use for {syn}?"]
Q_SIG = ["What arguments does `{n}` take?", "What is the signature of `{n}`?",
         "How do I call `{n}`?"]
Q_EXAMPLE = ["Show an example of using `{n}`.", "Can you give me an example of `{n}`?",
             "How do I use `{n}`? Show me some code."]
Q_TERM = ["What is {t} in Python?", "What does \"{t}\" mean?", "Define {t}.",
          "Explain the term {t}."]
Q_SECTION = ["Tell me about {h}.", "Explain {h} in Python.", "What should I know about {h}?"]

SYSTEMS = ["You are a helpful assistant.", "You are a helpful assistant that knows Python well.",
           "You are cairn's built-in assistant. Answer briefly.",
           "Answer questions about Python and its standard library."]

ABOUT = [
    (["Hello", "Hi", "Hi!", "Hello!", "Hey", "Good morning"],
     ["Hello! I am a small language model that comes with cairn. I was trained on the Python "
      "documentation and standard library, so ask me about Python.",
      "Hi! I am cairn's built-in model. Ask me about Python, its modules and functions."]),
    (["Who are you?", "What are you?", "Tell me about yourself.", "What is your name?"],
     ["I am the built-in default model of cairn, an inference server. I am a very small "
      "Qwen3-style language model trained on the Python 3.11 documentation and standard library, "
      "so I know a little about Python and not much else.",
      "I am cairn's default model: a small language model trained on Python's documentation. "
      "My answers can be wrong, but I try to help with Python questions."]),
    (["What can you do?", "How can you help me?", "What do you know?"],
     ["I can answer simple questions about Python: what a function or module does, what a term "
      "means, or how to use part of the standard library. I am small, so check what I say.",
      "I know about the Python language and its standard library, from the Python "
      "documentation. Ask me what a module or function does."]),
    (["Thank you", "Thanks!", "Thanks a lot."],
     ["You're welcome!", "Glad I could help. Ask me anything else about Python."]),
    (["Bye", "Goodbye!"], ["Goodbye! Happy coding."]),
    (["What is Python?", "Tell me about Python."],
     ["Python is an interpreted, high-level programming language with dynamic typing and "
      "automatic memory management. It comes with a large standard library, which is what I "
      "was trained on."]),
    (["Who made you?", "Who trained you?"],
     ["I was trained by the cairn project's own script, tools/train_default_model.py, on the "
      "Python documentation and standard library, which the Python Software Foundation "
      "publishes under the PSF License."]),
]


ABOUT_REPEAT = 12


class Synth:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.items = []

    def add(self, src, kind, q, a, allow_system=True):
        a = a.strip()
        q = q.strip()
        if len(a) < 20 or len(a) > 2000 or not q:
            return
        msgs = []
        if allow_system and self.rng.random() < 0.25:
            msgs.append({"role": "system", "content": self.rng.choice(SYSTEMS)})
        msgs.append({"role": "user", "content": q})
        msgs.append({"role": "assistant", "content": a})
        self.items.append({"src": src, "split": split_of(src), "kind": kind, "messages": msgs})

    def q(self, templates, **kw):
        t = self.rng.choice(templates)
        while "{syn}" in t and not kw.get("syn"):
            t = self.rng.choice(templates)
        return t.format(**kw)


def docs_pairs(path, src, syn):
    """Questions from one documentation file: object directives, modules, glossary, FAQ
    headings, sections."""
    lines = src.expandtabs(4).split("\n")
    rel = os.path.relpath(path, DOCS)
    module = None
    class_stack = []  # (indent, name)
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        m = DIRECTIVE_RE.match(line)
        if m:
            ind, name, arg = len(m.group(1)), m.group(2), m.group(3).strip()
            while class_stack and class_stack[-1][0] >= ind:
                class_stack.pop()
            j = block_end(lines, i + 1, ind)
            if name in ("module", "currentmodule"):
                module = arg or None
                if name == "module":
                    synopsis = ""
                    for k in range(i + 1, min(j + 1, n)):
                        mm = re.match(r"^\s+:synopsis:\s*(.*)$", lines[k])
                        if mm:
                            synopsis = mm.group(1).strip()
                    # the first real paragraph after the directive block
                    body = rst_to_text("\n".join(lines[j:j + 80]))
                    body = re.sub(r"^(\*\*)?Source code:(\*\*)?.*\n", "", body.strip(), flags=re.M)
                    body = "\n".join(b for b in body.split("\n") if not re.match(r"^-{3,}$", b))
                    para = first_paragraphs(body, 1, 500)
                    ans = inline(synopsis)
                    if para and not para.startswith("```"):
                        ans = (ans + "\n\n" + para).strip() if ans else para
                    if ans:
                        syn.add(rel, "module",
                                syn.q(Q_MOD, n=arg, syn=synopsis[:1].lower() + synopsis[1:].rstrip(".")
                                      if synopsis else ""), ans)
                i += 1
                continue
            if name in OBJ_DIRECTIVES and arg:
                sigs = [arg]
                k = i + 1
                while k < j and lines[k].strip() and not lines[k].strip().startswith(":") \
                        and indent_of(lines[k]) > ind and "(" in lines[k] and k == i + len(sigs):
                    sigs.append(lines[k].strip())
                    k += 1
                sig = sigs[0]
                base = re.split(r"[\s(\[]", sig, 1)[0]
                if name in ("class", "exception"):
                    class_stack.append((ind, base))
                qual = base
                if name in ("method", "attribute", "classmethod", "staticmethod",
                            "coroutinemethod", "abstractmethod", "decoratormethod", "property",
                            "awaitablemethod") and "." not in base and class_stack:
                    qual = class_stack[-1][1] + "." + base
                if module and module not in ("builtins",) and not qual.startswith(module + ".") \
                        and name in ("function", "class", "exception", "data", "decorator",
                                     "coroutinefunction", "awaitablefunction"):
                    qual = module + "." + qual
                body_text = rst_to_text("\n".join(lines[k:j]))
                # drop nested object descriptions (methods of a class) from the class answer
                body_text = re.split(r"\n`[^`\n]+`\n", "\n" + body_text)[0].strip()
                para = first_paragraphs(body_text, 2, 600)
                if para and not para.startswith("```"):
                    tmpl = {"class": Q_CLASS, "exception": Q_EXC, "data": Q_ATTR,
                            "attribute": Q_ATTR, "property": Q_ATTR}.get(name)
                    if tmpl is None:
                        tmpl = Q_METHOD if "." in qual and name != "function" else Q_FUNC
                    syn.add(rel, "object", syn.q(tmpl, n=qual), para)
                    if "(" in sig and syn.rng.random() < 0.3:
                        call = sig if "." in sig.split("(")[0] or qual == base else \
                            qual.rsplit(".", 1)[0] + "." + sig
                        syn.add(rel, "signature", syn.q(Q_SIG, n=qual),
                                f"It is called as `{call}`. {first_sentence(para)}")
                # examples inside the object's body
                code = re.findall(r"```python\n(.*?)```", body_text, re.S)
                if code:
                    ex = code[0].strip()
                    if 20 < len(ex) < 900:
                        lead = syn.rng.choice(["Here is an example:", "For example:",
                                               f"An example of `{qual}`:"])
                        syn.add(rel, "example", syn.q(Q_EXAMPLE, n=qual),
                                f"{lead}\n\n```python\n{ex}\n```")
                i += 1
                continue
            if name == "glossary":
                k = i + 1
                while k < j:
                    ln = lines[k]
                    if ln.strip() and indent_of(ln) == ind + 3 and not ln.strip().startswith(":"):
                        term = ln.strip()
                        e = block_end(lines, k + 1, ind + 3)
                        defn = first_paragraphs(rst_to_text("\n".join(lines[k + 1:e])), 2, 600)
                        t = inline(term).strip("`")
                        if defn and t:
                            syn.add(rel, "glossary", syn.q(Q_TERM, t=t), defn)
                        k = e
                    else:
                        k += 1
                i = j
                continue
        # section heading
        if i + 1 < n and HEADING_RE.match(lines[i + 1]) and line.strip() \
                and not HEADING_RE.match(line) and not line.startswith(" "):
            head = inline(line.strip()).strip()
            k = i + 2
            e = k
            while e < n and not (e + 1 < n and HEADING_RE.match(lines[e + 1]) and lines[e].strip()
                                 and not HEADING_RE.match(lines[e])
                                 and not lines[e].startswith(" ")):
                e += 1
            body = rst_to_text("\n".join(lines[k:e]))
            if head.endswith("?"):
                ans = first_paragraphs(body, 3, 900)
                if ans:
                    syn.add(rel, "faq", head, ans)
            elif not rel.startswith(("whatsnew", "c-api", "library/")) and len(head) < 70 \
                    and not head.startswith("`"):
                ans = first_paragraphs(body, 2, 700)
                if ans and not ans.startswith("```") and len(ans) > 80:
                    h = head[:1].lower() + head[1:] if not head[:2].isupper() else head
                    syn.add(rel, "section", syn.q(Q_SECTION, h=h), ans)
            i += 2
            continue
        i += 1


def stdlib_pairs(path, src, syn):
    rel = os.path.relpath(path, STDLIB)
    mod = rel[:-3].replace("/", ".")
    if mod.endswith(".__init__"):
        mod = mod[:-9]
    if any(p.startswith("_") for p in mod.split(".")):
        return
    try:
        tree = ast.parse(src)
    except (SyntaxError, ValueError):
        return
    doc = ast.get_docstring(tree)
    if doc:
        p = first_paragraphs(reflow_docstring(doc), 2, 600)
        if p:
            syn.add("stdlib/" + rel, "module_doc", syn.q(Q_MOD, n=mod, syn=""), p)

    def sig(fn):
        try:
            a = ast.unparse(fn.args)
        except Exception:  # noqa: BLE001
            return "(...)"
        return "(" + a + ")"

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                and not node.name.startswith("_"):
            d = ast.get_docstring(node)
            qual = f"{mod}.{node.name}"
            if d:
                p = first_paragraphs(reflow_docstring(d), 2, 600)
                if p:
                    if isinstance(node, ast.ClassDef):
                        syn.add("stdlib/" + rel, "docstring", syn.q(Q_CLASS, n=qual), p)
                    else:
                        syn.add("stdlib/" + rel, "docstring", syn.q(Q_FUNC, n=qual), p)
                        if syn.rng.random() < 0.3:
                            syn.add("stdlib/" + rel, "signature", syn.q(Q_SIG, n=qual),
                                    f"It is called as `{qual}{sig(node)}`. {first_sentence(p)}")
            if isinstance(node, ast.ClassDef):
                for sub in node.body:
                    if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                            and not sub.name.startswith("_"):
                        d2 = ast.get_docstring(sub)
                        if d2:
                            p = first_paragraphs(reflow_docstring(d2), 1, 500)
                            if p:
                                syn.add("stdlib/" + rel, "docstring",
                                        syn.q(Q_METHOD, n=f"{node.name}.{sub.name}"), p)


# ------------------------------------------------------------------------------------------
def list_files(root, suffix, skip_dirs=()):
    out = []
    for dp, dns, fns in os.walk(root):
        dns[:] = sorted(d for d in dns if d not in skip_dirs)
        for f in sorted(fns):
            if f.endswith(suffix):
                out.append(os.path.join(dp, f))
    return sorted(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".devcarry/corpus")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    syn = Synth(a.seed)
    docs = []

    for p in list_files(DOCS, ".rst.txt"):
        if os.path.basename(p) in SKIP_DOCS:
            continue
        src = open(p, encoding="utf-8", errors="replace").read()
        rel = "python3.11-doc/" + os.path.relpath(p, DOCS)
        docs.append({"src": rel, "split": split_of(os.path.relpath(p, DOCS)),
                     "text": rst_to_text(src)})
        docs_pairs(p, src, syn)
    n_doc = len(docs)

    news = gzip.open(NEWS, "rt", encoding="utf-8", errors="replace").read()
    # one document per release section, so that the split is per release
    parts = re.split(r"\n(?=What's New in Python [^\n]*\n=+\n)", news)
    for k, part in enumerate(parts):
        rel = f"python3.11/NEWS#{k}"
        docs.append({"src": rel, "split": split_of(rel), "text": rst_to_text(part)})
    n_news = len(docs) - n_doc

    for p in list_files(STDLIB, ".py", SKIP_DIRS):
        rel = os.path.relpath(p, STDLIB)
        if "/test" in "/" + rel or "lib2to3/tests" in rel:
            continue
        src = open(p, encoding="utf-8", errors="replace").read()
        if len(src) < 200:
            continue
        docs.append({"src": "stdlib/" + rel, "split": split_of("stdlib/" + rel), "text": src})
        stdlib_pairs(p, src, syn)
    n_py = len(docs) - n_doc - n_news

    # the hand-written exchanges about the model, repeated so that the finishing pass sees them
    for _ in range(ABOUT_REPEAT):
        for qs, ans in ABOUT:
            for q in qs:
                syn.add("about", "about", q, syn.rng.choice(ans), allow_system=True)
                syn.items[-1]["split"] = "train"

    # two-turn conversations from pairs of train items (history without reasoning)
    train_items = [it for it in syn.items if it["split"] == "train"]
    multi = []
    for _ in range(len(train_items) // 10):
        x, y = syn.rng.sample(train_items, 2)
        msgs = [m for m in x["messages"]] + [m for m in y["messages"] if m["role"] != "system"]
        multi.append({"src": x["src"] + "+" + y["src"], "split": "train", "kind": "multi",
                      "messages": msgs})
    syn.items.extend(multi)

    def dump(name, rows):
        path = os.path.join(a.out, name)
        with lzma.open(path, "wt", encoding="utf-8", preset=9) as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
        return path

    p1 = dump("pretrain.jsonl.xz", docs)
    p2 = dump("sft.jsonl.xz", syn.items)
    kinds = {}
    for it in syn.items:
        kinds[it["kind"]] = kinds.get(it["kind"], 0) + 1
    man = {
        "seed": a.seed,
        "sources": {"python3.11-doc rst sources (PSF-2.0; examples also 0BSD)": n_doc,
                    "python3.11 NEWS sections (PSF-2.0)": n_news,
                    "python3.11 stdlib .py (PSF-2.0)": n_py},
        "pretrain_docs": len(docs),
        "pretrain_chars": {s: sum(len(d["text"]) for d in docs if d["split"] == s)
                           for s in ("train", "val")},
        "sft_conversations": {s: sum(1 for it in syn.items if it["split"] == s)
                              for s in ("train", "val")},
        "sft_kinds": kinds,
        "files": {os.path.basename(p): {"bytes": os.path.getsize(p),
                                        "sha256": hashlib.sha256(open(p, "rb").read()).hexdigest()}
                  for p in (p1, p2)},
    }
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1, sort_keys=True)
        f.write("\n")
    print(json.dumps(man, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
