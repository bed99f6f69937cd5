#!/usr/bin/env python3
"""Makes the section 3 man pages of libwormholeclient from its headers' doc comments.

One source: the comment right above a WH_EXPORT declaration (nothing but blank space
between) is that function's documentation. Declarations that follow each other with no
comment or blank line between them are a family (wh_open_start, wh_open_result,
wh_open_cancel): one page, named after the first, and a `.so` link page for each other.
The pages are committed (docs/man/wh_*.3) so that building from a tarball needs no Python;
tests/unit/check_man3.sh runs this into a temporary directory and fails when the committed
pages, or the list Makefile.am installs (docs/man/man3.am), differ from what the header says
now, or when an exported function has no page.

Usage: make-man3.py [--out DIR]   (default: docs/man beside this script's parent)
"""
import argparse
import os
import re
import sys

HEADERS = ["libclient/include/wormhole/wormhole.h", "libclient/include/wormhole/errors.h"]
TOKEN = re.compile(r"/\*.*?\*/|WH_EXPORT[^;]*;|struct\s+\w+\s*\{.*?\};|#[^\n]*|\n\s*\n|\S",
                   re.S)


def comment_text(comment):
    """The comment's lines without the /* * */ frame, indentation after the star kept."""
    body = comment[2:-2]
    lines = []
    for line in body.split("\n"):
        line = re.sub(r"^\s*\* ?", "", line) if re.match(r"^\s*\*", line) else line.strip()
        lines.append(line.rstrip())
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def function_name(decl):
    return re.search(r"(\w+)\s*\(", decl).group(1)


def parse(root):
    """Families as (comment lines or None, [declarations]), and struct definitions by name."""
    families, structs = [], {}
    for header in HEADERS:
        text = open(os.path.join(root, header), encoding="utf-8").read()
        pending, last = None, None  # last: the family a declaration may join
        for match in TOKEN.finditer(text):
            tok = match.group(0)
            if tok.startswith("/*"):
                pending, last = tok, None
            elif tok.startswith("WH_EXPORT"):
                decl = " ".join(tok[len("WH_EXPORT"):].split())
                if last is not None and pending is None:
                    last[1].append(decl)
                else:
                    last = (comment_text(pending) if pending else None, [decl])
                    families.append(last)
                pending = None
            elif tok.startswith("struct"):
                structs[re.match(r"struct\s+(\w+)", tok).group(1)] = tok
                pending, last = None, None
            elif tok.strip() == "":
                pending, last = None, None  # a blank line ends a comment's reach
            else:
                pending, last = None, None
    return families, structs


def roff_escape(text):
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def description(lines):
    """Filled paragraphs; lines indented in the comment (lists, examples) kept as they are."""
    out, block = [], False
    for line in lines:
        if not line.strip():
            if block:
                out.append(".fi")
                block = False
            out.append(".PP")
        elif line.startswith(" "):
            if not block:
                out.append(".nf")
                block = True
            out.append(roff_escape(line))
        else:
            if block:
                out.append(".fi")
                block = False
            out.append(roff_escape(line))
    if block:
        out.append(".fi")
    return out


def summary(lines):
    """For NAME (whatis): the first sentence, up to its first colon or semicolon outside
    parentheses."""
    text = " ".join(l.strip() for l in lines)
    depth, end = 0, len(text)
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and i >= 12 and text[i:i + 2] in (". ", ": ", "; ") and \
                not text[:i + 1].endswith("e.g."):
            end = i
            break
    sentence = text[:end].rstrip(".")
    while len(sentence) > 100 and re.search(r" \([^()]*\)", sentence):  # asides go first
        sentence = re.sub(r" \([^()]*\)", "", sentence, count=1)
    first = sentence.split(" ", 1)[0]
    keep = (first.isupper() and len(first) > 1) or "_" in first
    return sentence if keep else sentence[0].lower() + sentence[1:]


def page(comment, decls, structs, version):
    names = [function_name(d) for d in decls]
    out = ['.\\" Made by scripts/make-man3.py from the doc comments of <wormhole/wormhole.h>:',
           '.\\" change the header, not this page.',
           '.TH %s 3 "" "wormhole %s" "Library Functions Manual"' % (names[0].upper(), version),
           ".SH NAME",
           "%s \\- %s" % (", ".join(n.replace("_", "_") for n in names), roff_escape(summary(comment))),
           ".SH SYNOPSIS", ".nf", ".B #include <wormhole/wormhole.h>", ".PP"]
    used = sorted({s for d in decls for s in re.findall(r"struct (\w+)", d) if s in structs})
    for name in used:
        out += [roff_escape(line) for line in structs[name].split("\n")] + [".PP"]
    out += [".B " + roff_escape(d).replace('"', '\\(dq') for d in decls]
    out += [".PP", ".B cc app.c $(pkg-config \\-\\-cflags \\-\\-libs wormholeclient)", ".fi",
            ".SH DESCRIPTION"]
    out += description(comment)
    out += [".SH SEE ALSO", ".BR libwormholeclient (3),", ".BR wh_strerror (3),",
            ".IR docs/ATTACH.md ."]
    return "\n".join(out) + "\n"


def version_of(root):
    text = open(os.path.join(root, "configure.ac"), encoding="utf-8").read()
    return re.search(r"AC_INIT\(\[[^]]*\],\s*\[([^]]*)\]", text).group(1)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(root, "docs", "man"))
    args = parser.parse_args()
    families, structs = parse(root)
    version = version_of(root)
    pages, problems = [], []
    for comment, decls in families:
        names = [function_name(d) for d in decls]
        if not comment:
            problems.append("%s has no doc comment right above it" % names[0])
            continue
        with open(os.path.join(args.out, names[0] + ".3"), "w", encoding="utf-8") as f:
            f.write(page(comment, decls, structs, version))
        pages.append(names[0] + ".3")
        for other in names[1:]:
            with open(os.path.join(args.out, other + ".3"), "w", encoding="utf-8") as f:
                f.write(".so man3/%s.3\n" % names[0])
            pages.append(other + ".3")
    with open(os.path.join(args.out, "man3.am"), "w", encoding="utf-8") as f:
        f.write("# Made by scripts/make-man3.py: one page (or .so link) per public function.\n")
        f.write("man3_pages = \\\n")
        f.write(" \\\n".join("\tdocs/man/" + p for p in sorted(pages)) + "\n")
    for problem in problems:
        print("make-man3: " + problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
