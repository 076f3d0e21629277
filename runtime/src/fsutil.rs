//! Reading files that go into prompts, and writing files so that readers never see half of one.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Replaces (or creates) `path` with `bytes` atomically: the bytes go to a temporary file in the same directory,
/// are synced to disk, take over the old file's permissions, and the temporary file is renamed over `path`. A crash
/// leaves either the old file or the new one, never a mix; concurrent writers each use their own temporary file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} is not a file path", path.display())))?;
    let temporary = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let write = || -> io::Result<()> {
        let mut file = fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        if let Ok(old) = fs::metadata(path) {
            fs::set_permissions(&temporary, old.permissions())?;
        }
        fs::rename(&temporary, path)
    };
    write().inspect_err(|_| {
        // Best effort: the error that matters is the one being returned.
        let _ = fs::remove_file(&temporary);
    })
}

/// A file's text for a prompt, refusing what cannot go into one (unreadable, binary, larger than
/// [`MAX_FILE_BYTES`](crate::retrieval::MAX_FILE_BYTES)); the error is the reason, for the caller to name the file.
pub fn read_text_file(path: &Path) -> Result<String, String> {
    let limit = crate::retrieval::MAX_FILE_BYTES;
    let metadata = fs::metadata(path).map_err(|e| e.to_string())?;
    if metadata.len() > limit {
        return Err(format!("larger than {} KiB", limit >> 10));
    }
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    if bytes.contains(&0) {
        return Err("binary file".to_owned());
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_keeps_permissions_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("script.sh");
        fs::write(&path, "old").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o751)).unwrap();
        }
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o751);
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write_atomic(&dir.path().join("missing/dir/file"), b"x").is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
