# shellcheck shell=bash
# The demo's Argo CD (sourced by scripts/demo): v3.2.11's application
# controller and repo-server built by `tests/lab build` (test tooling), with
# redis-server, in namespace argocd, and the pool repo served by `git
# daemon` on loopback. Processes are stopped by PID in argocd_down.
# Needs: DEMO, K (kubectl), wait_for, fail.

ARGO_TOOLS=$ROOT/target/argocd-lab
ARGO=$DEMO/argocd

argo_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

argo_spawn() { # NAME CMD… — started in the background, its PID kept
  local name=$1; shift
  "$@" >"$ARGO/$name.log" 2>&1 &
  echo $! >"$ARGO/$name.pid"
}

argo_env() { # NAME CMD… — CMD as Argo CD component NAME, its data under $ARGO
  local name=$1; shift
  exec env ARGOCD_BINARY_NAME="$name" ARGOCD_FAKE_IN_CLUSTER=true HOME="$ARGO/home" TMPDIR="$ARGO/tmp" ARGOCD_GPG_ENABLED=false \
    ARGOCD_TLS_DATA_PATH="$ARGO/tls" ARGOCD_SSH_DATA_PATH="$ARGO/ssh" ARGOCD_GNUPGHOME="$ARGO/gnupg" \
    PATH="$ARGO_TOOLS:$ROOT/target/kube-lab:$PATH" "$@"
}

# argocd_up: Argo CD running, the pool repo (gitops-examples/pool-repo) in a
# git repository it reads from; sets ARGO_REPO (work tree) and ARGO_URL.
argocd_up() {
  [ -x "$ARGO_TOOLS/argocd" ] || fail "no Argo CD in $ARGO_TOOLS: run scripts/setup"
  mkdir -p "$ARGO"/{home,tmp,tls,ssh,gnupg,git}
  K apply --server-side --force-conflicts -f "$ARGO_TOOLS/crds" >/dev/null
  # A CRD just created has no conditions yet (kubectl wait fails, not waits).
  argo_crds() { K wait --for=condition=Established --timeout=10s crd/applications.argoproj.io crd/appprojects.argoproj.io; }
  wait_for "Argo CD's CRDs are Established" 60 argo_crds
  printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: argocd}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: argocd-secret, namespace: argocd, labels: {app.kubernetes.io/part-of: argocd}}\n' |
    K apply -f - >/dev/null
  K apply -f gitops-examples/argocd/argocd-cm-health.yaml >/dev/null
  local redis repo metrics1 metrics2 git_port
  redis=$(argo_port); repo=$(argo_port); metrics1=$(argo_port); metrics2=$(argo_port); git_port=$(argo_port)
  argo_spawn redis redis-server --port "$redis" --bind 127.0.0.1 --save '' --appendonly no
  argo_spawn repo-server argo_env argocd-repo-server "$ARGO_TOOLS/argocd" --disable-tls --address 127.0.0.1 \
    --port "$repo" --metrics-address 127.0.0.1 --metrics-port "$metrics1" --redis "127.0.0.1:$redis"
  argo_spawn application-controller argo_env argocd-application-controller "$ARGO_TOOLS/argocd" \
    --kubeconfig "$BARELB_LAB_DIR/kubeconfig" --namespace argocd --repo-server "127.0.0.1:$repo" \
    --repo-server-plaintext --redis "127.0.0.1:$redis" --metrics-port "$metrics2" --persist-resource-health=true
  # (ARGOCD_FAKE_IN_CLUSTER: https://kubernetes.default.svc means the kubeconfig's server.)
  ARGO_REPO=$ARGO/work
  ARGO_URL=git://127.0.0.1:$git_port/pool-repo.git
  git init -q --bare -b main "$ARGO/git/pool-repo.git"
  git init -q -b main "$ARGO_REPO"
  cp -r gitops-examples/pool-repo/. "$ARGO_REPO/"
  argo_git add -A
  argo_git commit -q -m "the lab's pools, policies and BGP peer"
  argo_git push -q "$ARGO/git/pool-repo.git" main
  argo_spawn git-daemon git daemon --reuseaddr --export-all --listen=127.0.0.1 --port="$git_port" \
    --base-path="$ARGO/git" "$ARGO/git"
}

argo_git() { git -C "$ARGO_REPO" -c user.name=demo -c user.email=demo@barelb.invalid "$@"; }

argo_push() { # MESSAGE — commit everything in the work tree and push it
  argo_git add -A
  argo_git commit -q -m "$1"
  argo_git push -q "$ARGO/git/pool-repo.git" main
  K -n argocd annotate --overwrite application pools-lab argocd.argoproj.io/refresh=hard >/dev/null
}

# The example Application (gitops-examples/argocd/pool-repo-lab.yaml) pointed at the local repo.
argocd_app() {
  sed "s#https://git.example.com/platform/pool-repo.git#$ARGO_URL#" gitops-examples/argocd/pool-repo-lab.yaml | K apply -f - >/dev/null
  # argocd-server, which is not run here, would create the default project.
  printf 'apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {name: default, namespace: argocd}\nspec: {sourceRepos: ["*"], destinations: [{server: "*", namespace: "*"}]}\n' | K apply -f - >/dev/null
}

app_field() { K -n argocd get application pools-lab -o json | jq -r "$1"; }
app_synced_healthy() { [ "$(app_field '.status.sync.status + "/" + .status.health.status')" = Synced/Healthy ]; }
app_refused() { app_field '[.status.operationState.syncResult.resources[]?.message // empty] | join("\n")' | grep -q "denied the request"; }

argocd_down() {
  local f
  for f in "$ARGO"/*.pid; do
    [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
  done
  for f in "$ARGO"/*.pid; do
    [ -f "$f" ] || continue
    local i=0
    while kill -0 "$(cat "$f")" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$(cat "$f")" 2>/dev/null || true
  done
}
