#!/usr/bin/env bash
# What CI runs on a (GPU) runner: set up, pull what the remote has, rebuild what changed, push,
# and write a job summary. .github/workflows/distill.yml only calls this script; the tests run it
# on CPU on the tiny configuration (tests/test_ci.py), so what CI does is what is tested.
#
#   ci/pipeline.sh                 # from the repository root
#
# Environment:
#   POTSTILL_SKIP_SETUP=1   use the dvc/python already on PATH instead of `make setup`
#   POTSTILL_BASE_REF       branch to diff metrics against (default: main)
#   GITHUB_STEP_SUMMARY     where the markdown summary goes (GitHub sets it; default: stdout)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${POTSTILL_SKIP_SETUP:-0}" != "1" ]]; then
  make setup
  export PATH="$PWD/.venv/bin:$PATH"
fi

has_remote() { [[ -n "$(dvc remote list)" ]]; }

if has_remote; then
  # A fresh runner: fetch whatever earlier runs pushed; missing outputs are simply rebuilt.
  dvc pull --allow-missing || echo "dvc pull: some outputs are not on the remote yet; they will be rebuilt"
fi

dvc repro

if has_remote; then
  dvc push
fi

summary="${GITHUB_STEP_SUMMARY:-/dev/stdout}"
base="${POTSTILL_BASE_REF:-main}"
{
  echo "## potstill: experiments"
  echo
  echo '```'
  python tools/compare.py --width 120 || dvc exp show --md --no-pager --only-changed
  echo '```'
  echo
  echo "## Headline metrics against ${base}"
  echo
  if git rev-parse --verify --quiet "${base}" >/dev/null; then
    dvc metrics diff --md "${base}" --targets metrics/summary.json
  else
    echo "(no ${base} ref here: nothing to compare against)"
    dvc metrics show --md metrics/summary.json
  fi
} >> "${summary}"
