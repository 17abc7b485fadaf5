#!/usr/bin/env python3
"""Writes the package's debian/copyright (machine-readable format 1.0) to stdout.

    packaging/copyright.py PACKAGE_RESOLVED CHECKOUTS_DIR SWIFT_VERSION

nodenet links its Swift dependencies and the Swift runtime statically, so their licenses and
notices travel in the package. The versions are the ones this build resolved: read from the
build's Package.resolved (which stays out of git: each machine's local package copies carry
their own commit ids), the license and NOTICE texts from the checkouts SwiftPM built from.
A pin without a checkout or without a license file is an error: a package must not ship
code whose license it cannot state.
"""
import json
import os
import re
import sys

APACHE_FILE = "/usr/share/common-licenses/Apache-2.0"


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def field_text(text):
    """A multi-line field body: each line indented one space, empty lines as ' .'."""
    lines = []
    for line in text.rstrip().splitlines():
        line = line.rstrip().replace("\t", "    ")
        lines.append(" " + line if line.strip() else " .")
    return "\n".join(lines)


def classify(text):
    """The SPDX-style short name of a license text (the few kinds Swift packages use)."""
    if "Apache License" in text and "Version 2.0" in text:
        return "Apache-2.0 with Swift-exception" if "Runtime Library Exception" in text else "Apache-2.0"
    if "Permission is hereby granted, free of charge" in text:
        return "Expat"
    if re.search(r"Redistribution and use in source and binary forms", text):
        return "BSD-3-clause" if "Neither the name" in text else "BSD-2-clause"
    return None


def copyright_lines(*texts):
    found = []
    for text in texts:
        for line in text.splitlines():
            m = re.match(r"\s*(Copyright\s*(\(c\)|©)?\s*.*\d{4}.*)$", line, re.IGNORECASE)
            if m and "[yyyy]" not in line and "notice" not in line.lower():
                entry = re.sub(r"^Copyright\s*(\(c\)|©)?\s*", "", m.group(1), flags=re.IGNORECASE).strip()
                if entry and entry not in found:
                    found.append(entry)
    return found


def vendored_version(checkouts, path):
    try:
        return read(os.path.join(checkouts, path)).strip()
    except OSError:
        return "(version not recorded)"


def license_file(directory):
    for name in ("LICENSE.txt", "LICENSE", "LICENSE.md", "COPYING"):
        if os.path.isfile(os.path.join(directory, name)):
            return os.path.join(directory, name)
    return None


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: copyright.py PACKAGE_RESOLVED CHECKOUTS_DIR SWIFT_VERSION")
    resolved, checkouts, swift_version = sys.argv[1:]
    pins = json.loads(read(resolved))["pins"]
    out = [
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
        "Upstream-Name: nodenet",
        "Comment: usr/bin/nodenet links the Swift packages below and the Swift runtime",
        " statically; usr/bin/nodenet-cni links the Swift runtime and part of them",
        " statically. The versions are those this package was built with.",
        "",
        "Files: *",
        "Copyright: the nodenet developers",
        "License: Apache-2.0",
        "",
    ]
    # The Swift runtime, standard library, Foundation and libdispatch from the toolchain.
    out += [
        "Files: swift-runtime/*",
        "Copyright: 2014-2025 Apple Inc. and the Swift project authors",
        "License: Apache-2.0 with Swift-exception",
        f"Comment: The Swift {swift_version} standard library, runtime, Foundation and",
        " libdispatch, linked statically (swift build --static-swift-stdlib).",
        "",
    ]
    licenses = {}
    problems = []
    for pin in sorted(pins, key=lambda p: p["identity"]):
        location = pin["location"].rstrip("/")
        name = os.path.basename(location)
        name = name[:-4] if name.endswith(".git") else name
        directory = os.path.join(checkouts, name)
        state = pin.get("state", {})
        version = state.get("version") or state.get("branch") or "unversioned"
        revision = state.get("revision", "")
        path = license_file(directory) if os.path.isdir(directory) else None
        if path is None:
            problems.append(f"{pin['identity']}: no license file under {directory}")
            continue
        text = read(path)
        kind = classify(text)
        if kind is None:
            problems.append(f"{pin['identity']}: unrecognised license in {path}")
            continue
        notice_path = os.path.join(directory, "NOTICE.txt")
        notice = read(notice_path) if os.path.isfile(notice_path) else ""
        holders = copyright_lines(text, notice) or [f"the {name} authors"]
        out.append(f"Files: {pin['identity']}/*")
        out.append("Copyright: " + holders[0])
        out += ["           " + h for h in holders[1:]]
        if kind.startswith("Apache"):
            out.append(f"License: {kind}")
        else:
            # Licenses other than Apache carry their own text (each with its holder's name).
            out.append(f"License: {kind}")
            out.append(field_text(text))
        comment = f"{name} {version} ({location}, revision {revision})"
        if notice:
            comment += ". Its NOTICE:\n" + notice
        out.append("Comment: " + field_text(comment).lstrip())
        out.append("")
        licenses[kind] = True
    # Code the packages above vendor, which lintian finds in the binary by itself.
    vendored = {
        "yams": ("yams/Sources/CYaml/*", "2006-2016 Kirill Simonov\n           2006-2016 Ingy döt Net",
                 "libyaml, vendored by Yams (YAML parsing of manifests and the configuration)"),
        "swift-nio-extras": ("swift-nio-extras/Sources/CNIOExtrasZlib/*", "1995-2026 Jean-loup Gailly, Mark Adler",
                             "zlib " + vendored_version(checkouts, "swift-nio-extras/Sources/CNIOExtrasZlib/vendored-zlib.version")
                             + ", vendored by swift-nio-extras"),
    }
    for identity, (files, holders, what) in vendored.items():
        if any(p["identity"] == identity for p in pins):
            out += [f"Files: {files}", f"Copyright: {holders}"]
            if identity == "yams":
                out += ["License: Expat", field_text(MIT)]
            else:
                out += ["License: Zlib", field_text(ZLIB)]
            out += [f"Comment: {what}.", ""]
    if problems:
        sys.exit("copyright.py: " + "; ".join(problems))
    out += [
        "License: Apache-2.0",
        " On Debian systems, the full text of the Apache License 2.0 is in",
        f" {APACHE_FILE}.",
        "",
        "License: Apache-2.0 with Swift-exception",
        " On Debian systems, the full text of the Apache License 2.0 is in",
        f" {APACHE_FILE}.",
        " .",
        " Runtime Library Exception to the Apache 2.0 License:",
        " .",
        " As an exception, if you use this Software to compile your source code and",
        " portions of this Software are embedded into the binary product as a result,",
        " you may redistribute such product without providing attribution as would",
        " otherwise be required by Sections 4(a), 4(b) and 4(d) of the License.",
    ]
    print("\n".join(out))


MIT = """Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in
all copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN
THE SOFTWARE."""

ZLIB = """This software is provided 'as-is', without any express or implied
warranty.  In no event will the authors be held liable for any damages
arising from the use of this software.

Permission is granted to anyone to use this software for any purpose,
including commercial applications, and to alter it and redistribute it
freely, subject to the following restrictions:

1. The origin of this software must not be misrepresented; you must not
   claim that you wrote the original software. If you use this software
   in a product, an acknowledgment in the product documentation would be
   appreciated but is not required.
2. Altered source versions must be plainly marked as such, and must not be
   misrepresented as being the original software.
3. This notice may not be removed or altered from any source distribution."""

if __name__ == "__main__":
    main()
