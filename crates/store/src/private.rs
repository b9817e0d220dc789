//! The SQLite files hold every argv ever requested: only their owner may read them (issue 9,
//! finding 10). New directories are created 0700 and the database 0600; SQLite gives its `-wal`
//! and `-shm` files the database's mode. Files left world-readable by older versions are
//! tightened at open.

use std::{io, path::Path};

/// Creates `dir` and its missing parents, owner-only (0700 on Unix).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates `path` if missing, then makes it and its SQLite companions owner-only (0600).
pub(crate) fn make_db_private(path: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    drop(options.open(path)?);
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        restrict(&file)?;
    }
    Ok(())
}

#[cfg(unix)]
fn restrict(file: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(file) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn restrict(_: &Path) -> io::Result<()> {
    Ok(())
}
