//! Links libpocketsphinx and, through its `Requires`, libsphinxbase: found with pkg-config
//! (pocketsphinx.pc, sphinxbase.pc from Debian's -dev packages).

fn main() {
    if let Err(e) = pkg_config::Config::new().probe("pocketsphinx") {
        println!(
            "cargo::error=cannot find libpocketsphinx with pkg-config ({e}); install it: \
             apt-get install libpocketsphinx-dev libsphinxbase-dev pocketsphinx-en-us"
        );
    }
}
