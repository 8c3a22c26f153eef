#!/bin/bash
# The source check, as curl's checksrc: rules of the project that a compiler
# does not enforce, checked on every ctest run.
#
#  1. The library never prints, exits or aborts, and allocates only through
#     qp__malloc & co (the hooks allocator, so out-of-memory is a tested path).
#     In lib/, outside lib/core/alloc.c (the allocator itself), no call to:
#       printf fprintf vprintf vfprintf dprintf vdprintf puts fputs putchar
#       putc fputc fwrite perror   exit _exit _Exit quick_exit abort assert
#       malloc calloc realloc reallocarray free strdup strndup aligned_alloc
#       posix_memalign memalign valloc asprintf vasprintf
#     and no use of stdout or stderr. (The shim writes its log with write(2)
#     to the file or descriptor QPROF_LOG names, in lib/shim/shim_core.c; that
#     needs no exception.)
#  2. Every public function is documented where it is declared: each function
#     declared (QP_EXPORT) or defined (static inline) in include/qprof/*.h has
#     a comment right above it, or belongs to a run of declarations (no blank
#     line between them) that has one.
#
# Comments and string literals are ignored. An exception is listed below with
# its reason; an exception that no longer matches anything is reported (not a
# failure) so that it can be removed.
#
# Usage: bash tests/checksrc.sh [SOURCE_ROOT]    (default: this checkout)
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
exec python3 - "$root" <<'PY'
import os, re, sys

root = sys.argv[1]

# (path, banned name, text of the line it is on, reason)
EXCEPTIONS = [
    ("lib/shim/shim_core.c", "free", "free(real);",
     "realpath(dir, NULL) returns memory from libc's malloc, which only libc's free may release"),
]

BANNED_CALLS = """printf fprintf vprintf vfprintf dprintf vdprintf puts fputs putchar putc fputc
fwrite perror exit _exit _Exit quick_exit abort assert malloc calloc realloc reallocarray free
strdup strndup aligned_alloc posix_memalign memalign valloc asprintf vasprintf""".split()
BANNED_NAMES = ["stdout", "stderr"]
ALLOCATOR = "lib/core/alloc.c"

call_re = re.compile(r"(?<![\w.>])(%s)\s*\(" % "|".join(map(re.escape, BANNED_CALLS)))
name_re = re.compile(r"(?<![\w.>])(%s)(?!\w)" % "|".join(BANNED_NAMES))


def strip(text):
    """Blanks comments and string/char literals, keeping every newline, so
    that line numbers stay true. Returns (code, comment_mask_lines)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + re.sub(r"[^\n]", " ", text[i + 1:j - 1]) + c)
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def sources(top, exts):
    for dirpath, dirs, files in os.walk(os.path.join(root, top)):
        dirs.sort()
        for f in sorted(files):
            if f.endswith(exts):
                p = os.path.join(dirpath, f)
                yield os.path.relpath(p, root), p


failures = []
used = set()

# ---- 1. no printing, exiting, aborting or raw allocation in lib/ ----------
for rel, path in sources("lib", (".c", ".h")):
    if rel == ALLOCATOR:
        continue
    raw = open(path, encoding="utf-8", errors="replace").read()
    code = strip(raw).split("\n")
    lines = raw.split("\n")
    for no, line in enumerate(code, 1):
        hits = [m.group(1) for m in call_re.finditer(line)]
        hits += [m.group(1) for m in name_re.finditer(line)]
        for name in hits:
            text = lines[no - 1].strip()
            exc = [k for k, e in enumerate(EXCEPTIONS)
                   if e[0] == rel and e[1] == name and e[2] in text]
            if exc:
                used.update(exc)
                continue
            what = ("allocates outside the hooks allocator (use qp__%s)" % name
                    if name in ("malloc", "calloc", "realloc", "free", "strdup", "strndup")
                    else "allocates outside the hooks allocator"
                    if name in ("reallocarray", "aligned_alloc", "posix_memalign", "memalign",
                                "valloc", "asprintf", "vasprintf")
                    else "prints, exits or aborts: the library returns a status and logs "
                         "through qp_hooks")
            failures.append("%s:%d: %s: %s\n    %s" % (rel, no, name, what, text))

# ---- 2. every public function documented where it is declared -------------
decl_start = re.compile(r"^\s*(QP_EXPORT\b|static\s+inline\b)")
for rel, path in sources("include/qprof", (".h", ".h.in")):
    raw = open(path, encoding="utf-8", errors="replace").read()
    code = strip(raw).split("\n")
    lines = raw.split("\n")
    # Items in order: ("comment"|"decl"|"other"|"blank", first line, last line, name).
    items = []
    i = 0
    while i < len(lines):
        s = lines[i].strip()
        if s == "":
            items.append(("blank", i, i, None))
            i += 1
        elif code[i].strip() == "" and (s.startswith("/*") or s.startswith("//") or s.startswith("*")):
            j = i
            if s.startswith("/*"):
                while "*/" not in lines[j]:
                    j += 1
            items.append(("comment", i, j, None))
            i = j + 1
        elif decl_start.match(code[i]) and "(" in "".join(code[i:i + 8]):
            j = i
            if code[i].lstrip().startswith("static"):
                while j < len(lines) and not code[j].startswith("}"):
                    j += 1
            else:
                while j < len(lines) and ";" not in code[j]:
                    j += 1
            text = " ".join(code[i:j + 1])
            m = re.search(r"(\w+)\s*\(", re.sub(r"QP_PRINTF\s*\([^)]*\)", "", text))
            items.append(("decl", i, j, m.group(1) if m else "?"))
            i = j + 1
        else:
            items.append(("other", i, i, None))
            i += 1
    documented = False
    for k, (kind, first, last, name) in enumerate(items):
        if kind != "decl":
            continue
        prev = items[k - 1][0] if k > 0 else None
        if prev == "comment":
            documented = True
        elif prev != "decl":
            documented = False
        if not documented:
            failures.append("%s:%d: %s: public function without a doc comment right above it "
                            "(what it does, ownership, thread-safety, errors)\n    %s"
                            % (rel, first + 1, name, lines[first].strip()))

for k, e in enumerate(EXCEPTIONS):
    if k not in used:
        print("checksrc: note: exception no longer needed: %s %s '%s'" % (e[0], e[1], e[2]))
if failures:
    print("checksrc: %d problem(s):" % len(failures))
    print("\n".join(failures))
    sys.exit(1)
print("checksrc: lib/ and include/qprof/ pass (%d exception(s) in use)" % len(used))
PY
