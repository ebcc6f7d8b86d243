#!/usr/bin/env bash
# Render an imaseg report in a real browser (headless Chromium, Debian package `chromium`) and save a
# full-page PNG, to look at what a reader sees:
#
#   apt-get install -y chromium          # once
#   docs/screenshot_report.sh demo/report/report.html report.png [WIDTH] [HEIGHT]
set -euo pipefail
report="$(realpath "${1:?report.html}")"
out="$(realpath -m "${2:?out.png}")"
width="${3:-1280}"
height="${4:-6000}"
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
[ -n "$browser" ] || { echo "no Chromium found: apt-get install -y chromium" >&2; exit 2; }
"$browser" --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size="${width},${height}" --screenshot="$out" "file://$report" >/dev/null 2>&1
echo "$out"
