//! With the prebuilt CTranslate2 (`mediagate-ctranslate2`), executables find its shared
//! library through an rpath to where that crate's build script put it (and, for a deployed
//! binary, next to it or in `lib/` beside it).

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_MEDIAGATE_CTRANSLATE2_ROOT");
    if let Ok(dir) = std::env::var("DEP_MEDIAGATE_CTRANSLATE2_ROOT") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}:$ORIGIN:$ORIGIN/lib");
    }
}
