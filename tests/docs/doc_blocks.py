#!/usr/bin/env python3
"""Run the code blocks of README.md and doc/*.md as written, so the docs cannot drift.

Every fenced block says what it is with its info string:

  sh      commands: run with bash -e from the repository root (build/ is the build
          being tested), each block in a fresh shell; it must exit 0. A block whose lines
          start with "# terminal 1" and "# terminal 2" is two terminals: the first part
          runs in the background, the second in the foreground once the first has had
          two seconds, then the first gets SIGINT and must exit 0.
  c, cpp  a complete program (it has main()): compiled against the build tree's
          libiodp and run, it must exit 0; or an excerpt, named by the comment
          <!-- doc-test: excerpt of PATH --> just before the block: every line of the block
          must appear in PATH, in the same order (so the excerpt is code that is built);
          a line "..." stands for lines left out.
  ini     an iodp-pmd configuration file: run for a second with it.
  text, json
          what a program prints: not run.

A block may be left unrun only with <!-- doc-test: not run: REASON -->, and the reason
must name where else the block is exercised (the README's two commands are CI itself).

usage: doc_blocks.py SOURCE_ROOT BUILD_ROOT [FILE ...]
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

KINDS = {"sh", "c", "cpp", "ini", "text", "json"}
DIRECTIVE = re.compile(r"<!--\s*doc-test:\s*(.*?)\s*-->")
TIMEOUT = 120


class Block:
    def __init__(self, path, line, kind, text, directive):
        self.path, self.line, self.kind, self.text, self.directive = (
            path, line, kind, text, directive)

    def where(self):
        return f"{self.path}:{self.line}"


def blocks_of(path, rel):
    lines = open(path, encoding="utf-8").read().split("\n")
    out, i, directive = [], 0, None
    while i < len(lines):
        m = DIRECTIVE.search(lines[i])
        if m:
            directive = m.group(1)
        fence = re.match(r"^(`{3,})(.*)$", lines[i])
        if fence:
            ticks, info = fence.group(1), fence.group(2).strip()
            start = i + 1
            i += 1
            while i < len(lines) and not lines[i].startswith(ticks):
                i += 1
            out.append(Block(rel, start, info, "\n".join(lines[start:i]) + "\n", directive))
            directive = None
        elif lines[i].strip() and not m:
            directive = None
        i += 1
    return out


def tree(source, build):
    """A directory that looks like the source tree with build/ being the tested build."""
    root = tempfile.mkdtemp(prefix="iodp-docs.")
    for name in os.listdir(source):
        if name in ("build", ".git") or name.startswith("build-"):
            continue
        os.symlink(os.path.join(source, name), os.path.join(root, name))
    os.symlink(build, os.path.join(root, "build"))
    return root


def run_sh(block, cwd):
    env = dict(os.environ)
    parts = re.split(r"^# terminal \d+.*$", block.text, flags=re.M)
    if len(parts) >= 3:
        first, second = parts[1], parts[2]
        bg = subprocess.Popen(["bash", "-ec", first], cwd=cwd, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
        time.sleep(2)
        fg = subprocess.run(["bash", "-ec", second], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=TIMEOUT)
        os.killpg(bg.pid, signal.SIGINT)
        try:
            bg_out, _ = bg.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(bg.pid, signal.SIGKILL)
            bg_out, _ = bg.communicate()
        if fg.returncode != 0:
            return f"terminal 2 exited {fg.returncode}:\n{fg.stdout}{fg.stderr}"
        if bg.returncode != 0:
            return f"terminal 1 exited {bg.returncode} on SIGINT:\n{bg_out}"
        return None
    p = subprocess.run(["bash", "-ec", block.text], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=TIMEOUT)
    if p.returncode != 0:
        return f"exited {p.returncode}:\n{p.stdout[-4000:]}{p.stderr[-4000:]}"
    return None


def norm(line):
    return " ".join(line.split())


def check_excerpt(block, source, name):
    path = os.path.join(source, name)
    if not os.path.isfile(path):
        return f"excerpt of {name}: no such file"
    have = [norm(l) for l in open(path, encoding="utf-8").read().split("\n")]
    pos = 0
    for line in block.text.split("\n"):
        want = norm(line)
        if not want or want == "...": # "..." stands for lines left out
            continue
        while pos < len(have) and want not in have[pos]:
            pos += 1
        if pos == len(have):
            return f"excerpt of {name}: line not found (in order): {line.strip()!r}"
        pos += 1
    return None


def run_program(block, cwd, source, build):
    tmp = tempfile.mkdtemp(prefix="iodp-docs-prog.")
    try:
        src = os.path.join(tmp, "prog." + block.kind)
        open(src, "w").write(block.text)
        # What `pkg-config --cflags --libs libiodp` gives an installed copy: every public
        # header folder, and libiodp.so alone.
        incs = [os.path.join(top, d) for top in (os.path.join(source, "lib"),
                                                 os.path.join(source, "drivers"))
                for d in sorted(os.listdir(top)) if os.path.isdir(os.path.join(top, d))]
        libdir = os.path.join(build, "packaging")
        flags = ["-I" + d for d in incs] + ["-L" + libdir, "-liodp"]
        if "<rte_" in block.text: # a program that starts the EAL itself adds libdpdk
            dpdk = subprocess.run(["pkg-config", "--cflags", "--libs", "libdpdk"],
                                  capture_output=True, text=True)
            if dpdk.returncode != 0:
                return "pkg-config libdpdk: " + dpdk.stderr
            flags += dpdk.stdout.split()
        cc = ["cc", "-std=c11"] if block.kind == "c" else ["c++", "-std=c++20"]
        exe = os.path.join(tmp, "prog")
        c = subprocess.run(cc + ["-o", exe, src] + flags, capture_output=True, text=True)
        if c.returncode != 0:
            return "does not compile:\n" + c.stderr[-4000:]
        r = subprocess.run([exe], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT,
                           env=dict(os.environ, LD_LIBRARY_PATH=libdir))
        if r.returncode != 0:
            return f"exited {r.returncode}:\n{r.stdout[-2000:]}{r.stderr[-2000:]}"
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_ini(block, cwd):
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write(block.text)
    try:
        p = subprocess.run(["build/apps/iodp-pmd/iodp-pmd", "--file-prefix=iodp-docs", "--",
                            "--config", f.name, "--duration", "1", "--stats-interval", "0"],
                           cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)
        if p.returncode != 0:
            return f"iodp-pmd --config exited {p.returncode}:\n{p.stdout[-3000:]}{p.stderr[-3000:]}"
        return None
    finally:
        os.unlink(f.name)


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    source, build = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    files = sys.argv[3:] or (["README.md"] + sorted(
        os.path.join("doc", f) for f in os.listdir(os.path.join(source, "doc"))
        if f.endswith(".md")))
    cwd = tree(source, build)
    failures, counts = [], {}
    try:
        for rel in files:
            for b in blocks_of(os.path.join(source, rel), rel):
                d = b.directive or ""
                if b.kind not in KINDS:
                    failures.append((b, f"info string {b.kind!r}: say what the block is "
                                        f"({', '.join(sorted(KINDS))})"))
                    continue
                if d.startswith("not run:"):
                    if len(d) < len("not run: ") + 10:
                        failures.append((b, "'not run' needs a reason"))
                    counts["not run"] = counts.get("not run", 0) + 1
                    continue
                err = None
                if b.kind == "sh":
                    err = run_sh(b, cwd)
                elif b.kind in ("c", "cpp"):
                    m = re.match(r"excerpt of (\S+)", d)
                    if m:
                        err = check_excerpt(b, source, m.group(1))
                    elif re.search(r"\bmain\s*\(", b.text):
                        err = run_program(b, cwd, source, build)
                    else:
                        err = ("neither a whole program nor marked "
                               "<!-- doc-test: excerpt of PATH -->")
                elif b.kind == "ini":
                    err = run_ini(b, cwd)
                counts[b.kind] = counts.get(b.kind, 0) + 1
                status = ("output, not run" if b.kind in ("text", "json") else
                          "ok" if err is None else "FAILED")
                print(f"doc_blocks: {b.where()} [{b.kind}] {status}", flush=True)
                if err is not None:
                    failures.append((b, err))
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    print("doc_blocks: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for b, err in failures:
        print(f"doc_blocks: {b.where()}: {err}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
