#!/usr/bin/env python3
"""Writes the constrained-decoding test corpus (run from the repo root; output is committed):
  tests/text/schemas/valid.jsonl    {"name", "schema"}: schemas the engine must compile; every random
                                    walk under them must validate with ajv (tests/text/run_constraint.sh)
  tests/text/schemas/invalid.jsonl  {"name", "schema", "error"}: must fail to compile, with `error` in the message
  tests/text/schemas/regex.jsonl    {"name", "regex"} or {"name", "gbnf", "regex"}: walks must match the regex
                                    (node RegExp, u flag, whole string); a gbnf entry is checked against its regex
Keyword coverage is generated (each primitive schema alone, as a required property and as array items);
real-world schemas (agent CLI tools, OpenAI/pydantic/zod output) are written out below."""
import json, os

HERE = os.path.dirname(os.path.abspath(__file__))
valid, invalid, regex = [], [], []

def V(name, schema): valid.append({"name": name, "schema": schema})
def I(name, schema, error): invalid.append({"name": name, "schema": schema, "error": error})

# ---- primitives covering each keyword ----
prims = {
    "string": {"type": "string"},
    "string_min3": {"type": "string", "minLength": 3},
    "string_max4": {"type": "string", "maxLength": 4},
    "string_len2_5": {"type": "string", "minLength": 2, "maxLength": 5},
    "string_len0": {"type": "string", "maxLength": 0},
    "string_len7": {"type": "string", "minLength": 7, "maxLength": 7},
    "pattern_code": {"type": "string", "pattern": "^[A-Z]{3}-\\d{3}$"},
    "pattern_phone": {"type": "string", "pattern": "^\\+?[0-9 ]{7,15}$"},
    "pattern_unanchored": {"type": "string", "pattern": "abc"},
    "pattern_alt_plus": {"type": "string", "pattern": "^(foo|bar)+$"},
    "pattern_digit_anywhere": {"type": "string", "pattern": "\\d"},
    "pattern_email_like": {"type": "string", "pattern": "^[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$"},
    "pattern_dot": {"type": "string", "pattern": "^.{2,4}$"},
    "pattern_quote_backslash": {"type": "string", "pattern": "^[\"\\\\a]{1,6}$"},
    "pattern_start_only": {"type": "string", "pattern": "^v\\d+"},
    "pattern_end_only": {"type": "string", "pattern": "\\.py$"},
    "pattern_unicode": {"type": "string", "pattern": "^[α-ω]+\\s[^\\x00-\\x7F]?$"},
    "pattern_catastrophic": {"type": "string", "pattern": "^(a+)+b$"},
    "pattern_lazy_groups": {"type": "string", "pattern": "^(?:x*?|y{2,})(?<n>z)?$"},
    "pattern_controls": {"type": "string", "pattern": "^[\\n\\t\\x01]{1,3}$"},
    "format_date": {"type": "string", "format": "date"},
    "format_time": {"type": "string", "format": "time"},
    "format_date_time": {"type": "string", "format": "date-time"},
    "format_uuid": {"type": "string", "format": "uuid"},
    "format_ipv4": {"type": "string", "format": "ipv4"},
    "format_email": {"type": "string", "format": "email"},
    "format_uri": {"type": "string", "format": "uri"},
    "integer": {"type": "integer"},
    "int_min0": {"type": "integer", "minimum": 0},
    "int_max10": {"type": "integer", "maximum": 10},
    "int_1_100": {"type": "integer", "minimum": 1, "maximum": 100},
    "int_neg": {"type": "integer", "minimum": -50, "maximum": -3},
    "int_around0": {"type": "integer", "minimum": -1000, "maximum": 1000},
    "int_excl": {"type": "integer", "exclusiveMinimum": 5, "exclusiveMaximum": 9},
    "int_single": {"type": "integer", "minimum": 7, "maximum": 7},
    "int_odd_range": {"type": "integer", "minimum": 99, "maximum": 1234},
    "int_big": {"type": "integer", "minimum": 0, "maximum": 1000000000000},
    "int_frac_bounds": {"type": "integer", "minimum": 0.5, "maximum": 3.5},
    "int_multiple1": {"type": "integer", "multipleOf": 1},
    "number": {"type": "number"},
    "num_0_1": {"type": "number", "minimum": 0, "maximum": 1},
    "num_m1_1": {"type": "number", "minimum": -1, "maximum": 1},
    "num_pos": {"type": "number", "exclusiveMinimum": 0},
    "num_frac": {"type": "number", "minimum": 1.5, "maximum": 10.2},
    "num_neg": {"type": "number", "minimum": -100, "maximum": -10},
    "num_temp": {"type": "number", "minimum": 0, "maximum": 2},
    "boolean": {"type": "boolean"},
    "null": {"type": "null"},
    "string_or_null": {"type": ["string", "null"]},
    "int_or_string": {"type": ["integer", "string"], "maxLength": 3, "minimum": 0},
    "enum_str": {"enum": ["red", "green", "blue"]},
    "enum_typed": {"type": "string", "enum": ["a", "b", 3]},
    "enum_mixed": {"enum": [1, "one", None, True, 2.5, [1, 2], {"k": "v"}]},
    "enum_escapes": {"enum": ["quote\"d", "back\\slash", "new\nline", "tab\t", "unicodé ☃", "emoji 😀", "</script>"]},
    "const_str": {"const": "fixed"},
    "const_obj": {"const": {"a": [1, {"b": None}]}},
    "const_num": {"const": 42},
    "any": {},
    "true": True,
    "anyof_types": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "integer"}, {"type": "null"}]},
    "oneof_types": {"oneOf": [{"type": "boolean"}, {"type": "array", "items": {"type": "integer"}, "maxItems": 3}]},
    "allof_single": {"allOf": [{"type": "string", "minLength": 1}]},
    "implied_object": {"properties": {"x": {"type": "integer"}}, "required": ["x"]},
    "implied_array": {"items": {"type": "boolean"}, "maxItems": 2},
    "implied_string": {"maxLength": 2},
    "implied_number": {"minimum": 3, "maximum": 4},
}
for k, s in prims.items():
    V("prim_" + k, s)
    V("prop_" + k, {"type": "object", "properties": {"v": s}, "required": ["v"], "additionalProperties": False})
    V("items_" + k, {"type": "array", "items": s, "minItems": 1, "maxItems": 3})

# ---- objects ----
V("obj_empty_closed", {"type": "object", "additionalProperties": False})
V("obj_any", {"type": "object"})
V("obj_optional_only", {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {"type": "boolean"}}})
V("obj_mixed_required", {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {"type": "boolean"}, "d": {"type": "null"}}, "required": ["b", "d"], "additionalProperties": False})
V("obj_addl_true", {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"], "additionalProperties": True})
V("obj_addl_schema", {"type": "object", "properties": {"id": {"type": "integer"}, "idx": {"type": "string"}}, "additionalProperties": {"type": "number"}})
V("obj_addl_only", {"type": "object", "additionalProperties": {"type": "string", "maxLength": 3}})
V("obj_required_not_listed", {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a", "b"]})
V("obj_nested", {"type": "object", "properties": {"user": {"type": "object", "properties": {"name": {"type": "string"}, "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "^\\d{5}$"}}, "required": ["city", "zip"], "additionalProperties": False}}, "required": ["name", "address"], "additionalProperties": False}}, "required": ["user"], "additionalProperties": False})
V("obj_weird_keys", {"type": "object", "properties": {"with space": {"type": "integer"}, "quo\"te": {"type": "boolean"}, "ünï": {"type": "null"}, "": {"type": "string"}}, "required": ["with space", "quo\"te", "ünï", ""], "additionalProperties": False})
V("obj_weird_keys_open", {"type": "object", "properties": {"quo\"te": {"type": "boolean"}, "a\\b": {"type": "null"}, "tab\tkey": {"type": "integer"}, "ab": {"type": "integer"}, "abc": {"type": "integer"}, "é": {"type": "null"}}, "additionalProperties": {"type": "integer", "maximum": 5}})
V("obj_many_props", {"type": "object", "properties": {f"p{i}": {"type": ["integer", "string", "boolean"][i % 3]} for i in range(30)}, "required": [f"p{i}" for i in range(0, 30, 2)], "additionalProperties": False})
V("obj_types_list", {"type": ["object", "null"], "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": False})
# ---- arrays ----
V("arr_any", {"type": "array"})
V("arr_min2", {"type": "array", "items": {"type": "integer"}, "minItems": 2})
V("arr_exact3", {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 3})
V("arr_empty_only", {"type": "array", "maxItems": 0})
V("arr_prefix_closed", {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}, {"type": "boolean"}], "items": False})
V("arr_prefix_closed_min2", {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}, {"type": "boolean"}], "items": False, "minItems": 2})
V("arr_prefix_then_items", {"type": "array", "prefixItems": [{"const": "head"}], "items": {"type": "number"}, "minItems": 3, "maxItems": 5})
V("arr_prefix_open", {"type": "array", "prefixItems": [{"type": "null"}, {"type": "boolean"}]})
V("arr_prefix_max1", {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "integer"}], "maxItems": 1})
V("arr_nested", {"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "maxItems": 4}, "maxItems": 4})
V("arr_of_objects", {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}, "v": {"type": "integer"}}, "required": ["k"], "additionalProperties": False}})
# ---- composition and references ----
V("anyof_objects", {"anyOf": [{"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"], "additionalProperties": False}, {"type": "object", "properties": {"street": {"type": "string"}, "number": {"type": "integer"}}, "required": ["street"], "additionalProperties": False}]})
V("oneof_discriminated", {"oneOf": [
    {"type": "object", "properties": {"kind": {"const": "circle"}, "r": {"type": "number", "minimum": 0}}, "required": ["kind", "r"], "additionalProperties": False},
    {"type": "object", "properties": {"kind": {"const": "rect"}, "w": {"type": "number"}, "h": {"type": "number"}}, "required": ["kind", "w", "h"], "additionalProperties": False}]})
V("oneof_closed_keys", {"oneOf": [
    {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": False},
    {"type": "object", "properties": {"b": {"type": "integer"}}, "required": ["b"], "additionalProperties": False}]})
V("oneof_enums", {"oneOf": [{"enum": ["x", "y"]}, {"enum": ["z", 1]}]})
V("ref_defs", {"$defs": {"pos": {"type": "integer", "minimum": 1}}, "type": "object", "properties": {"a": {"$ref": "#/$defs/pos"}, "b": {"$ref": "#/$defs/pos"}}, "required": ["a", "b"], "additionalProperties": False})
V("ref_definitions", {"definitions": {"s": {"type": "string", "maxLength": 8}}, "type": "array", "items": {"$ref": "#/definitions/s"}})
V("ref_pointer_escape", {"$defs": {"a/b": {"type": "boolean"}, "c~d": {"type": "null"}}, "type": "array", "prefixItems": [{"$ref": "#/$defs/a~1b"}, {"$ref": "#/$defs/c~0d"}], "items": False, "minItems": 2})
V("ref_into_properties", {"type": "object", "properties": {"x": {"type": "integer", "maximum": 3}, "y": {"$ref": "#/properties/x"}}, "required": ["x", "y"], "additionalProperties": False})
V("ref_recursive_tree", {"$defs": {"node": {"type": "object", "properties": {"value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 3}}, "required": ["value", "children"], "additionalProperties": False}}, "$ref": "#/$defs/node"})
V("ref_linked_list", {"$defs": {"list": {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"head": {"type": "string"}, "tail": {"$ref": "#/$defs/list"}}, "required": ["head", "tail"], "additionalProperties": False}]}}, "$ref": "#/$defs/list"})
V("ref_root_recursion", {"type": "object", "properties": {"name": {"type": "string"}, "sub": {"type": "array", "items": {"$ref": "#"}}}, "required": ["name", "sub"], "additionalProperties": False})
V("ref_mutual", {"$defs": {"a": {"type": "object", "properties": {"b": {"anyOf": [{"$ref": "#/$defs/b"}, {"type": "null"}]}}, "required": ["b"], "additionalProperties": False}, "b": {"type": "array", "items": {"$ref": "#/$defs/a"}, "maxItems": 2}}, "$ref": "#/$defs/a"})
V("ref_with_annotations", {"$defs": {"c": {"enum": ["r", "g"]}}, "type": "object", "properties": {"c": {"$ref": "#/$defs/c", "description": "a color", "title": "C"}}, "required": ["c"], "additionalProperties": False})
V("json_object_mode", {"type": "object", "additionalProperties": True})

# ---- real-world: agent CLI tools (input_schema of their tools) ----
V("claude_code_bash", {"type": "object", "properties": {
    "command": {"type": "string", "description": "The command to execute"},
    "timeout": {"type": "number", "description": "Optional timeout in milliseconds (max 600000)", "maximum": 600000},
    "description": {"type": "string", "description": "Clear, concise description of what this command does in 5-10 words"},
    "run_in_background": {"type": "boolean"}},
    "required": ["command"], "additionalProperties": False, "$schema": "http://json-schema.org/draft-07/schema#"})
V("claude_code_read", {"type": "object", "properties": {"file_path": {"type": "string"}, "offset": {"type": "number"}, "limit": {"type": "number"}}, "required": ["file_path"], "additionalProperties": False, "$schema": "http://json-schema.org/draft-07/schema#"})
V("claude_code_write", {"type": "object", "properties": {"file_path": {"type": "string"}, "content": {"type": "string"}}, "required": ["file_path", "content"], "additionalProperties": False})
V("claude_code_edit", {"type": "object", "properties": {"file_path": {"type": "string"}, "old_string": {"type": "string"}, "new_string": {"type": "string"}, "replace_all": {"type": "boolean", "default": False}}, "required": ["file_path", "old_string", "new_string"], "additionalProperties": False})
V("claude_code_multiedit", {"type": "object", "properties": {"file_path": {"type": "string"}, "edits": {"type": "array", "items": {"type": "object", "properties": {"old_string": {"type": "string"}, "new_string": {"type": "string"}, "replace_all": {"type": "boolean"}}, "required": ["old_string", "new_string"], "additionalProperties": False}, "minItems": 1}}, "required": ["file_path", "edits"], "additionalProperties": False})
V("claude_code_glob", {"type": "object", "properties": {"pattern": {"type": "string"}, "path": {"type": "string"}}, "required": ["pattern"], "additionalProperties": False})
V("claude_code_grep", {"type": "object", "properties": {
    "pattern": {"type": "string"}, "path": {"type": "string"}, "glob": {"type": "string"},
    "output_mode": {"type": "string", "enum": ["content", "files_with_matches", "count"]},
    "-B": {"type": "number"}, "-A": {"type": "number"}, "-C": {"type": "number"}, "-n": {"type": "boolean"}, "-i": {"type": "boolean"},
    "type": {"type": "string"}, "head_limit": {"type": "number"}, "multiline": {"type": "boolean"}},
    "required": ["pattern"], "additionalProperties": False})
V("claude_code_todowrite", {"type": "object", "properties": {"todos": {"type": "array", "items": {"type": "object", "properties": {
    "content": {"type": "string", "minLength": 1}, "status": {"type": "string", "enum": ["pending", "in_progress", "completed"]},
    "activeForm": {"type": "string", "minLength": 1}}, "required": ["content", "status", "activeForm"], "additionalProperties": False}}},
    "required": ["todos"], "additionalProperties": False})
V("claude_code_webfetch", {"type": "object", "properties": {"url": {"type": "string", "format": "uri"}, "prompt": {"type": "string"}}, "required": ["url", "prompt"], "additionalProperties": False})
V("claude_code_websearch", {"type": "object", "properties": {"query": {"type": "string", "minLength": 2}, "allowed_domains": {"type": "array", "items": {"type": "string"}}, "blocked_domains": {"type": "array", "items": {"type": "string"}}}, "required": ["query"], "additionalProperties": False})
V("claude_code_task", {"type": "object", "properties": {"description": {"type": "string"}, "prompt": {"type": "string"}, "subagent_type": {"type": "string"}}, "required": ["description", "prompt", "subagent_type"], "additionalProperties": False})
V("codex_shell", {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}, "workdir": {"type": "string"}, "timeout_ms": {"type": "number"}, "with_escalated_permissions": {"type": "boolean"}, "justification": {"type": "string"}}, "required": ["command"], "additionalProperties": False})
V("codex_apply_patch", {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"], "additionalProperties": False})
V("codex_update_plan", {"type": "object", "properties": {"explanation": {"type": "string"}, "plan": {"type": "array", "items": {"type": "object", "properties": {"step": {"type": "string"}, "status": {"type": "string", "enum": ["pending", "in_progress", "completed"]}}, "required": ["step", "status"], "additionalProperties": False}}}, "required": ["plan"], "additionalProperties": False})
V("codex_view_image", {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"], "additionalProperties": False})
# ---- real-world: OpenAI structured outputs guide / SDK ----
V("openai_math_reasoning", {"type": "object", "properties": {"steps": {"type": "array", "items": {"type": "object", "properties": {"explanation": {"type": "string"}, "output": {"type": "string"}}, "required": ["explanation", "output"], "additionalProperties": False}}, "final_answer": {"type": "string"}}, "required": ["steps", "final_answer"], "additionalProperties": False})
V("openai_calendar_event", {"type": "object", "properties": {"name": {"type": "string"}, "date": {"type": "string"}, "participants": {"type": "array", "items": {"type": "string"}}}, "required": ["name", "date", "participants"], "additionalProperties": False})
V("openai_ui_recursive", {"type": "object", "properties": {"type": {"type": "string", "enum": ["div", "button", "header", "section", "field", "form"]}, "label": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#"}}, "attributes": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "value": {"type": "string"}}, "required": ["name", "value"], "additionalProperties": False}}}, "required": ["type", "label", "children", "attributes"], "additionalProperties": False})
V("openai_linked_list", {"type": "object", "properties": {"linked_list": {"$ref": "#/$defs/linked_list_node"}}, "$defs": {"linked_list_node": {"type": "object", "properties": {"value": {"type": "number"}, "next": {"anyOf": [{"$ref": "#/$defs/linked_list_node"}, {"type": "null"}]}}, "additionalProperties": False, "required": ["next", "value"]}}, "additionalProperties": False, "required": ["linked_list"]})
V("openai_anyof_user_address", {"type": "object", "properties": {"item": {"anyOf": [
    {"type": "object", "description": "The user object to insert into the database", "properties": {"name": {"type": "string"}, "age": {"type": "number"}}, "additionalProperties": False, "required": ["name", "age"]},
    {"type": "object", "description": "The address object to insert into the database", "properties": {"number": {"type": "string"}, "street": {"type": "string"}, "city": {"type": "string"}}, "additionalProperties": False, "required": ["number", "street", "city"]}]}},
    "additionalProperties": False, "required": ["item"]})
V("openai_moderation", {"type": "object", "properties": {"is_violating": {"type": "boolean"}, "category": {"type": ["string", "null"], "enum": ["violence", "sexual", "self_harm", None]}, "explanation_if_violating": {"type": ["string", "null"]}}, "required": ["is_violating", "category", "explanation_if_violating"], "additionalProperties": False})
V("openai_research_paper", {"type": "object", "properties": {"title": {"type": "string"}, "authors": {"type": "array", "items": {"type": "string"}}, "abstract": {"type": "string"}, "keywords": {"type": "array", "items": {"type": "string"}}}, "required": ["title", "authors", "abstract", "keywords"], "additionalProperties": False})
V("openai_get_weather", {"type": "object", "properties": {"location": {"type": "string", "description": "City and country e.g. Bogotá, Colombia"}, "units": {"type": ["string", "null"], "enum": ["celsius", "fahrenheit"]}}, "required": ["location", "units"], "additionalProperties": False})
V("openai_agents_output", {"type": "object", "properties": {"response": {"type": "string"}, "confidence": {"type": "number", "minimum": 0, "maximum": 1}, "sources": {"type": "array", "items": {"type": "object", "properties": {"url": {"type": "string"}, "title": {"type": "string"}}, "required": ["url", "title"], "additionalProperties": False}}}, "required": ["response", "confidence", "sources"], "additionalProperties": False})
# ---- real-world: pydantic model_json_schema / zod-to-json-schema / LangChain ----
V("pydantic_optional_defs", {"$defs": {"Color": {"enum": ["red", "green", "blue"], "title": "Color", "type": "string"}, "Pet": {"properties": {"name": {"title": "Name", "type": "string"}, "age": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None, "title": "Age"}}, "required": ["name"], "title": "Pet", "type": "object"}},
    "properties": {"owner": {"title": "Owner", "type": "string"}, "favorite": {"$ref": "#/$defs/Color"}, "pets": {"items": {"$ref": "#/$defs/Pet"}, "title": "Pets", "type": "array"}, "nickname": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "Nickname"}},
    "required": ["owner", "favorite", "pets"], "title": "Person", "type": "object"})
V("pydantic_allof_ref", {"$defs": {"Unit": {"enum": ["kg", "lb"], "type": "string"}}, "properties": {"weight": {"type": "number"}, "unit": {"allOf": [{"$ref": "#/$defs/Unit"}], "description": "unit"}}, "required": ["weight", "unit"], "type": "object"})
V("pydantic_literal_bool", {"properties": {"ok": {"const": True, "title": "Ok", "type": "boolean"}, "code": {"enum": [200, 201, 204], "title": "Code", "type": "integer"}}, "required": ["ok", "code"], "title": "Resp", "type": "object"})
V("pydantic_date_fields", {"properties": {"day": {"format": "date", "type": "string"}, "at": {"format": "date-time", "type": "string"}, "id": {"format": "uuid", "type": "string"}}, "required": ["day", "at", "id"], "type": "object"})
V("pydantic_constrained", {"properties": {"name": {"maxLength": 10, "minLength": 1, "type": "string"}, "score": {"exclusiveMinimum": 0, "maximum": 100, "type": "number"}, "count": {"minimum": 0, "type": "integer"}, "tags": {"items": {"type": "string"}, "maxItems": 5, "type": "array"}}, "required": ["name", "score", "count", "tags"], "type": "object"})
V("pydantic_discriminated_union", {"$defs": {"Cat": {"properties": {"pet_type": {"const": "cat", "title": "Pet Type", "type": "string"}, "meows": {"title": "Meows", "type": "integer"}}, "required": ["pet_type", "meows"], "title": "Cat", "type": "object"},
    "Dog": {"properties": {"pet_type": {"const": "dog", "title": "Pet Type", "type": "string"}, "barks": {"title": "Barks", "type": "number"}}, "required": ["pet_type", "barks"], "title": "Dog", "type": "object"}},
    "properties": {"pet": {"discriminator": {"mapping": {"cat": "#/$defs/Cat", "dog": "#/$defs/Dog"}, "propertyName": "pet_type"}, "oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}], "title": "Pet"}, "n": {"title": "N", "type": "integer"}},
    "required": ["pet", "n"], "title": "Model", "type": "object"})
V("zod_object", {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "number"}, "email": {"type": "string", "format": "email"}, "role": {"type": "string", "enum": ["admin", "user"]}}, "required": ["name", "age", "email", "role"], "additionalProperties": False, "$schema": "http://json-schema.org/draft-07/schema#"})
V("zod_nullable_union", {"type": "object", "properties": {"value": {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]}, "list": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "boolean"}]}}}, "required": ["value", "list"], "additionalProperties": False})
V("zod_recipe", {"type": "object", "properties": {"recipe": {"type": "object", "properties": {"name": {"type": "string"}, "ingredients": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "amount": {"type": "string"}}, "required": ["name", "amount"], "additionalProperties": False}}, "steps": {"type": "array", "items": {"type": "string"}}}, "required": ["name", "ingredients", "steps"], "additionalProperties": False}}, "required": ["recipe"], "additionalProperties": False})
V("langchain_joke", {"title": "Joke", "description": "Joke to tell user.", "type": "object", "properties": {"setup": {"title": "Setup", "description": "The setup of the joke", "type": "string"}, "punchline": {"title": "Punchline", "description": "The punchline to the joke", "type": "string"}, "rating": {"title": "Rating", "description": "How funny the joke is, from 1 to 10", "type": "integer"}}, "required": ["setup", "punchline"]})
V("langchain_people", {"$defs": {"Person": {"properties": {"name": {"anyOf": [{"type": "string"}, {"type": "null"}]}, "hair_color": {"anyOf": [{"type": "string"}, {"type": "null"}]}, "height_in_meters": {"anyOf": [{"type": "string"}, {"type": "null"}]}}, "required": ["name", "hair_color", "height_in_meters"], "type": "object"}}, "properties": {"people": {"items": {"$ref": "#/$defs/Person"}, "type": "array"}}, "required": ["people"], "type": "object"})
V("mcp_tool_filesystem", {"type": "object", "properties": {"path": {"type": "string"}, "edits": {"type": "array", "items": {"type": "object", "properties": {"oldText": {"type": "string"}, "newText": {"type": "string"}}, "required": ["oldText", "newText"], "additionalProperties": False}}, "dryRun": {"type": "boolean", "default": False}}, "required": ["path", "edits"], "additionalProperties": False})
V("deep_nesting_ok", json.loads('{"type":"object","properties":{"a":' * 20 + '{"type":"integer"}' + ',"b":{"type":"null"}},"required":["a"],"additionalProperties":false}' * 20))

# ---- must fail, naming the cause ----
I("kw_pattern_properties", {"type": "object", "patternProperties": {"^x": {"type": "string"}}}, "patternProperties")
I("kw_unique_items", {"type": "array", "uniqueItems": True}, "uniqueItems")
I("kw_contains", {"type": "array", "contains": {"type": "integer"}}, "contains")
I("kw_allof_two", {"allOf": [{"type": "string"}, {"maxLength": 3}]}, "allOf")
I("kw_not", {"not": {"type": "string"}}, "'not'")
I("kw_if_then", {"if": {"type": "string"}, "then": {"maxLength": 2}}, "'if'")
I("kw_min_properties", {"type": "object", "minProperties": 1}, "minProperties")
I("kw_multiple_of", {"type": "integer", "multipleOf": 3}, "multipleOf")
I("kw_property_names", {"type": "object", "propertyNames": {"pattern": "^a"}}, "propertyNames")
I("kw_dependent_required", {"type": "object", "dependentRequired": {"a": ["b"]}}, "dependentRequired")
I("kw_unknown", {"type": "string", "x-custom-thing": 1}, "x-custom-thing")
I("kw_nullable_openapi", {"type": "string", "nullable": True}, "nullable")
I("format_hostname", {"type": "string", "format": "hostname"}, "hostname")
I("pattern_and_length", {"type": "string", "pattern": "^a+$", "maxLength": 3}, "maxLength")
I("pattern_lookahead", {"type": "string", "pattern": "^(?=a)a$"}, "lookaround")
I("pattern_backref", {"type": "string", "pattern": "^(a)\\1$"}, "backreference")
I("pattern_word_boundary", {"type": "string", "pattern": "\\bword\\b"}, "word boundary")
I("pattern_syntax", {"type": "string", "pattern": "^(ab$"}, "missing ')'")
I("pattern_mid_anchor", {"type": "string", "pattern": "a^b"}, "anchor")
I("oneof_overlap", {"oneOf": [{"type": "string"}, {"type": "string", "maxLength": 3}]}, "oneOf")
I("ref_external", {"$ref": "https://example.com/schema.json"}, "does not resolve")
I("ref_missing", {"$ref": "#/$defs/nope"}, "does not resolve")
I("ref_sibling", {"$defs": {"a": {"type": "string"}}, "$ref": "#/$defs/a", "maxLength": 3}, "beside '$ref'")
I("recursion_no_base", {"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}, "required": ["next"], "additionalProperties": False}}, "$ref": "#/$defs/n"}, "no finite output")
I("schema_false", False, "matches nothing")
I("prop_false", {"type": "object", "properties": {"a": False}, "required": ["a"]}, "matches nothing")
I("contradict_int_bounds", {"type": "integer", "minimum": 5, "maximum": 4}, "no integer")
I("contradict_lengths", {"type": "string", "minLength": 5, "maxLength": 2}, "maxLength below minLength")
I("contradict_items", {"type": "array", "prefixItems": [{"type": "integer"}], "items": False, "minItems": 2}, "minItems exceeds")
I("contradict_required_closed", {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["b"], "additionalProperties": False}, "forbidden")
I("enum_type_mismatch", {"type": "integer", "enum": ["a", "b"]}, "no enum/const value")
I("enum_with_min_length", {"enum": ["a"], "minLength": 3}, "beside enum")
I("type_unknown", {"type": "str"}, "unknown type")
I("items_tuple_draft7", {"type": "array", "items": [{"type": "string"}]}, "array-valued 'items'")
I("number_bounds_narrow", {"type": "number", "minimum": 0.1, "maximum": 0.2}, "narrower")
I("huge_length", {"type": "string", "maxLength": 10000000}, "100000")
I("deep_nesting", json.loads('{"type":"array","items":' * 300 + '{"type":"null"}' + '}' * 300), "deeper than")
I("huge_repeat", {"type": "array", "items": {"type": "string", "minLength": 90000}, "minItems": 90000}, "over 1 GB")
I("not_json_schema", [1, 2], "must be an object")

# ---- regexes (whole-output match) and GBNF grammars with an equivalent regex ----
for n, r in [("digits", "[0-9]{3,6}"), ("ident", "[A-Za-z_][A-Za-z0-9_]{0,15}"), ("alt", "(yes|no|maybe)"),
             ("phone", "\\(\\d{3}\\) \\d{3}-\\d{4}"), ("semver", "v?(0|[1-9]\\d*)\\.(0|[1-9]\\d*)\\.(0|[1-9]\\d*)"),
             ("ipv4", "((25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)\\.){3}(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)"),
             ("dot_star_end", "a.*z"), ("unicode_class", "[à-ÿ]+ [^a-z\\s]{2}"), ("escapes", "\\t\\x41\\u00e9\\u{1F600}"),
             ("negated_shorthand", "\\D\\W\\S"), ("nested_quant", "((ab)?c+){2,3}"), ("empty_alt", "a(|b)c"),
             ("catastrophic", "(a|aa)+(b|c)*"), ("url_path", "https://[a-z]{3,8}\\.com(/[a-z0-9]{1,5}){0,3}"),
             ("json_ish", "\\{\"k\":\\s?(true|false|null|-?\\d+)\\}"), ("dates", "\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\\d|3[01])"),
             ("lazy", "x+?y*?z??"), ("hex", "0x[0-9a-fA-F]{1,8}"), ("words", "(\\w+ ){1,4}\\w+\\."), ("any_short", ".{0,12}")]:
    regex.append({"name": "re_" + n, "regex": r})
for n, g, r in [("json_bool_list", 'root ::= "[" (b ("," b)*)? "]"\nb ::= "true" | "false"\n', "\\[((true|false)(,(true|false))*)?\\]"),
                ("arith", 'root ::= term (("+" | "-") term)*\nterm ::= num | "(" root ")"\nnum ::= [0-9]{1,3}\n', None),
                ("kv_lines", 'root ::= line{1,4}\nline ::= [a-z]+ "=" [0-9]+ "\\n"\n', "([a-z]+=[0-9]+\\n){1,4}"),
                ("unicode", 'root ::= [α-ω]{2} "→" [^\\x00-\\x7F]?\n', "[α-ω]{2}→[^\\x00-\\x7F]?"),
                ("any_dot", 'root ::= "<" .{1,5} ">"\n', "<[\\s\\S]{1,5}>"),
                ("continuation", 'root ::= "a"\n  | "b" x\n  | "c"\nx ::= "1"? # trailing comment\n', "a|b1?|c")]:
    e = {"name": "gbnf_" + n, "gbnf": g}
    if r: e["regex"] = r
    regex.append(e)

for fn, rows in [("valid.jsonl", valid), ("invalid.jsonl", invalid), ("regex.jsonl", regex)]:
    with open(os.path.join(HERE, fn), "w") as f:
        for row in rows: f.write(json.dumps(row, ensure_ascii=False) + "\n")
print(len(valid), "valid,", len(invalid), "invalid,", len(regex), "regex/gbnf")
