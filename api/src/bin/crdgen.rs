//! Writes barelb's CRDs to `deploy/crds/` (or the directory given), or checks
//! that the committed files match (`--check`).

use std::path::PathBuf;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let mut check = false;
    let mut dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/crds"));
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                println!("usage: crdgen [--check] [DIR]   (default DIR: deploy/crds)");
                return Ok(());
            }
            other => dir = PathBuf::from(other),
        }
    }
    let mut stale = Vec::new();
    for (file, crd) in barelb_api::crd::all() {
        let path = dir.join(file);
        let yaml = barelb_api::crd::to_yaml(&crd)?;
        if check {
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            if committed != yaml {
                stale.push(path.display().to_string());
            }
        } else {
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            std::fs::write(&path, yaml).with_context(|| format!("write {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    if !stale.is_empty() {
        bail!(
            "CRD YAML is out of date: {}; run `cargo run -p barelb-api --bin crdgen`",
            stale.join(", ")
        );
    }
    Ok(())
}
