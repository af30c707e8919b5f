//! Compiles the BPF programs (`bpf/*.c`) with clang into `$OUT_DIR/quarantine.o`, which the
//! enforcer embeds (`include_bytes!`), so the binary needs no file at run time.
//!
//! Without clang (or when it fails) the object is left empty and a cargo warning says so: the
//! enforcer then builds and runs observe-only, and says so loudly at start. It never pretends to
//! enforce. `INTERLOCK_BPF_REQUIRED=1` turns the warning into a build failure (for CI and
//! release builds that must ship enforcement).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

const SOURCE: &str = "bpf/quarantine.c";
const OBJECT: &str = "quarantine.o";

fn main() -> Result<()> {
    println!("cargo::rerun-if-changed={SOURCE}");
    println!("cargo::rerun-if-env-changed=INTERLOCK_CLANG");
    println!("cargo::rerun-if-env-changed=INTERLOCK_BPF_REQUIRED");
    let out = PathBuf::from(std::env::var("OUT_DIR").context("OUT_DIR is not set")?).join(OBJECT);
    let clang = std::env::var("INTERLOCK_CLANG").unwrap_or_else(|_| "clang".to_owned());
    match compile(&clang, &out) {
        Ok(()) => Ok(()),
        Err(e) => {
            if std::env::var("INTERLOCK_BPF_REQUIRED").is_ok_and(|v| v == "1") {
                bail!("the BPF programs are required (INTERLOCK_BPF_REQUIRED=1) but did not build: {e:#}");
            }
            println!(
                "cargo::warning=BPF programs not built ({e:#}); the enforcer will run OBSERVE-ONLY. Install clang and libbpf-dev (make deps) and rebuild."
            );
            std::fs::write(&out, b"").with_context(|| format!("writing {}", out.display()))?;
            Ok(())
        }
    }
}

fn compile(clang: &str, out: &std::path::Path) -> Result<()> {
    // Debian keeps <asm/types.h> under the multiarch directory, which `-target bpf` does not
    // search on its own.
    let multiarch = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let output = Command::new(clang)
        .args(["-target", "bpf", "-g", "-O2", "-Wall", "-Werror"])
        .arg(format!("-I{multiarch}"))
        .args(["-c", SOURCE, "-o"])
        .arg(out)
        .output()
        .with_context(|| format!("cannot run {clang}"))?;
    if !output.status.success() {
        bail!("{clang} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}
