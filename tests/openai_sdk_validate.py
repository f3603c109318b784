"""Validates recorded OpenAI Realtime (GA) or GPT-Live events with the models of OpenAI's Python SDK.

usage: openai_sdk_validate.py realtime|live GATEWAY_TO_SERVER.jsonl SERVER_TO_GATEWAY.jsonl

`realtime`: every line of the first file must be a valid openai.types.realtime.RealtimeClientEvent
member, every line of the second a valid RealtimeServerEvent. `live`: openai.types.live.ClientEvent
and ServerEvent. The SDK itself never validates events and its models accept anything
(reference/ai-legs.md §5), so the check here is strict:
  - the line's `type` picks the union member whose `type` Literal names it; an unknown type fails;
  - that model validates the line with strict=True (no "1500" for 1500, no 1500.0 for an int);
  - nested unions (items, formats, tools, ...) resolve on their own `type`/`role` Literals, and any
    field the chosen model does not define is an error at any depth (the SDK models are
    extra="allow"), as is any value the model does not carry back unchanged;
  - free-form fields are checked separately: JSON Schemas (tool `parameters`, `output_schema`,
    `input_schema`, `schema`) for unknown keywords and shape, and GPT-Live `response.event.event`
    as an openai.types.responses.ResponseStreamEvent member, the same strict way;
  - JSON itself: one object per line, no duplicate keys, no NaN/Infinity.
Errors name the file, line, event type and JSON path of the offending field. Exit 0 when all valid,
1 when not, 2 on usage errors. Run by scripts/openai-sdk-check inside a virtualenv with `openai`.
"""

import json
import sys
import types
import typing

import pydantic
from openai.types.live import ClientEvent as LiveClientEvent
from openai.types.live import ServerEvent as LiveServerEvent
from openai.types.live.response_event import ResponseEvent as LiveResponseEvent
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from openai.types.responses import ResponseStreamEvent

APIS = {
    "realtime": (RealtimeClientEvent, RealtimeServerEvent),
    "live": (LiveClientEvent, LiveServerEvent),
}

# Model fields that hold a JSON Schema (wire names).
SCHEMA_FIELDS = {"parameters", "output_schema", "input_schema", "schema"}

SCHEMA_KEYWORDS = {
    "$schema", "$id", "$ref", "$defs", "$comment", "$anchor", "$dynamicRef", "$dynamicAnchor",
    "definitions", "type", "properties", "required", "additionalProperties", "patternProperties",
    "propertyNames", "minProperties", "maxProperties", "items", "prefixItems", "additionalItems",
    "contains", "minContains", "maxContains", "minItems", "maxItems", "uniqueItems", "enum",
    "const", "default", "description", "title", "examples", "format", "pattern", "minLength",
    "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "anyOf", "oneOf", "allOf", "not", "if", "then", "else", "dependentRequired",
    "dependentSchemas", "unevaluatedProperties", "unevaluatedItems", "readOnly", "writeOnly",
    "deprecated", "contentEncoding", "contentMediaType", "contentSchema",
}
SCHEMA_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}
SCHEMA_MAPS = {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
SCHEMA_ONE = {
    "additionalProperties", "propertyNames", "contains", "not", "if", "then", "else",
    "unevaluatedProperties", "unevaluatedItems", "additionalItems", "contentSchema",
}
SCHEMA_LISTS = {"anyOf", "oneOf", "allOf", "prefixItems"}


def union_members(union):
    if typing.get_origin(union) is typing.Annotated:
        union = typing.get_args(union)[0]
    return typing.get_args(union)


def strip_optional(ann):
    args = typing.get_args(ann)
    if typing.get_origin(ann) is typing.Union and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return ann


def literal_values(ann):
    ann = strip_optional(ann)
    if typing.get_origin(ann) is typing.Literal:
        return set(typing.get_args(ann))
    return None


def type_map(union):
    """`type` value -> model class, from each union member's `type` Literal."""
    found = {}
    for cls in union_members(union):
        values = literal_values(cls.model_fields["type"].annotation)
        if not values:
            raise SystemExit(f"{cls.__name__}: `type` is not a Literal in this SDK version")
        for value in values:
            if value in found:
                raise SystemExit(f"type {value!r} names both {found[value].__name__} and {cls.__name__}")
            found[value] = cls
    return found


def reachable_models(classes):
    """Every pydantic model reachable from `classes` through field annotations, by class name."""
    by_name, stack, seen = {}, list(classes), set()

    def collect(ann):
        if is_model(ann):
            stack.append(ann)
            return
        for arg in typing.get_args(ann):
            if not isinstance(arg, (str, int, float, bool, bytes)) and arg is not None:
                collect(arg)

    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        by_name.setdefault(cls.__name__, []).append(cls)
        for field in cls.model_fields.values():
            collect(field.annotation)
    return by_name


# Fields that pick a member of a nested union (in this order); other Literal fields are ordinary
# values whose errors are reported as such.
DISCRIMINATORS = ("type", "role")


def discriminator_mismatch(cls, raw):
    """The first discriminator field whose value `cls` does not allow, or None."""
    for key in DISCRIMINATORS:
        field = cls.model_fields.get(key)
        values = literal_values(field.annotation) if field is not None else None
        if values is not None and key in raw and raw[key] not in values:
            return key
    return None


def is_model(ann):
    return isinstance(ann, type) and issubclass(ann, pydantic.BaseModel)


def flatten(ann):
    """The members of a (possibly Annotated/Optional) union annotation."""
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return flatten(typing.get_args(ann)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(ann) for m in flatten(a)]
    return [ann]


def wire_name(name, field):
    return field.alias or name


def jpath(parts):
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def json_kind(value):
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "other"


class Checker:
    def __init__(self, union):
        self.types = type_map(union)
        self.models = reachable_models(self.types.values())
        self.stream = None  # ResponseStreamEvent checker, for GPT-Live response.event

    # ---- union-branch noise filtering for pydantic errors ----------------------------------

    def tag_kind(self, tag, raw):
        """What JSON kind a pydantic union tag (the loc element naming a member) accepts, and
        whether a model tag is plausible for `raw` (its Literal fields match)."""
        if tag in self.models:
            if not isinstance(raw, dict):
                return "object", False
            return "object", any(not discriminator_mismatch(cls, raw) for cls in self.models[tag])
        t = tag.split("[", 1)[0]
        kind = {
            "str": "string", "literal": "string", "int": "number", "float": "number",
            "bool": "boolean", "none": "null", "list": "array", "dict": "object",
            "model": "object", "typed-dict": "object",
        }.get(t, "other")
        if t == "literal" and not tag.startswith("literal['"):
            kind = "other"
        return kind, True

    def explain(self, exc, raw):
        """Turns a pydantic ValidationError into (json path, message) pairs, dropping the errors
        of union members that the value's own `type`/`role` (or JSON kind) rules out."""
        entries = []
        for err in exc.errors(include_url=False):
            loc, cur, parts, tags = err["loc"], raw, [], []
            for i, el in enumerate(loc):
                last = i == len(loc) - 1
                if isinstance(cur, dict) and isinstance(el, str) and (el in cur or (last and err["type"] == "missing")):
                    parts.append(el)
                    cur = cur.get(el)
                elif isinstance(cur, list) and isinstance(el, int) and 0 <= el < len(cur):
                    parts.append(el)
                    cur = cur[el]
                else:
                    kind, plausible = self.tag_kind(str(el), cur)
                    tags.append((tuple(parts), str(el), kind, plausible, json_kind(cur), cur))
            entries.append((parts, tags, err))
        # Per union position: the tags that suit the value there.
        suits = {}
        for _, tags, _ in entries:
            for pos, tag, kind, plausible, raw_kind, _ in tags:
                s = suits.setdefault(pos, {"kind": False, "model": False})
                if kind == raw_kind:
                    s["kind"] = True
                    if raw_kind == "object" and tag in self.models and plausible:
                        s["model"] = True
        kept, unresolved = [], {}
        for parts, tags, err in entries:
            drop = False
            for pos, tag, kind, plausible, raw_kind, cur in tags:
                s = suits[pos]
                if s["kind"] and kind != raw_kind:
                    drop = True
                elif raw_kind == "object" and tag in self.models and not plausible:
                    drop = True
                    if not s["model"]:
                        unresolved.setdefault(pos, (cur, set()))[1].add(tag)
                elif raw_kind == "object" and s["model"] and tag not in self.models:
                    drop = True
            if not drop:
                kept.append((parts, err))
        out = []
        for pos, (cur, tags) in unresolved.items():
            classes = [cls for tag in tags for cls in self.models[tag]]
            # Report the first discriminator that no member allows, with the values allowed
            # among the members that accept the ones before it.
            for key in DISCRIMINATORS:
                allowed = set()
                for cls in classes:
                    field = cls.model_fields.get(key)
                    allowed |= (literal_values(field.annotation) or set()) if field is not None else set()
                if key in cur and allowed and cur[key] not in allowed:
                    out.append((jpath(list(pos) + [key]),
                                f"{key} {cur[key]!r} is not one the SDK allows here "
                                f"({', '.join(sorted(map(str, allowed)))})"))
                    break
                classes = [c for c in classes if discriminator_mismatch(c, {key: cur.get(key)} if key in cur else {}) is None]
            else:
                out.append((jpath(pos), f"matches no SDK model here ({', '.join(sorted(tags))})"))
        for parts, err in kept:
            msg = err["msg"]
            if err["type"] == "missing":
                stray = self.undefined_keys(raw, parts[:-1])
                if stray:
                    msg += f"; fields here the SDK model does not define: {', '.join(map(repr, stray))}"
            else:
                msg += f" [got {json.dumps(err['input'])[:80]}]"
            out.append((jpath(parts), msg))
        if not out:
            # Filtering must never turn a rejection into a pass: fall back to pydantic's own list.
            out = [(jpath([p for p in e["loc"]]), e["msg"]) for e in exc.errors(include_url=False)]
        # Same path and message through several branches: report once.
        return list(dict.fromkeys(out))

    def undefined_keys(self, raw, parts):
        """Keys of the object at `parts` that the model there does not define (for a missing
        field, so that a misspelling is named next to it). Follows field annotations from the
        event's class, picking union members by their discriminators."""
        anns, cur = [self.types[raw["type"]]], raw
        for part in parts:
            nxt = []
            for shape in (s for a in anns for s in flatten(a)):
                origin = typing.get_origin(shape)
                if isinstance(part, int) and origin in (list, tuple):
                    nxt += typing.get_args(shape)[:1]
                elif isinstance(part, str) and origin is dict:
                    nxt += typing.get_args(shape)[1:2]
                elif isinstance(part, str) and is_model(shape) and isinstance(cur, dict):
                    if discriminator_mismatch(shape, cur) is None:
                        nxt += [f.annotation for n, f in shape.model_fields.items() if wire_name(n, f) == part]
            anns, cur = nxt, cur[part]
        if not isinstance(cur, dict):
            return []
        models = [s for a in anns for s in flatten(a) if is_model(s) and discriminator_mismatch(s, cur) is None]
        if not models:
            return []
        defined = {wire_name(n, f) for m in models for n, f in m.model_fields.items()}
        return [k for k in cur if k not in defined]

    # ---- strictness beyond pydantic ---------------------------------------------------------

    def walk(self, value, raw, parts, problems):
        """Fields no model defines, values the model did not keep, and free-form fields."""
        if isinstance(value, pydantic.BaseModel):
            for name in value.model_extra or {}:
                problems.append((jpath(parts + [name]),
                                 f"field {name!r} is not defined by the SDK model {type(value).__name__}"))
            for name, field in type(value).model_fields.items():
                key = wire_name(name, field)
                if not isinstance(raw, dict) or key not in raw:
                    continue
                sub = getattr(value, name)
                if isinstance(value, LiveResponseEvent) and name == "event":
                    self.check_stream_event(raw[key], parts + [key], problems)
                    continue
                if key in SCHEMA_FIELDS and isinstance(raw[key], dict):
                    check_schema(raw[key], parts + [key], problems, root=key == "parameters")
                    continue
                self.walk(sub, raw[key], parts + [key], problems)
        elif isinstance(value, (list, tuple)) and isinstance(raw, list):
            for i, (v, r) in enumerate(zip(value, raw)):
                self.walk(v, r, parts + [i], problems)
        elif isinstance(value, dict) and isinstance(raw, dict):
            for k, v in value.items():
                if k in raw:
                    self.walk(v, raw[k], parts + [k], problems)

    def check_stream_event(self, raw, parts, problems):
        if self.stream is None:
            self.stream = Checker(ResponseStreamEvent)
        kind, errors = self.stream.check(raw)
        for path, msg in errors:
            problems.append((jpath(parts) + path[1:], f"{msg} (nested Responses event {kind!r})"))

    def check(self, raw):
        """Returns (type, [(json path, message)])."""
        if not isinstance(raw, dict):
            return None, [("$", f"expected a JSON object, got {json_kind(raw)}")]
        kind = raw.get("type")
        cls = self.types.get(kind) if isinstance(kind, str) else None
        if cls is None:
            return kind, [("$.type", f"type {kind!r} is not an event of this SDK union")]
        try:
            parsed = cls.model_validate(raw, strict=True)
        except pydantic.ValidationError as e:
            return kind, self.explain(e, raw)
        problems = []
        self.walk(parsed, raw, [], problems)
        if not problems:
            dumped = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True, warnings=False)
            for parts, msg in differences(raw, dumped, []):
                problems.append((jpath(parts), msg))
        return kind, problems


def differences(raw, dumped, parts):
    """Where the SDK model does not reproduce the wire value."""
    if isinstance(raw, dict) and isinstance(dumped, dict):
        out = []
        for k in raw:
            if k not in dumped:
                out.append((parts + [k], f"field {k!r} is dropped by the SDK model"))
            else:
                out += differences(raw[k], dumped[k], parts + [k])
        return out
    if isinstance(raw, list) and isinstance(dumped, list) and len(raw) == len(dumped):
        out = []
        for i, (r, d) in enumerate(zip(raw, dumped)):
            out += differences(r, d, parts + [i])
        return out
    if raw == dumped and json_kind(raw) == json_kind(dumped):
        return []
    return [(parts, f"value {json.dumps(raw)[:60]} comes back as {json.dumps(dumped)[:60]} from the SDK model")]


def check_schema(schema, parts, problems, root=False):
    """A JSON Schema given as free-form dict: known keywords and sane shapes only."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        problems.append((jpath(parts), f"a JSON Schema must be an object, got {json_kind(schema)}"))
        return
    if root and schema.get("type") != "object":
        problems.append((jpath(parts + ["type"]), "function parameters must be a schema of type 'object'"))
    for key, value in schema.items():
        here = parts + [key]
        if key not in SCHEMA_KEYWORDS:
            problems.append((jpath(here), f"{key!r} is not a JSON Schema keyword"))
        elif key == "type":
            names = value if isinstance(value, list) else [value]
            for name in names:
                if name not in SCHEMA_TYPES:
                    problems.append((jpath(here), f"{name!r} is not a JSON Schema type"))
        elif key in SCHEMA_MAPS:
            if not isinstance(value, dict):
                problems.append((jpath(here), f"{key!r} must be an object"))
            else:
                for name, sub in value.items():
                    check_schema(sub, here + [name], problems)
        elif key in SCHEMA_ONE:
            check_schema(value, here, problems)
        elif key in SCHEMA_LISTS:
            if not isinstance(value, list) or not value:
                problems.append((jpath(here), f"{key!r} must be a non-empty array"))
            else:
                for i, sub in enumerate(value):
                    check_schema(sub, here + [i], problems)
        elif key == "items":
            if isinstance(value, list):
                for i, sub in enumerate(value):
                    check_schema(sub, here + [i], problems)
            else:
                check_schema(value, here, problems)
        elif key == "required":
            props = schema.get("properties", {})
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.append((jpath(here), "'required' must be an array of strings"))
            elif isinstance(props, dict):
                for name in value:
                    if name not in props:
                        problems.append((jpath(here), f"required property {name!r} is not in 'properties'"))
        elif key == "enum" and not isinstance(value, list):
            problems.append((jpath(here), "'enum' must be an array"))


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ValueError(f"duplicate key(s) {', '.join(map(repr, dup))}")
    return dict(pairs)


def no_constant(name):
    raise ValueError(f"{name} is not JSON")


def check_file(path, checker, direction):
    errors, counts, total = [], {}, 0
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        total += 1
        where = f"{path}:{n}"
        try:
            raw = json.loads(line, object_pairs_hook=no_duplicates, parse_constant=no_constant)
        except ValueError as e:
            errors.append(f"{where}: not valid JSON: {e}")
            continue
        kind, problems = checker.check(raw)
        for p, msg in problems:
            errors.append(f"{where}: {kind if isinstance(kind, str) else '(no type)'}: {p}: {msg}")
        if not problems:
            counts[kind] = counts.get(kind, 0) + 1
    return errors, counts, total


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in APIS:
        print(__doc__, file=sys.stderr)
        return 2
    client_union, server_union = APIS[sys.argv[1]]
    for path in sys.argv[2:]:
        try:
            open(path, encoding="utf-8").close()
        except OSError as e:
            print(f"openai_sdk_validate: {e}", file=sys.stderr)
            return 2
    all_errors = []
    for path, union, direction in ((sys.argv[2], client_union, "client"), (sys.argv[3], server_union, "server")):
        errors, counts, total = check_file(path, Checker(union), direction)
        all_errors += errors
        summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        valid = sum(counts.values())
        status = "" if valid == total else f", {total - valid} invalid"
        print(f"{direction} messages: {total}{status} ({summary})")
    for e in all_errors[:100]:
        print(e, file=sys.stderr)
    if len(all_errors) > 100:
        print(f"... and {len(all_errors) - 100} more", file=sys.stderr)
    if all_errors:
        print(f"{len(all_errors)} error(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
