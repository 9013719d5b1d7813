//! What the measuring examples share: finding the `behavry` binary they drive.

use std::error::Error;
use std::path::{Path, PathBuf};

/// `BEHAVRY_BIN` (made absolute: the examples start processes in other directories), else the
/// `behavry` built next to this example (`target/<profile>/behavry`).
pub fn behavry_binary() -> Result<PathBuf, Box<dyn Error>> {
    if let Some(bin) = std::env::var_os("BEHAVRY_BIN").filter(|b| !b.is_empty()) {
        let bin = std::path::absolute(PathBuf::from(bin))?;
        if !bin.is_file() {
            return Err(format!("BEHAVRY_BIN={} is not a file", bin.display()).into());
        }
        return Ok(bin);
    }
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(format!("behavry{}", std::env::consts::EXE_SUFFIX)))
        .ok_or("cannot tell where this example's executable lives; set BEHAVRY_BIN")?;
    if !bin.is_file() {
        return Err(format!(
            "{} not found; run `cargo build --release --bins` first (or set BEHAVRY_BIN to a behavry binary)",
            bin.display()
        )
        .into());
    }
    Ok(bin)
}
