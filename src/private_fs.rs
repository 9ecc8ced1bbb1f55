//! Files only Passkey's own user may read. Everything in `data_dir` — the SQLite database and its
//! WAL, the local vault, the keys — is created 0600 inside a 0700 folder, whatever the umask;
//! files left readable by an earlier version are tightened when Passkey opens them.
//! (On other platforms the calls do the same work without modes.)

use std::io::Write as _;
use std::path::Path;

/// Creates `dir` (and missing parents) as 0700, and tightens an existing `dir` to 0700.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    tighten(dir, 0o700)
}

/// Writes a new file as 0600 and syncs it. [`std::io::ErrorKind::AlreadyExists`] when it is
/// there: two instances starting together never overwrite each other's key.
pub fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes sure `path` exists as a private file (created empty as 0600, or tightened to 0600), for
/// files another library creates and writes, such as the SQLite database (SQLite gives its WAL
/// and shared-memory files the database file's mode).
pub fn ensure_file(path: &Path) -> std::io::Result<()> {
    match write_new(path, &[]) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => tighten(path, 0o600),
        Err(e) => Err(e),
    }
}

/// Removes group and other permissions from an existing file or folder (`mode` is what it
/// becomes when it had any).
#[cfg(unix)]
pub fn tighten(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let current = std::fs::metadata(path)?.permissions().mode();
    if current & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn tighten(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_and_folders_are_private_and_old_ones_are_tightened() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let key = dir.join("key");
        write_new(&key, b"secret").unwrap();
        assert_eq!(mode(&key), 0o600);
        let again = write_new(&key, b"other").unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&key).unwrap(), b"secret", "never overwritten");
        let db = dir.join("passkey.db");
        std::fs::write(&db, b"x").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        ensure_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(std::fs::read(&db).unwrap(), b"x", "contents kept");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }
}
