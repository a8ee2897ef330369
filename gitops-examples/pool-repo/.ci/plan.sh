#!/usr/bin/env bash
# plan.sh — run in the pool repo's CI on a pull request: what the change
# does to each environment's cluster, as a Markdown comment, and a failing
# job when it would break something.
#
#   SNAPSHOT_DIR  a directory with one `kubectl barelb snapshot` file per
#                 environment (ENV.json), refreshed by a job that can reach
#                 the clusters; without it, the live cluster of the current
#                 kubeconfig context is read (one environment: ENVIRONMENTS).
#   BASE          the revision the pull request starts from (default: the
#                 merge-base with its upstream, as kubectl barelb plan finds it)
#   ENVIRONMENTS  the environments to plan (default: every environments/*)
#
# Exit: 0 every environment safe; 1 one would break something; 2 one could
# not be evaluated (a file that does not parse, CEL that does not compile,
# an object barelb's admission webhook would refuse). The Markdown for the
# PR comment is in plan.md.
set -uo pipefail
cd "$(git rev-parse --show-toplevel)"
envs=${ENVIRONMENTS:-$(ls environments)}
worst=0
: >plan.md
for env in $envs; do
  args=(plan -o markdown --path "environments/$env")
  [ -n "${BASE:-}" ] && args+=(--base "$BASE")
  [ -n "${SNAPSHOT_DIR:-}" ] && args+=(--snapshot "$SNAPSHOT_DIR/$env.json")
  echo "## $env" >>plan.md
  kubectl barelb "${args[@]}" >>plan.md 2>plan.err
  rc=$?
  [ -s plan.err ] && { echo '```'; cat plan.err; echo '```'; } >>plan.md
  [ "$rc" -gt "$worst" ] && worst=$rc
done
cat plan.md
exit "$worst"
