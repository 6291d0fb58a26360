//! Files that appear whole or not at all: key files (written once, never
//! over an existing one) and state files (the rotation state, the local
//! IVS's state file; replaced atomically).

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Writes `bytes` to a new file at `path` with `mode`, atomically and without
/// ever replacing an existing file: the bytes go to a temporary file in the
/// same directory, are synced, then hard-linked to `path` (which fails if it
/// exists), and the directory is synced.
pub(crate) fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    if path.exists() {
        return Err(Error::KeyFileExists {
            path: path.to_owned(),
        });
    }
    write_via_temp(path, bytes, mode, |tmp, path| {
        fs::hard_link(tmp, path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                Error::KeyFileExists {
                    path: path.to_owned(),
                }
            } else {
                file_error(path, e)
            }
        })
    })
}

/// Writes `bytes` to `path` atomically, replacing what was there: a reader
/// sees the old file or the new one, never a torn one.
#[cfg_attr(not(feature = "service"), allow(dead_code))]
pub(crate) fn write_replacing(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    write_via_temp(path, bytes, mode, |tmp, path| {
        fs::rename(tmp, path).map_err(|e| file_error(path, e))
    })
}

fn write_via_temp(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    publish: impl FnOnce(&Path, &Path) -> Result<(), Error>,
) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        file_error(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
        )
    })?;
    let random = crate::claims::random_uuid().map_err(|_| {
        file_error(
            path,
            io::Error::other("the system random number generator failed"),
        )
    })?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        random.simple()
    ));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut file = options.open(&tmp).map_err(|e| file_error(&tmp, e))?;
        file.write_all(bytes).map_err(|e| file_error(&tmp, e))?;
        file.sync_all().map_err(|e| file_error(&tmp, e))?;
        publish(&tmp, path)
    })();
    // After a hard link the temporary name is redundant; after a failure it is
    // debris. After a rename it is already gone.
    let _ = fs::remove_file(&tmp);
    result?;
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn file_error(path: &Path, source: io::Error) -> Error {
    Error::KeyFile {
        path: path.to_owned(),
        source,
    }
}
