#!/usr/bin/env python3
"""Runs README.md as a reader would: every ```sh block, in order, in one bash shell.

The README promises that its blocks run as written, one after the other in the same shell and
directory, from the repository's root after a build. This test holds it to that:

- Every ```sh block is run, in README order, in one `bash` with `set -e`: the first command that
  fails ends the walk, and the test names the README line of that command and shows the output of
  its block. The working directory is a fresh temporary directory in which `build/app/usher` is a
  symlink to the binary of the build tree this test belongs to (under `make asan`, the ASan one),
  so the README's own `B=$PWD/build/app/usher` holds and nothing is written to the repository.
- A block preceded by `<!-- walkthrough: skip REASON -->` is not run: the "Two commands" block
  (`make demo`, `make test`: running the tests from a test would recurse) and blocks that need a
  display or root. The reason is printed.
- An output sample the README shows for a command it does not run in a ```sh block (the demo's
  table, after `make demo`) is marked `<!-- walkthrough: sample of `COMMAND` (why) -->` right
  before its fence: COMMAND (`./build/app/usher demo`: what `make demo` runs once built) runs in
  the walk at that point, as a block of its own, and its output is checked against the sample.
- What the README tells the reader to expect is checked against the output (stdout and stderr) of
  the block it follows:
    * `<!-- expect: REGEX -->` after a block (invisible when rendered): REGEX (Python syntax) must
      be found somewhere in the block's output;
    * a ```text block right after a ```sh block is a sample of its output: each non-blank line of
      the sample must match a line of the output (a line of its own, in any order), where `...`
      stands for anything and a run of spaces for any run of spaces.
- The services the README starts with `&` (engine, billing, the STB links) run in the shell's own
  process group. The README stops them itself at the end; the test then checks nothing of the
  walk is still running (a stray process fails the test) and, whatever happened (failure,
  timeout, SIGTERM from ctest), kills the whole group.
- The README uses its fixed loopback ports (the commands' defaults, tcp 7700, 7720, 7801, and the
  ones it names), as a reader would. The ctest case is RUN_SERIAL so no other test of the suite
  runs meanwhile, and the test checks first that those ports are free, naming any that is not.

Usage: readme_walkthrough.py --readme README.md --usher build/app/usher [--timeout SECONDS]
       [--keep DIR]  (run in DIR, kept afterwards, instead of a temporary directory)
       [--list]      (print the blocks and their expectations, run nothing)
"""

import argparse
import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

FENCE = re.compile(r"^```\s*([A-Za-z0-9_+-]*)\s*$")
SKIP = re.compile(r"^<!--\s*walkthrough:\s*skip\b\s*(.*?)\s*-->\s*$")
SAMPLE_OF = re.compile(r"^<!--\s*walkthrough:\s*sample of\s+`([^`]+)`.*-->\s*$")
EXPECT = re.compile(r"^<!--\s*expect:\s*(.*?)\s*-->\s*$")
NAME = "README.md"  # the file walked, as messages name it
BLOCK_MARK = "__readme_walkthrough_block__"
FAIL_MARK = "__readme_walkthrough_failed__"


@dataclasses.dataclass
class Block:
    line: int  # README line of the block's first command (1-based)
    lines: list  # the block's text, one string per line
    skip: str | None = None  # reason, when marked to be skipped
    expects: list = dataclasses.field(default_factory=list)  # (README line, regex)
    samples: list = dataclasses.field(default_factory=list)  # (README line of the sample, its lines)


def parse_readme(text):
    """The ```sh blocks of the README with their skip marks, expect comments and output samples."""
    blocks = []
    lines = text.split("\n")
    i = 0
    pending_skip = None  # a skip mark waiting for its fence
    pending_sample_of = None  # (README line, command) of a sample-of mark waiting for its fence
    last_sh = None  # the ```sh block that expect comments and ```text samples would follow
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if fence:
            lang = fence.group(1)
            start = i + 1
            j = start
            while j < len(lines) and not FENCE.match(lines[j]):
                j += 1
            if j == len(lines):
                raise SystemExit(f"{NAME}:{i + 1}: a fenced block is never closed")
            body = lines[start:j]
            if lang == "sh":
                block = Block(line=start + 1, lines=body, skip=pending_skip)
                blocks.append(block)
                last_sh = block
            elif pending_sample_of is not None:
                # an output sample shown for a command outside the ```sh blocks: run it here
                block = Block(line=pending_sample_of[0], lines=[pending_sample_of[1]], samples=[(start + 1, body)])
                blocks.append(block)
                last_sh = block
            elif lang == "text" and last_sh is not None:
                last_sh.samples.append((start + 1, body))
                # a sample may be followed by expect comments about the same block
            else:
                if pending_skip is not None:
                    raise SystemExit(f"{NAME}:{i + 1}: a walkthrough skip mark before a block that is not ```sh")
                last_sh = None
            pending_skip = None
            pending_sample_of = None
            i = j + 1
            continue
        sample_of = SAMPLE_OF.match(line)
        if sample_of:
            pending_sample_of = (i + 1, sample_of.group(1))
            i += 1
            continue
        skip = SKIP.match(line)
        expect = EXPECT.match(line)
        if skip:
            pending_skip = skip.group(1) or "(no reason given)"
        elif expect:
            if last_sh is None:
                raise SystemExit(f"{NAME}:{i + 1}: an expect comment that follows no ```sh block")
            try:
                re.compile(expect.group(1))
            except re.error as e:
                raise SystemExit(f"{NAME}:{i + 1}: bad expect regex: {e}")
            last_sh.expects.append((i + 1, expect.group(1)))
        elif re.match(r"\s*<!--\s*(walkthrough|expect)", line):
            # a mark mistyped would otherwise pass for a comment and check nothing
            raise SystemExit(f"{NAME}:{i + 1}: not a walkthrough mark this test knows: {line.strip()}")
        elif line.strip():
            # prose ends what a block's expectations may be: comments and samples must follow it
            # with only blank lines between, so it is plain which block they are about
            last_sh = None
            if pending_skip is not None and not line.lstrip().startswith("<!--"):
                raise SystemExit(f"{NAME}:{i + 1}: a walkthrough skip mark must come right before its block")
            if pending_sample_of is not None and not line.lstrip().startswith("<!--"):
                raise SystemExit(f"{NAME}:{i + 1}: a walkthrough sample-of mark must come right before its sample")
        i += 1
    return blocks


def sample_matches(sample_lines, output_lines):
    """Each non-blank sample line matches a line of the output of its own; `...` is anything.

    Returns the first sample line that matches none, or None. Order is not checked: a statement's
    lines bought in the same second may come in either order."""
    unused = list(output_lines)
    for s in sample_lines:
        if not s.strip():
            continue
        parts = [re.sub(r"(\\ )+", r"\\s+", re.escape(p)) for p in s.strip().split("...")]
        pattern = re.compile(r"\s*" + ".*".join(parts) + r"\s*")
        found = next((k for k, out in enumerate(unused) if pattern.fullmatch(out)), None)
        if found is None:
            return s
        del unused[found]
    return None


def build_script(blocks):
    """The bash script for the blocks to run, and the README line of each of its lines."""
    script = [
        "set -eE",
        # the README line is looked up from the script's line by the test
        f"trap 'echo \"{FAIL_MARK} $? $LINENO $BASH_COMMAND\"' ERR",
    ]
    where = [0] * len(script)
    for n, block in enumerate(blocks):
        if block.skip is not None:
            continue
        script.append(f"echo {BLOCK_MARK} {n}")
        where.append(block.line)
        for k, text in enumerate(block.lines):
            script.append(text)
            where.append(block.line + k)
    script.append(f"echo {BLOCK_MARK} end")
    where.append(0)
    return "\n".join(script) + "\n", where


def loopback_ports(blocks):
    """The loopback ports the README's blocks use, named in them or in their comments."""
    ports = set()
    for block in blocks:
        if block.skip is None:
            for text in block.lines:
                ports.update(int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", text))
    return sorted(ports)


def busy_ports(ports):
    """The ports among these that something on this machine already holds (TCP or UDP)."""
    busy = []
    for port in ports:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(socket.AF_INET, kind)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
                break
            finally:
                s.close()
    return busy


def group_members(pgid):
    """The processes still in the walk's process group: (pid, command line)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) != pgid or fields[0] == "Z":
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            members.append((int(entry), cmdline))
        except (OSError, ValueError):
            continue
    return members


def kill_group(pgid):
    """Stops everything in the group: SIGTERM, then SIGKILL after a grace period."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not group_members(pgid):
                return
            time.sleep(0.05)


def split_output(log):
    """The output of each block that ran, by block index, and the failure line if any."""
    outputs = {}
    failure = None
    current = None
    for line in log.split("\n"):
        if line.startswith(BLOCK_MARK + " "):
            tag = line[len(BLOCK_MARK) + 1:].strip()
            current = None if tag == "end" else int(tag)
            if current is not None:
                outputs[current] = []
            continue
        if line.startswith(FAIL_MARK + " ") and failure is None:
            failure = (current, line[len(FAIL_MARK) + 1:])
            continue
        if current is not None:
            outputs[current].append(line)
    return outputs, failure


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readme", required=True)
    parser.add_argument("--usher", required=True, help="the usher binary of this build tree")
    parser.add_argument("--timeout", type=float, default=150.0, help="seconds for the whole walk")
    parser.add_argument("--keep", help="run in this directory and keep it")
    parser.add_argument("--grace", type=float, default=10.0,
                        help="seconds the README's own stopped services get to exit before they count as strays")
    parser.add_argument("--list", action="store_true", help="print the blocks, run nothing")
    args = parser.parse_args()
    global NAME
    NAME = os.path.basename(args.readme)

    with open(args.readme, encoding="utf-8") as f:
        blocks = parse_readme(f.read())
    if not any(b.skip is None for b in blocks):
        print("readme_walkthrough: no ```sh block to run in", args.readme)
        return 1
    for n, block in enumerate(blocks):
        if block.skip is not None:
            print(f"{NAME}:{block.line}: block skipped: {block.skip}")
        elif args.list:
            print(f"{NAME}:{block.line}: block {n}, {len(block.lines)} lines, "
                  f"{len(block.expects)} expect comments, {len(block.samples)} output samples")
    if args.list:
        return 0

    ports = loopback_ports(blocks)
    busy = busy_ports(ports)
    if busy:
        print(f"readme_walkthrough: the README's loopback ports {busy} are in use on this machine "
              "(a usher service left running?); the walk needs them free")
        return 1

    usher = os.path.abspath(args.usher)
    if not os.access(usher, os.X_OK):
        print(f"readme_walkthrough: {usher} is not an executable")
        return 1
    if args.keep:
        workdir = os.path.abspath(args.keep)
        os.makedirs(workdir, exist_ok=True)
    else:
        workdir = tempfile.mkdtemp(prefix="usher-readme-")
    os.makedirs(os.path.join(workdir, "build", "app"), exist_ok=True)
    link = os.path.join(workdir, "build", "app", "usher")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(usher, link)
    home = os.path.join(workdir, ".home")
    os.makedirs(home, exist_ok=True)

    script, where = build_script(blocks)
    with open(os.path.join(workdir, ".walkthrough.sh"), "w") as f:
        f.write(script)
    env = dict(os.environ)
    env.update(HOME=home, PWD=workdir)
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    log_path = os.path.join(workdir, ".walkthrough.log")

    print(f"readme_walkthrough: running {sum(b.skip is None for b in blocks)} blocks of "
          f"{args.readme} in {workdir} with {usher}", flush=True)
    started = time.monotonic()
    with open(log_path, "w") as log:
        shell = subprocess.Popen(["bash", ".walkthrough.sh"], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pgid = shell.pid

    def stop(signum, _frame):
        kill_group(pgid)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    problems = []
    try:
        try:
            status = shell.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            status = None
            problems.append(f"the walk did not end within {args.timeout:.0f} s")
        # the README stops its services itself; give them a moment to exit, then name any left
        deadline = time.monotonic() + args.grace
        strays = group_members(pgid)
        while strays and status == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
            strays = group_members(pgid)
        if strays and status == 0:
            problems.append("still running after the last block (the README should stop them): " +
                            "; ".join(f"pid {pid}: {cmd}" for pid, cmd in strays))
    finally:
        kill_group(pgid)
    elapsed = time.monotonic() - started

    with open(log_path, encoding="utf-8", errors="replace") as f:
        outputs, failure = split_output(f.read())
    if failure is not None:
        index, detail = failure
        parts = detail.split(" ", 2)
        code, script_line, command = parts[0], int(parts[1]), parts[2] if len(parts) > 2 else ""
        readme_line = where[script_line - 1] if 0 < script_line <= len(where) else "?"
        problems.append(f"{NAME}:{readme_line}: command failed with exit code {code}: {command}")
    elif status not in (0, None):
        problems.append(f"the shell ended with exit code {status}")

    # what the README tells the reader to expect, block by block
    for n, block in enumerate(blocks):
        if block.skip is not None or n not in outputs:
            continue
        if failure is not None and failure[0] == n:
            break
        output = outputs[n]
        text = "\n".join(output)
        for line, regex in block.expects:
            if not re.search(regex, text, re.MULTILINE):
                problems.append(f"{NAME}:{line}: expected output not found: {regex}")
        for line, sample in block.samples:
            missing = sample_matches(sample, output)
            if missing is not None:
                problems.append(f"{NAME}:{line}: output sample line not matched: {missing}")

    ran = [n for n, b in enumerate(blocks) if b.skip is None and n in outputs]
    if not problems and len(ran) != sum(b.skip is None for b in blocks):
        problems.append("not every block ran")

    if problems:
        print("readme_walkthrough: FAILED")
        for p in problems:
            print("  " + p)
        shown = failure[0] if failure is not None and failure[0] is not None else (ran[-1] if ran else None)
        for n in sorted(set([shown] + [n for n in ran if any(f"{NAME}:{b}" in p for p in problems
                                                            for b, _ in blocks[n].expects + blocks[n].samples)])):
            if n is None:
                continue
            print(f"--- output of the block at {NAME}:{blocks[n].line} ---")
            print("\n".join(outputs.get(n, [])[-80:]))
        print(f"--- (the walk's files are in {workdir}) ---" if args.keep else "---")
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        return 1
    print(f"readme_walkthrough: {len(ran)} blocks ran and every expectation held, in {elapsed:.1f} s")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
