//! A pool repo at one revision, read with git2 (no checkout, the work tree
//! untouched) and rendered as Argo CD would: a directory with a
//! `kustomization.yaml` through `kubectl kustomize`, any other directory as
//! its YAML files.

use std::path::{Path, PathBuf};
use std::process::Command;

use git2::{ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};

use crate::objects::{LoadError, Objects, Origin};

/// A pool-repo directory at one revision, as barelb objects.
#[derive(Debug)]
pub struct Side {
    /// The commit, abbreviated.
    pub commit: String,
    pub objects: Objects,
}

/// The revisions `plan` compares when none is given: the merge-base of
/// HEAD and its upstream (what a pull request is based on), and HEAD.
pub fn default_base(repo: &Repository) -> anyhow::Result<Oid> {
    let head = repo.head()?;
    let head_oid = head
        .target()
        .ok_or_else(|| anyhow::anyhow!("HEAD points at nothing; pass --base and --head"))?;
    let branch = head
        .shorthand()
        .ok()
        .filter(|_| head.is_branch())
        .ok_or_else(|| {
            anyhow::anyhow!("HEAD is detached, so it has no upstream: pass --base REV")
        })?;
    let upstream = repo
        .find_branch(branch, git2::BranchType::Local)?
        .upstream()
        .map_err(|_| anyhow::anyhow!("branch {branch} has no upstream: pass --base REV"))?;
    let up = upstream
        .get()
        .target()
        .ok_or_else(|| anyhow::anyhow!("the upstream of {branch} points at nothing"))?;
    Ok(repo.merge_base(head_oid, up)?)
}

/// Reads directory `path` (relative to the repo's root; "" for the root)
/// of revision `rev`. A directory missing at that revision is empty.
pub fn load(repo: &Repository, rev: &str, path: &str, kubectl: &Path) -> Result<Side, LoadError> {
    let fail = |message: String| LoadError {
        origin: Origin {
            file: format!("{rev}:{path}"),
            line: 0,
        },
        message,
    };
    let commit = repo
        .revparse_single(rev)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| fail(format!("no such revision: {}", e.message())))?;
    let short = commit.id().to_string()[..12].to_string();
    let tree = commit
        .tree()
        .map_err(|e| fail(format!("no tree: {}", e.message())))?;
    let scratch = Scratch::new().map_err(|e| fail(format!("temporary directory: {e}")))?;
    write_tree(repo, &tree, &scratch.0).map_err(|e| fail(format!("reading the tree: {e}")))?;
    let dir = scratch.0.join(path);
    let mut objects = Objects::default();
    if dir.is_dir() {
        render(&dir, &scratch.0, path, kubectl, &mut objects)?;
    }
    Ok(Side {
        commit: short,
        objects,
    })
}

/// A directory on disk (not a revision), as [`load`] renders it; origins
/// are relative to its git work tree when it is in one.
pub fn load_dir(dir: &Path, kubectl: &Path) -> Result<Objects, LoadError> {
    let root = Repository::discover(dir)
        .ok()
        .and_then(|r| r.workdir().map(Path::to_path_buf))
        .unwrap_or_else(|| dir.to_path_buf());
    let (dir, root) = (absolute(dir), absolute(&root));
    if !dir.is_dir() {
        return Err(LoadError {
            origin: Origin {
                file: dir.display().to_string(),
                line: 0,
            },
            message: "not a directory".into(),
        });
    }
    let mut objects = Objects::default();
    let rel = dir
        .strip_prefix(&root)
        .unwrap_or(&dir)
        .display()
        .to_string();
    render(&dir, &root, &rel, kubectl, &mut objects)?;
    Ok(objects)
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// `dir`'s objects: kustomized, or its YAML files in name order.
fn render(
    dir: &Path,
    root: &Path,
    path: &str,
    kubectl: &Path,
    objects: &mut Objects,
) -> Result<(), LoadError> {
    let kustomized = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .any(|k| dir.join(k).is_file());
    if !kustomized {
        for file in yaml_files(dir) {
            let rel = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string();
            let text = std::fs::read_to_string(&file).map_err(|e| LoadError {
                origin: Origin {
                    file: rel.clone(),
                    line: 0,
                },
                message: e.to_string(),
            })?;
            objects.add_stream(&text, &rel)?;
        }
        return Ok(());
    }
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .map_err(|e| LoadError {
            origin: Origin {
                file: path.to_string(),
                line: 0,
            },
            message: format!("run {} kustomize: {e}", kubectl.display()),
        })?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).replace(&format!("{}/", root.display()), "");
        return Err(located_kustomize_error(root, dir, why.trim()));
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut rendered = Objects::default();
    rendered.add_stream(&text, &format!("kustomize build {path}"))?;
    // Name each object by the file that declares it, not the rendered stream.
    relocate(&mut rendered, root);
    objects.pools.extend(rendered.pools);
    objects.policies.extend(rendered.policies);
    objects.peers.extend(rendered.peers);
    Ok(())
}

/// kustomize's refusal, pinned to the file it names (relative to the
/// rendered directory or the root): when that file does not parse, our
/// own reading of it gives the exact line.
fn located_kustomize_error(root: &Path, dir: &Path, why: &str) -> LoadError {
    let mut candidates: Vec<(String, PathBuf)> = yaml_files(root)
        .into_iter()
        .flat_map(|f| {
            let names = [f.strip_prefix(dir).ok(), f.strip_prefix(root).ok()];
            names
                .into_iter()
                .flatten()
                .map(|n| (n.display().to_string(), f.clone()))
                .collect::<Vec<_>>()
        })
        .filter(|(name, _)| why.contains(name.as_str()))
        .collect();
    // The longest name that matches is the most specific.
    candidates.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    let summary = format!(
        "kubectl kustomize failed: {}",
        why.lines().last().unwrap_or(why)
    );
    let Some((_, file)) = candidates.into_iter().next() else {
        return LoadError {
            origin: Origin::default(),
            message: summary,
        };
    };
    let rel = file
        .strip_prefix(root)
        .unwrap_or(&file)
        .display()
        .to_string();
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    if let Err(e) = Objects::default().add_stream(&text, &rel) {
        return e;
    }
    LoadError {
        origin: Origin { file: rel, line: 0 },
        message: summary,
    }
}

/// Sets each object's origin to the first source file declaring its kind
/// and name.
fn relocate(objects: &mut Objects, root: &Path) {
    let sources: Vec<(String, Objects)> = yaml_files(root)
        .into_iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(root).ok()?.display().to_string();
            let text = std::fs::read_to_string(&f).ok()?;
            let mut o = Objects::default();
            // Files that do not parse alone (patches) are no one's origin.
            o.add_stream(&text, &rel).ok()?;
            Some((rel, o))
        })
        .collect();
    let find =
        |pick: &dyn Fn(&Objects) -> Option<Origin>| sources.iter().find_map(|(_, o)| pick(o));
    for (name, (_, origin)) in objects.pools.iter_mut() {
        if let Some(o) = find(&|s| s.pools.get(name).map(|p| p.1.clone())) {
            *origin = o;
        }
    }
    for (name, (_, origin)) in objects.policies.iter_mut() {
        if let Some(o) = find(&|s| s.policies.get(name).map(|p| p.1.clone())) {
            *origin = o;
        }
    }
    for (name, (_, origin)) in objects.peers.iter_mut() {
        if let Some(o) = find(&|s| s.peers.get(name).map(|p| p.1.clone())) {
            *origin = o;
        }
    }
}

/// Every `.yaml`/`.yml` file under `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Writes `tree`'s files under `to` (kustomize needs them on disk; the
/// repository's own work tree is never touched).
fn write_tree(repo: &Repository, tree: &git2::Tree<'_>, to: &Path) -> Result<(), git2::Error> {
    let mut failed: Option<git2::Error> = None;
    tree.walk(TreeWalkMode::PreOrder, |parent, entry| {
        let Ok(name) = entry.name() else {
            return TreeWalkResult::Skip;
        };
        let path = to.join(parent).join(name);
        let res = match entry.kind() {
            Some(ObjectType::Tree) => std::fs::create_dir_all(&path).map_err(io),
            Some(ObjectType::Blob) => repo
                .find_blob(entry.id())
                .and_then(|b| std::fs::write(&path, b.content()).map_err(io)),
            // Submodules and the like: not part of a pool repo's objects.
            _ => Ok(()),
        };
        match res {
            Ok(()) => TreeWalkResult::Ok,
            Err(e) => {
                failed = Some(e);
                TreeWalkResult::Abort
            }
        }
    })?;
    failed.map_or(Ok(()), Err)
}

fn io(e: std::io::Error) -> git2::Error {
    git2::Error::from_str(&e.to_string())
}

/// A temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Scratch> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kubectl-barelb-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
