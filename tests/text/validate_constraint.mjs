// Independent check of constrained-decoding outputs (written by test_constraint_walk):
// JSON Schema rows with ajv (draft 2020-12, ajv-formats), regex rows with RegExp (u flag, whole
// string), GBNF rows with their equivalent regex or, for the arithmetic grammar, a small parser.
// Usage: node tests/text/validate_constraint.mjs walks.jsonl   (exit 1 on any invalid output)
import { readFileSync } from "node:fs";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const ajv = new Ajv2020({ strict: false, allErrors: false, validateFormats: true });
addFormats(ajv);
const compiled = new Map();
const checkers = {
  // term (("+"|"-") term)*, term = 1-3 digits | "(" expr ")"
  gbnf_arith(s) {
    let i = 0;
    const expr = () => { if (!term()) return false; while (s[i] === "+" || s[i] === "-") { i++; if (!term()) return false; } return true; };
    const term = () => {
      if (s[i] === "(") { i++; if (!expr() || s[i] !== ")") return false; i++; return true; }
      const m = /^[0-9]{1,3}/.exec(s.slice(i)); if (!m) return false; i += m[0].length;
      return !/[0-9]/.test(s[i] ?? "");
    };
    return expr() && i === s.length;
  },
};

let n = 0, bad = 0;
const counts = {};
for (const line of readFileSync(process.argv[2], "utf8").split("\n")) {
  if (!line) continue;
  const row = JSON.parse(line);
  const name = row.entry.name;
  counts[row.kind] = (counts[row.kind] ?? 0) + 1;
  n++;
  let ok = false, why = "";
  try {
    if (row.kind === "schema") {
      let v = compiled.get(name);
      if (!v) {
        const schema = structuredClone(row.entry.schema);
        if (schema && typeof schema === "object") delete schema.$schema;   // draft-07 ids from zod
        v = ajv.compile(schema);
        compiled.set(name, v);
      }
      const value = JSON.parse(row.output);
      ok = v(value);
      if (!ok) why = ajv.errorsText(v.errors);
    } else if (checkers[name]) {
      ok = checkers[name](row.output);
    } else {
      ok = new RegExp(`^(?:${row.entry.regex})$`, "u").test(row.output);
    }
  } catch (e) {
    why = String(e.message ?? e);
  }
  if (!ok) {
    bad++;
    if (bad <= 20) console.error(`INVALID ${row.kind} ${name} seed ${row.seed}: ${why}\n  output: ${JSON.stringify(row.output).slice(0, 300)}`);
  }
}
console.log(`validated ${n} outputs (${Object.entries(counts).map(([k, c]) => `${c} ${k}`).join(", ")}): ${n - bad} valid, ${bad} invalid`);
process.exit(bad || !n ? 1 : 0);
