// Token ids of strings with characters newer than Debian 12's PCRE2 tables (Unicode 15.0: the 2022
// emoji, CJK Extension H, Kawi, Nag Mundari, Kaktovik numerals, ...), mostly after a space where
// the pre-tokenizer's \p{..} classes decide the split, made with @huggingface/tokenizers (the JS
// tokenizers of transformers.js: an implementation independent of HF's Rust one, on V8's current
// Unicode tables). Output: tests/text/golden/tok_unicode15.jsonl, one {"name", "t", "ids"} a line.
//
// --check first encodes tests/text/golden/tok_strings.jsonl and compares with the HF goldens
// (tok_<name>.jsonl), so a tokenizer on which the JS implementation itself differs from HF is
// reported (and skipped) rather than trusted.
//
// usage: bash tests/text/fetch_tokenizers.sh
//        (cd $TMP && npm install @huggingface/tokenizers@0.2.0)
//        NODE_PATH=$TMP/node_modules node tools/make_unicode_goldens.mjs [--check] build/tokenizers
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(process.env.NODE_PATH ? path.join(process.env.NODE_PATH, "x") : import.meta.url);
const { Tokenizer } = require("@huggingface/tokenizers");

const args = process.argv.slice(2);
const check = args.includes("--check");
const root = args.filter((a) => !a.startsWith("--"))[0] || "build/tokenizers";
const NAMES = ["deepseek_v3", "qwen3", "llama3", "gptoss", "gemma3", "llama2"];

const U15 = {
    shaking: "\u{1FAE8}", pink: "\u{1FA77}", moose: "\u{1FACE}", jelly: "\u{1FABC}", push: "\u{1FAF8}", wing: "\u{1FABD}",
    extH: "\u{31350}\u{31351}\u{3236A}", kawi: "\u{11F04}\u{11F05}\u{11F06}", kawiMark: "\u{11F00}", nagm: "\u{1E4D0}\u{1E4D1}",
    kaktovik: "\u{1D2C0}\u{1D2C1}", devaExt: "\u{11B00}", cyrExtD: "\u{1E030}", arabExtC: "\u{10EFD}",
};
const STRINGS = [
    `hi ${U15.shaking}`, ` ${U15.shaking}${U15.pink}`, `I ${U15.pink} you ${U15.moose}!`, `a ${U15.jelly}${U15.jelly} b`,
    `${U15.push} ${U15.wing}.`, `x ${U15.extH}`, ` ${U15.extH} 中文`, `text ${U15.extH}abc`, `word ${U15.kawi} word`,
    ` ${U15.kawiMark}${U15.kawi}`, `n ${U15.nagm}`, `count ${U15.kaktovik} 12`, `p ${U15.devaExt} q`,
    `c ${U15.cyrExtD}x`, `ar ${U15.arabExtC}`, `mix:${U15.shaking}1${U15.extH}a ${U15.kaktovik}!`,
    `  ${U15.pink}  ${U15.pink}\n${U15.moose}`, `"${U15.shaking}" (${U15.extH})`, `${U15.extH}${U15.shaking}${U15.kaktovik}`,
    `x\u00a0${U15.shaking}`, ` ${U15.shaking}\u{1F3FD}`, `abc${U15.pink}def ghi`,
];

function load(name) {
    const dir = path.join(root, name);
    const tj = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
    const tc = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8").replace(/: *(\d{17,})/g, ': "$1"'));
    return new Tokenizer(tj, tc);
}
const enc = (tk, t) => tk.encode(t, { add_special_tokens: false }).ids;

const out = [];
for (const name of NAMES) {
    let tk;
    try { tk = load(name); } catch (e) { console.error(`${name}: cannot load (${e.message})`); continue; }
    if (check) {
        const strs = fs.readFileSync("tests/text/golden/tok_strings.jsonl", "utf8").trim().split("\n").map((l) => JSON.parse(l).t);
        const gold = fs.readFileSync(`tests/text/golden/tok_${name}.jsonl`, "utf8").trim().split("\n").slice(1)
            .map((l) => JSON.parse(l)).filter((g) => g.ids);
        let bad = 0;
        for (let i = 0; i < strs.length && i < gold.length; i++)
            if (JSON.stringify(enc(tk, strs[i])) !== JSON.stringify(gold[i].ids)) bad++;
        console.error(`${name}: @huggingface/tokenizers differs from the HF goldens on ${bad}/${strs.length} strings`);
        if (bad) continue;
    }
    for (const t of STRINGS) out.push(JSON.stringify({ name, t, ids: enc(tk, t) }));
}
const dst = "tests/text/golden/tok_unicode15.jsonl";
fs.writeFileSync(dst, out.join("\n") + "\n");
console.error(`${dst}: ${out.length} strings`);
