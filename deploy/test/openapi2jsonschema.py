#!/usr/bin/env python3
"""Turns Kubernetes' own OpenAPI spec and CRD definitions into kubeconform JSON schemas.

    openapi2jsonschema.py OUT_DIR SWAGGER_JSON [CRD_JSON ...]

SWAGGER_JSON is api/openapi-spec/swagger.json from the k8s.io/kubernetes module source; each
CRD_JSON is a CustomResourceDefinition in JSON (prometheus-operator ships them as
jsonnet/prometheus-operator/*-crd.json). One file per kind and version is written, named as
kubeconform's default layout expects ({kind}-{group prefix}-{version}.json, lower case; core
kinds {kind}-{version}.json), so that `-schema-location 'OUT_DIR/{{ .ResourceKind }}{{ .KindSuffix }}.json'`
finds them. Schemas are strict, like kubeconform's "-strict" sets: every object that lists its
properties refuses unknown ones, as the API server's strict field validation does.
Each schema carries the definitions it references, so files stand alone.
"""

import json
import os
import sys

DEF_PREFIX = "#/definitions/"


def strict(node, preserve=False):
    """Adds additionalProperties: false to every object schema that lists properties, and
    models int-or-string fields; leaves x-kubernetes-preserve-unknown-fields subtrees open."""
    if isinstance(node, list):
        return [strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    if node.get("format") == "int-or-string" or node.get("x-kubernetes-int-or-string"):
        out = {k: v for k, v in node.items() if k not in ("type", "format")}
        out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
        return out
    keep_open = preserve or node.get("x-kubernetes-preserve-unknown-fields") is True
    out = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: strict(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "allOf", "anyOf", "oneOf", "not"):
            out[key] = strict(value)
        else:
            out[key] = value
    if "properties" in out and "additionalProperties" not in out and not keep_open:
        out["additionalProperties"] = False
    return out


def refs(node, found):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(DEF_PREFIX):
            found.add(ref[len(DEF_PREFIX):])
        for value in node.values():
            refs(value, found)
    elif isinstance(node, list):
        for value in node:
            refs(value, found)


def closure(name, definitions):
    """Every definition reachable from `name`."""
    seen, todo = set(), [name]
    while todo:
        cur = todo.pop()
        if cur in seen:
            continue
        seen.add(cur)
        found = set()
        refs(definitions[cur], found)
        todo.extend(found - seen)
    return seen


def file_name(kind, group, version):
    prefix = group.split(".")[0] if group else ""
    suffix = f"-{prefix}-{version}" if prefix else f"-{version}"
    return f"{kind.lower()}{suffix}.json"


def write(out_dir, name, schema):
    with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
        json.dump(schema, f, separators=(",", ":"))


def from_swagger(out_dir, path):
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    # Quantity accepts numbers as well as strings (resource.Quantity's JSON unmarshalling).
    qty = "io.k8s.apimachinery.pkg.api.resource.Quantity"
    definitions = {k: strict(v) for k, v in spec["definitions"].items()}
    if qty in definitions:
        definitions[qty] = {
            "description": definitions[qty].get("description", ""),
            "oneOf": [{"type": "string"}, {"type": "number"}],
        }
    count = 0
    for name, schema in definitions.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            needed = closure(name, definitions) - {name}
            doc = dict(schema)
            doc["$schema"] = "http://json-schema.org/draft-07/schema#"
            doc["definitions"] = {n: definitions[n] for n in sorted(needed)}
            write(out_dir, file_name(gvk["kind"], gvk.get("group", ""), gvk["version"]), doc)
            count += 1
    return count


def from_crd(out_dir, path):
    with open(path, encoding="utf-8") as f:
        crd = json.load(f)
    if crd.get("kind") != "CustomResourceDefinition":
        sys.exit(f"{path}: not a CustomResourceDefinition")
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    count = 0
    for version in crd["spec"]["versions"]:
        schema = version.get("schema", {}).get("openAPIV3Schema")
        if not schema:
            sys.exit(f"{path}: version {version['name']} has no openAPIV3Schema")
        doc = strict(schema)
        doc["$schema"] = "http://json-schema.org/draft-07/schema#"
        write(out_dir, file_name(kind, group, version["name"]), doc)
        count += 1
    return count


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    count = from_swagger(out_dir, sys.argv[2])
    for crd in sys.argv[3:]:
        count += from_crd(out_dir, crd)
    print(f"openapi2jsonschema: {count} schemas in {out_dir}")


if __name__ == "__main__":
    main()
