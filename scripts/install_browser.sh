#!/usr/bin/env bash
# Installs Debian's headless Chromium for the kedro-viz browser test (Playwright's
# own browser download does not work offline). Skips quietly when already there.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "install_browser: run 'sudo apt-get install chromium' for the browser test" >&2
fi
