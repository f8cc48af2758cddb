//! CTranslate2 without compiling it: the build script of this crate puts the shared library of
//! the pinned PyPI `ctranslate2` wheel (the same version ct2rs vendors, so its headers match)
//! where the linker finds it, for `ct2rs`'s `system` feature. Compiling CTranslate2 from source
//! costs about ten minutes per profile on two cores; this costs a 42 MB download, once per
//! machine. The wheel's build also uses oneDNN, whose kernels are faster on x86 than the Ruy
//! backend a from-source build uses here.
//!
//! The build script:
//! - takes the wheel from `MEDIAGATE_CTRANSLATE2_WHEEL` (a file, for offline builds), else from
//!   the cache (`~/.cache/mediagate/wheels`), else from the package index
//!   (`MEDIAGATE_PYPI_URL`, default `https://pypi.org`; PEP 691 JSON), over HTTPS only,
//!   checking its size and SHA-256 against the pinned ones;
//! - unpacks `libctranslate2-*.so.*` and its `libgomp` into its `OUT_DIR/lib`, with the
//!   `libctranslate2.so` name the linker looks for;
//! - tells the dependents where (`DEP_MEDIAGATE_CTRANSLATE2_ROOT`): the crates that link
//!   executables (`mediagate`, `mediagate-speech`'s tests) give them an rpath to it in their
//!   own build scripts, since a link argument does not pass from a dependency to them.
//!
//! ct2rs's `system` link also names static libraries the wheel's library makes unnecessary
//! (cpu_features, inside it already; CUDA's static cuBLAS, which a CPU build never calls), and
//! looks for them while ct2rs itself compiles: empty archives in `stubs/`, which the
//! workspace's `.cargo/config.toml` puts on `CMAKE_LIBRARY_PATH`. A workspace of your own
//! that depends on mediagate with this feature needs the same setting.
//!
//! The fallback, for a machine that cannot reach an index, or not x86_64 Linux: the cargo
//! feature `ctranslate2-from-source` instead of `prebuilt-ctranslate2` (CMake and a C++17
//! compiler).

/// The `ctranslate2` version whose library is linked: the one `ct2rs` 0.10.3 vendors.
pub const VERSION: &str = "4.8.4";
