//! Where the files of a model directory really are: every file is opened with symlinks
//! followed, and refused when it resolves outside the directory, so a directory a user brings
//! cannot make the library read another file of the host.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// `file` with symlinks followed, refused unless it lies inside the model directory `dir`
/// (also resolved). A Hugging Face hub cache snapshot (`…/snapshots/<revision>`) links its
/// files to `../../blobs/`, so for such a directory the repository folder above `snapshots` is
/// the boundary.
pub(super) fn resolve_inside(dir: &Path, file: &Path) -> Result<PathBuf> {
    let canonical = |p: &Path| p.canonicalize().map_err(|e| Error::io(p, e));
    let root = canonical(dir)?;
    let root = match root.parent() {
        Some(snapshots) if snapshots.file_name().is_some_and(|n| n == "snapshots") => {
            snapshots.parent().unwrap_or(&root).to_path_buf()
        }
        _ => root,
    };
    let resolved = canonical(file)?;
    if !resolved.starts_with(&root) {
        return Err(Error::model_file(
            file,
            format!(
                "resolves to {}, outside the model directory {}",
                resolved.display(),
                root.display()
            ),
        ));
    }
    Ok(resolved)
}

/// The file `name` of the model directory `dir`, resolved as [`resolve_inside`] does; `None`
/// when there is no such file (or only a link that leads nowhere: nothing is read through it).
pub(super) fn existing_file(dir: &Path, name: &str) -> Result<Option<PathBuf>> {
    let path = dir.join(name);
    if path.symlink_metadata().is_err() {
        return Ok(None);
    }
    if !path.is_file() {
        return if path.exists() {
            Err(Error::model_file(&path, "is not a regular file"))
        } else {
            Ok(None)
        };
    }
    resolve_inside(dir, &path).map(Some)
}
