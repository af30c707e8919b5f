//! Compiles the BPF programs (`bpf/*.c`) with clang into `$OUT_DIR/quarantine.o` and
//! `$OUT_DIR/destroy.o`, which the enforcer embeds (`include_bytes!`), so the binary needs no
//! file at run time.
//!
//! Without clang (or when it fails) the object is left empty and a cargo warning says so: the
//! enforcer then builds and runs observe-only, and says so loudly at start. It never pretends to
//! enforce. `INTERLOCK_BPF_REQUIRED=1` turns the warning into a build failure (for CI and
//! release builds that must ship enforcement).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// (source, object): the quarantine programs, and the socket iterator (loaded on its own, so
/// a kernel that refuses it still gets the quarantine).
/// destroy.c counts with atomic fetch-and-add (BPF v3 instructions, Linux 5.12+; it needs 6.5).
const OBJECTS: [(&str, &str, &[&str]); 2] =
    [("bpf/quarantine.c", "quarantine.o", &[]), ("bpf/destroy.c", "destroy.o", &["-mcpu=v3"])];

fn main() -> Result<()> {
    println!("cargo::rerun-if-env-changed=INTERLOCK_CLANG");
    println!("cargo::rerun-if-env-changed=INTERLOCK_BPF_REQUIRED");
    let clang = std::env::var("INTERLOCK_CLANG").unwrap_or_else(|_| "clang".to_owned());
    let dir = PathBuf::from(std::env::var("OUT_DIR").context("OUT_DIR is not set")?);
    for (source, object, flags) in OBJECTS {
        println!("cargo::rerun-if-changed={source}");
        let out = dir.join(object);
        if let Err(e) = compile(&clang, source, flags, &out) {
            if std::env::var("INTERLOCK_BPF_REQUIRED").is_ok_and(|v| v == "1") {
                bail!("the BPF programs are required (INTERLOCK_BPF_REQUIRED=1) but {source} did not build: {e:#}");
            }
            println!(
                "cargo::warning=BPF program {source} not built ({e:#}); the enforcer will run without it (OBSERVE-ONLY without quarantine.c, netlink socket destruction without destroy.c). Install clang and libbpf-dev (make deps) and rebuild."
            );
            std::fs::write(&out, b"").with_context(|| format!("writing {}", out.display()))?;
        }
    }
    Ok(())
}

fn compile(clang: &str, source: &str, flags: &[&str], out: &std::path::Path) -> Result<()> {
    // Debian keeps <asm/types.h> under the multiarch directory, which `-target bpf` does not
    // search on its own.
    let multiarch = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let output = Command::new(clang)
        .args(["-target", "bpf", "-g", "-O2", "-Wall", "-Werror"])
        .args(flags)
        .arg(format!("-I{multiarch}"))
        .args(["-c", source, "-o"])
        .arg(out)
        .output()
        .with_context(|| format!("cannot run {clang}"))?;
    if !output.status.success() {
        bail!("{clang} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}
