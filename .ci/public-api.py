#!/usr/bin/env python3
"""Prints the public API of kiln's library crates, one declaration per line, from the HTML that
`cargo doc --workspace --no-deps` wrote: every item's declaration, the inherent methods of each
type, the traits it implements, and every re-export. CI compares it with public-api.txt, so that
a change of the public API shows in review as a change of that file.

    .ci/public-api.py [DOC_DIR] > public-api.txt     (DOC_DIR: $CARGO_TARGET_DIR/doc)
"""
import html
import os
import re
import sys

CRATES = ["kiln", "kiln_train", "kiln_common", "kiln_fnn", "kiln_cnn", "kiln_lstm",
          "kiln_transformer", "kiln_datasets", "kiln_tune"]
KINDS = {"struct", "enum", "trait", "fn", "type", "constant", "macro", "static", "union",
         "traitalias", "derive", "attr"}


def text(fragment):
    """The fragment's text: tags dropped, entities decoded, whitespace collapsed."""
    fragment = re.sub(r"<[^>]+>", "", fragment)
    return re.sub(r"\s+", " ", html.unescape(fragment)).strip()


def section(page, start, ends):
    """The part of `page` from the element with id `start` to the first of `ends`."""
    m = re.search(rf'id="{start}"', page)
    if not m:
        return ""
    rest = page[m.end():]
    cut = min((rest.find(f'id="{e}"') for e in ends if f'id="{e}"' in rest), default=len(rest))
    return rest[:cut]


def item_lines(path, page):
    lines = []
    decl = re.search(r'<pre class="rust item-decl">(.*?)</pre>', page, re.S)
    if decl:
        lines.append(f"{path}: {text(decl.group(1))}")
    inherent = section(page, "implementations", ["trait-implementations",
                                                  "synthetic-implementations",
                                                  "blanket-implementations"])
    for header in re.findall(r'<h[34] class="code-header">(.*?)</h[34]>', inherent, re.S):
        lines.append(f"{path}: {text(header)}")
    traits = section(page, "trait-implementations", ["synthetic-implementations",
                                                     "blanket-implementations"])
    for header in re.findall(r'<h3 class="code-header">(.*?)</h3>', traits, re.S):
        lines.append(f"{path}: {text(header)}")
    return lines


def main():
    doc = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.environ.get("CARGO_TARGET_DIR", "target"), "doc")
    lines = set()
    for crate in CRATES:
        root = os.path.join(doc, crate)
        if not os.path.isdir(root):
            sys.exit(f"{root}: missing; run `cargo doc --workspace --no-deps` first")
        for folder, _, files in os.walk(root):
            module = "::".join(os.path.relpath(folder, doc).split(os.sep))
            for name in sorted(files):
                page_path = os.path.join(folder, name)
                if name == "index.html":
                    page = open(page_path, encoding="utf-8").read()
                    lines.add(f"{module}: mod")
                    for reexport in re.findall(r"<code>(pub use .*?)</code>", page, re.S):
                        lines.add(f"{module}: {text(reexport)}")
                    continue
                parts = name.split(".")
                if len(parts) != 3 or parts[0] not in KINDS or parts[2] != "html":
                    continue
                if module == "kiln::prelude":  # re-exports, each listed in full where it lives
                    lines.add(f"{module}: {parts[0]} {parts[1]}")
                    continue
                page = open(page_path, encoding="utf-8").read()
                if 'http-equiv="refresh"' in page:  # a redirect to the item's real page
                    continue
                lines.update(item_lines(f"{module}::{parts[1]}", page))
    print("\n".join(sorted(lines)))


main()
