#!/usr/bin/env python3
"""The man pages are lint clean (mandoc -Tlint at warning level) and
tandem.conf(5) names every key that tandem -t prints."""
import os
import re
import shutil
import subprocess

from tandemtest import SRCDIR, TANDEM, tap

if not shutil.which("mandoc"):
    tap.skip_all("mandoc not installed")
for page in ("tandem.8", "tandem.conf.5", "tandem-events.7", "tandem-sim.1"):
    p = subprocess.run(["mandoc", "-Tlint", "-Wwarning", os.path.join(SRCDIR, "man", page)],
                       capture_output=True, text=True)
    tap.ok(p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), "%s lints clean" % page,
           p.stdout + p.stderr)

dump = subprocess.run([TANDEM, "-t", "-c", "/dev/null"], capture_output=True, text=True).stdout
keys = set()
section = ""
for line in dump.splitlines():
    m = re.match(r"^\[(.+)\]$", line)
    if m:
        section = m.group(1)
    elif " = " in line:
        keys.add((section, line.split(" = ")[0]))
page = open(os.path.join(SRCDIR, "man", "tandem.conf.5")).read()
example = open(os.path.join(SRCDIR, "fcgi-conf", "tandem.conf")).read()
missing = sorted("%s.%s" % k for k in keys if not re.search(r"\.It Ic %s\b" % re.escape(k[1]), page))
tap.ok(len(keys) > 50 and not missing, "tandem.conf(5) documents all %d keys" % len(keys), missing)
missing = sorted("%s.%s" % k for k in keys if not re.search(r"^;?%s\s*=" % re.escape(k[1]), example, re.M))
tap.ok(not missing, "fcgi-conf/tandem.conf shows every key", missing)
events = ["streaming_started", "unmute_connecting", "unmute_connected", "unmute_streaming_started",
          "text_chunk", "audio_chunk", "text_complete", "audio_complete", "unmute_complete", "unmute_error",
          "route_tagged", "node_started", "node_complete", "agent_text_chunk", "memory_update",
          "patient_info", "web_results", "ui_action", "workflow_complete", "workflow_error", "stream_complete"]
ev7 = open(os.path.join(SRCDIR, "man", "tandem-events.7")).read()
tap.ok(all(e in ev7 for e in events), "tandem-events(7) describes every event",
       [e for e in events if e not in ev7])
tap.done()
