//! Writes barelb's CRDs to every place the install ships them (`deploy/crds/`,
//! the kustomize base and the Helm chart's `crds/`) or to the directory
//! given, or checks that the committed files match (`--check`).

use std::path::PathBuf;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let mut check = false;
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut dirs: Vec<PathBuf> = barelb_api::crd::SHIPPED_IN
        .iter()
        .map(|d| root.join(d))
        .collect();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                println!(
                    "usage: crdgen [--check] [DIR]   (default: {})",
                    barelb_api::crd::SHIPPED_IN.join(", ")
                );
                return Ok(());
            }
            other => dirs = vec![PathBuf::from(other)],
        }
    }
    let mut stale = Vec::new();
    for dir in &dirs {
        write_or_check(dir, check, &mut stale)?;
    }
    if !stale.is_empty() {
        bail!(
            "CRD YAML is out of date: {}; run `cargo run -p barelb-api --bin crdgen`",
            stale.join(", ")
        );
    }
    Ok(())
}

fn write_or_check(
    dir: &std::path::Path,
    check: bool,
    stale: &mut Vec<String>,
) -> anyhow::Result<()> {
    for (file, crd) in barelb_api::crd::all() {
        let path = dir.join(file);
        let yaml = barelb_api::crd::to_yaml(&crd)?;
        if check {
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            if committed != yaml {
                stale.push(path.display().to_string());
            }
        } else {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
            std::fs::write(&path, yaml).with_context(|| format!("write {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}
