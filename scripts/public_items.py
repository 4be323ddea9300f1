#!/usr/bin/env python3
"""List the public items of a crate from rustdoc's JSON output.

    cargo +nightly rustdoc -p entra-federation -- -Z unstable-options --output-format json
    scripts/public_items.py target/doc/entra_federation.json

One line per public path (modules, types, traits, functions, constants,
inherent methods and public fields), sorted, so two versions can be diffed.
"""
import json
import sys


def main(path):
    doc = json.load(open(path))
    index = doc["index"]
    out = set()

    def visit(item_id, prefix, seen):
        item = index.get(str(item_id))
        if item is None or item_id in seen:
            return
        seen = seen | {item_id}
        inner = item["inner"]
        kind = next(iter(inner))
        body = inner[kind]
        name = item.get("name")
        here = f"{prefix}::{name}" if name else prefix
        if kind == "module":
            out.add(f"mod {here}")
            for child in body["items"]:
                child_item = index.get(str(child))
                if child_item and child_item["visibility"] == "public":
                    visit(child, here, seen)
        elif kind == "use":
            target = body.get("id")
            alias = body["name"]
            if body.get("is_glob"):
                target_item = index.get(str(target))
                if target_item:
                    for child in target_item["inner"]["module"]["items"]:
                        child_item = index.get(str(child))
                        if child_item and child_item["visibility"] == "public":
                            visit(child, prefix, seen)
                return
            if target is not None and str(target) in index:
                target_item = index[str(target)]
                renamed = dict(target_item, name=alias)
                index["__alias"] = renamed
                visit_item(renamed, target, prefix, seen)
            else:
                out.add(f"use {prefix}::{alias}")
        else:
            visit_item(item, item_id, prefix, seen)

    def visit_item(item, item_id, prefix, seen):
        inner = item["inner"]
        kind = next(iter(inner))
        body = inner[kind]
        here = f"{prefix}::{item['name']}"
        if kind == "module":
            out.add(f"mod {here}")
            for child in body["items"]:
                child_item = index.get(str(child))
                if child_item and child_item["visibility"] == "public":
                    visit(child, here, seen | {item_id})
            return
        out.add(f"{kind} {here}")
        if kind == "struct":
            fields = body["kind"]
            if isinstance(fields, dict) and "plain" in fields:
                for field in fields["plain"]["fields"]:
                    f = index.get(str(field))
                    if f and f["visibility"] == "public":
                        out.add(f"field {here}.{f['name']}")
        if kind == "enum":
            for variant in body["variants"]:
                v = index.get(str(variant))
                if v:
                    out.add(f"variant {here}::{v['name']}")
        for impl_id in body.get("impls", []) if isinstance(body, dict) else []:
            impl = index.get(str(impl_id))
            if not impl:
                continue
            impl_body = impl["inner"]["impl"]
            if impl_body.get("trait") is not None or impl_body.get("is_synthetic"):
                continue
            for method in impl_body["items"]:
                m = index.get(str(method))
                if m and m["visibility"] == "public":
                    mk = next(iter(m["inner"]))
                    out.add(f"{mk} {here}::{m['name']}")

    root = doc["root"]
    visit(root, "", frozenset())
    for line in sorted(out):
        print(line.replace(" ::", " "))


if __name__ == "__main__":
    main(sys.argv[1])
